//! Integration tests of the time-series store: one test binary (one link) with a
//! module per concern. Every test uses a real SQLite file in a temporary directory.

mod common;
mod contract;
mod export;
mod flux;
mod identity;
mod rollups;
