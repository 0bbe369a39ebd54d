//! Integration tests of vigie-ingest: the real embedded broker (rumqttd), a real
//! SQLite store in a temporary directory, real MQTT clients (rumqttc) at QoS 1.
//!
//! Tests wait by polling the store with a generous deadline; they never assert on
//! speed.

// A test binary: unwrapping is how a test says "this must hold".
#![allow(clippy::unwrap_used)]

mod decode_formats;
mod decode_props;
mod harness;
mod meters;
mod pipeline;
mod provisioning;
mod sim_formats;
mod swap_restart;
