//! vigie's device simulator: a fleet of French public buildings whose meters and
//! sensors publish over MQTT exactly as real devices would.
//!
//! - [`fleet`]: the members, buildings and devices (what the registry is provisioned
//!   with);
//! - [`climate`] and [`model`]: weather, occupancy and what each device measures at
//!   any instant, deterministic from a seed;
//! - [`meter`] and [`firmware`]: what a device reports — meter resets and swaps, a
//!   skewed clock;
//! - [`formats`]: the payloads and topics of each device ecosystem (FORMATS.md);
//! - [`publish`]: one MQTT connection per device, backfill then live readings with a
//!   bounded buffer while the broker is unreachable.
//!
//! The simulator depends only on `vigie-core` for payload and registry types and talks
//! to the rest of vigie over MQTT only; it must never write to the store or the
//! registry behind ingest's back.

pub mod climate;
mod device;
pub mod firmware;
pub mod fleet;
pub mod formats;
mod link;
pub mod meter;
pub mod model;
pub mod publish;

use vigie_core::DeviceId;

pub use firmware::{DeviceReadings, FirmwareOptions, Reading};
pub use fleet::{Fleet, demo_fleet};
pub use formats::{SimFormat, UnknownFormat};
pub use model::DeviceModel;
pub use publish::{
    BackfillDay, BrokerTransport, DEFAULT_BUFFER, SimOptions, SimReport, backfill_plan,
    backfill_readings, run,
};

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An option makes no sense.
    #[error("invalid simulator option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The first connection to the broker failed.
    #[error("device {device} could not connect to the MQTT broker at {broker}: {source}")]
    Connect {
        /// The device that tried.
        device: DeviceId,
        /// `host:port`.
        broker: String,
        /// The MQTT client's error.
        source: Box<rumqttc::ConnectionError>,
    },
    /// The MQTT client refused a request (its event loop stopped).
    #[error("MQTT client of device {device} stopped: {source}")]
    Client {
        /// The device.
        device: DeviceId,
        /// The MQTT client's error.
        source: Box<rumqttc::ClientError>,
    },
    /// The connection of a device closed while it was publishing.
    #[error("MQTT connection of device {0} closed")]
    LinkClosed(DeviceId),
    /// A device task panicked or was cancelled.
    #[error("device task failed: {0}")]
    Task(String),
}
