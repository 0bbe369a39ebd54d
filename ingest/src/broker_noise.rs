//! rumqttd's log lines that are not errors, so that vigie's log shows real ones.
//!
//! rumqttd 0.20 logs at ERROR on every clean client disconnect: `router-drop` when
//! the router closes the link of a client that sent DISCONNECT, then `no-connection id
//! N is already gone` when the network side reports the same disconnect again (its own
//! source says: "Some clients can choose to send Disconnect packet before network
//! disconnection. This will lead to double Disconnect packets in router events"). With
//! 21 simulated devices, a Ctrl-C printed 23 ERROR lines and nothing was wrong.
//!
//! [`is_rumqttd_noise`] recognises exactly those call sites (file and line in the
//! pinned rumqttd version), to be used as a log filter. It must never hide anything
//! else: other rumqttd errors (a connection refused at CONNECT, "no space for new
//! connection", a router failure) still reach the log. If rumqttd is upgraded and the
//! lines move, the e2e test `a_clean_run_logs_no_error` fails instead of errors being
//! hidden silently.

use tracing::{Level, Metadata};

/// The ERROR call sites of rumqttd 0.20.0 that fire on a normal disconnect.
const NOISE: &[(&str, u32)] = &[
    // "no-connection id {} is already gone" (Router::handle_disconnection, ::handle_connection_data…)
    ("src/router/routing.rs", 416),
    ("src/router/routing.rs", 436),
    ("src/router/routing.rs", 539),
    // "router-drop": the router ended the link after the client's DISCONNECT.
    ("src/server/broker.rs", 581),
];

/// True for a rumqttd event that reports a normal disconnect at ERROR level.
pub fn is_rumqttd_noise(meta: &Metadata<'_>) -> bool {
    if *meta.level() != Level::ERROR || !meta.target().starts_with("rumqttd") {
        return false;
    }
    let (Some(file), Some(line)) = (meta.file(), meta.line()) else {
        return false;
    };
    let file = file.replace('\\', "/");
    file.contains("rumqttd-0.20.0/")
        && NOISE
            .iter()
            .any(|(suffix, l)| line == *l && file.ends_with(suffix))
}
