//! vigie's domain: identifiers, quantities and units, Europe/Paris calendar periods,
//! configuration structures, the registry (members, buildings, devices, users) and the
//! time-series store trait with its embedded backend.
//!
//! Everything else in vigie depends on this crate; it depends on no other vigie crate
//! and talks to the network only in the remote time-series backend.

pub mod config;
pub mod db;
pub mod ids;
pub mod metrics;
pub mod payload;
pub mod quantity;
pub mod registry;
pub mod store;
pub mod time;

pub use ids::{BuildingId, DeviceId, MemberId, SeriesId, UserId};
pub use quantity::{Energy, Quantity, SeriesKind, Unit};
pub use time::Timestamp;
