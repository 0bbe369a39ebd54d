//! vigie's ingest: the embedded MQTT broker, payload decoders and the batch writer.
//!
//! - [`EmbeddedBroker`]: rumqttd in-process, the zero-setup default (no persistence,
//!   no shutdown call, no topic ACLs: see [`broker`]).
//! - [`decode`]: from topic and untrusted bytes to [`Reading`]s and [`Problem`]s, one
//!   file per payload format.
//! - [`run`]: the pipeline. A persistent QoS 1 session with manual acks; batches are
//!   committed to the time-series store in one idempotent transaction and only then
//!   acknowledged; what cannot be used goes to quarantine with its reason.
//!
//! This crate must never acknowledge a message before it is committed, never panic on
//! input and never drop a message silently. See `ingest/DESIGN.md`.

pub mod auth;
pub mod broker;
mod broker_noise;
pub mod decode;
mod error;
mod normalise;
mod options;
mod pipeline;
mod replay;

pub use broker::EmbeddedBroker;
pub use broker_noise::is_rumqttd_noise;
pub use decode::{
    DecodeContext, Decoded, Decoder, Decoders, MessageKind, NativeDecoder, Problem, Reading, Route,
};
pub use error::IngestError;
pub use options::{
    DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT, IngestOptions, TlsOptions, default_topics,
    parse_mqtt_url, shared_topics, url_uses_tls,
};
pub use pipeline::{run, run_with_decoders};
