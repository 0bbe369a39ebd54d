//! Self-metrics shared by the parts of one process, rendered in Prometheus text format.
//!
//! Ingest increments counters; the web server renders them on `/metrics` and reads the
//! health flags for `/healthz`. Plain atomics: updating a metric must never block or
//! allocate on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::registry::QuarantineReason;

/// The process's metrics; share it in an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// MQTT messages received by ingest.
    pub messages_received: AtomicU64,
    /// MQTT messages acknowledged after their batch was committed.
    pub messages_acked: AtomicU64,
    /// Samples newly written to the store.
    pub samples_written: AtomicU64,
    /// Samples already stored (redelivery): nothing written.
    pub samples_duplicate: AtomicU64,
    /// Batches committed.
    pub batches_committed: AtomicU64,
    /// Sum of batch commit durations, microseconds.
    pub batch_commit_micros_sum: AtomicU64,
    /// Batch commits that failed (the batch is retried, nothing acked).
    pub batch_commit_failures: AtomicU64,
    /// Messages received but not yet committed and acknowledged.
    pub consumer_lag: AtomicU64,
    quarantined: [AtomicU64; QuarantineReason::ALL.len()],
    /// Whether ingest's MQTT connection is up (or, for a dashboard-only process, the
    /// broker answered the last probe).
    pub mqtt_connected: AtomicBool,
    /// Whether the last store write succeeded.
    pub store_writable: AtomicBool,
}

impl Metrics {
    /// Fresh metrics; the store is presumed writable until a write fails.
    pub fn new() -> Metrics {
        let m = Metrics::default();
        m.store_writable.store(true, Ordering::Relaxed);
        m
    }

    /// Counts `n` quarantined items for `reason`.
    pub fn quarantined(&self, reason: QuarantineReason, n: u64) {
        let i = QuarantineReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.quarantined[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Items quarantined for `reason` since start.
    pub fn quarantined_count(&self, reason: QuarantineReason) -> u64 {
        let i = QuarantineReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.quarantined[i].load(Ordering::Relaxed)
    }

    /// Renders every metric in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "vigie_ingest_messages_received_total",
            "MQTT messages received by ingest.",
            get(&self.messages_received),
        );
        counter(
            "vigie_ingest_messages_acked_total",
            "MQTT messages acknowledged after commit.",
            get(&self.messages_acked),
        );
        counter(
            "vigie_ingest_samples_written_total",
            "Samples newly written to the store.",
            get(&self.samples_written),
        );
        counter(
            "vigie_ingest_samples_duplicate_total",
            "Samples already stored (redelivered).",
            get(&self.samples_duplicate),
        );
        counter(
            "vigie_ingest_batches_committed_total",
            "Batches committed to the store.",
            get(&self.batches_committed),
        );
        counter(
            "vigie_ingest_batch_commit_failures_total",
            "Batch commits that failed and were retried.",
            get(&self.batch_commit_failures),
        );
        let _ = writeln!(
            out,
            "# HELP vigie_ingest_batch_commit_seconds_sum Total time spent committing batches.\n# TYPE vigie_ingest_batch_commit_seconds_sum counter\nvigie_ingest_batch_commit_seconds_sum {:.6}",
            get(&self.batch_commit_micros_sum) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP vigie_ingest_quarantined_total Items quarantined, by reason.\n# TYPE vigie_ingest_quarantined_total counter"
        );
        for (i, r) in QuarantineReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "vigie_ingest_quarantined_total{{reason=\"{}\"}} {}",
                r.as_str(),
                get(&self.quarantined[i])
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "vigie_ingest_consumer_lag_messages",
            "Messages received, not yet committed and acknowledged.",
            get(&self.consumer_lag),
        );
        gauge(
            &mut out,
            "vigie_mqtt_connected",
            "1 when the MQTT connection is up.",
            self.mqtt_connected.load(Ordering::Relaxed) as u64,
        );
        gauge(
            &mut out,
            "vigie_store_writable",
            "1 when the last store write succeeded.",
            self.store_writable.load(Ordering::Relaxed) as u64,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_counts_are_rendered_per_reason() {
        let m = Metrics::new();
        m.quarantined(QuarantineReason::UnknownDevice, 3);
        let text = m.render();
        assert!(
            text.contains("vigie_ingest_quarantined_total{reason=\"unknown_device\"} 3"),
            "{text}"
        );
        assert!(text.contains("vigie_ingest_quarantined_total{reason=\"malformed\"} 0"));
        assert!(text.contains("vigie_store_writable 1"));
    }
}
