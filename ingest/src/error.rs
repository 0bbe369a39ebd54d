//! Ingest's errors: what stops the broker or the pipeline from starting or finishing.
//!
//! Per-message trouble (bad JSON, unknown device…) is never an error here: it is a
//! quarantine entry. A store that is down is not an error either while running: ingest
//! retries and stops acking. This module must never hold a secret in a message.

use std::net::SocketAddr;

/// An error of the embedded broker or the ingest pipeline.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The embedded broker cannot listen on its address.
    #[error("embedded MQTT broker cannot listen on {addr}: {source} (is the port already in use?)")]
    BrokerBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded broker did not come up.
    #[error("embedded MQTT broker on {addr} did not start: {reason}")]
    BrokerStart {
        /// The address.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// A broker URL cannot be used.
    #[error(
        "invalid MQTT broker URL {url:?}: {reason}; expected mqtt://host:port or mqtts://host:port"
    )]
    BadUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file for `mqtts://` cannot be read.
    #[error("cannot read mqtt.ca_file {path}: {source}")]
    CaFileRead {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file for `mqtts://` holds no usable certificate.
    #[error("mqtt.ca_file {path} {reason}")]
    CaFileContent {
        /// The file.
        path: String,
        /// What is wrong with it ("holds no PEM certificate…").
        reason: String,
    },
    /// The options cannot work.
    #[error("invalid ingest option {key}: {reason}")]
    Options {
        /// The option.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An ingest task panicked or was cancelled (a bug).
    #[error("ingest {task} task failed: {reason}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The join error.
        reason: String,
    },
    /// At shutdown the last batch could not be committed; its messages were not
    /// acknowledged (an external broker with a persistent session redelivers them).
    #[error("{messages} message(s) not committed at shutdown: {reason}")]
    UncommittedAtShutdown {
        /// How many messages.
        messages: usize,
        /// The last store or registry error.
        reason: String,
    },
}
