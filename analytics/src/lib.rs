//! Analytics over series: baseline models, weather normalisation (degree days),
//! savings after works, regulatory reports.
//!
//! Pure functions over series values that the store returns: this crate must never do
//! I/O, so that every figure it produces can be recomputed and tested from plain data.
//! It is intentionally empty until the savings issue; the dashboard already depends on
//! it so that its place in the crate order (`core` ← `analytics` ← `dashboard`) is fixed.
