//! Self-metrics shared by the parts of one process, rendered in Prometheus text format.
//!
//! Ingest increments counters; the web server renders them on `/metrics` and reads the
//! health flags for `/healthz`. Plain atomics: updating a metric must never block or
//! allocate on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::registry::QuarantineReason;

/// Upper bounds of the batch commit latency histogram, in microseconds.
const COMMIT_BUCKETS_MICROS: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];

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
    /// Batch commits per latency bucket (not cumulative; see [`Metrics::observe_batch_commit`]).
    batch_commit_buckets: [AtomicU64; COMMIT_BUCKETS_MICROS.len() + 1],
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

    /// Records one successful batch commit that took `took` (sum and histogram).
    pub fn observe_batch_commit(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.batch_commit_micros_sum
            .fetch_add(micros, Ordering::Relaxed);
        let i = COMMIT_BUCKETS_MICROS
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(COMMIT_BUCKETS_MICROS.len());
        self.batch_commit_buckets[i].fetch_add(1, Ordering::Relaxed);
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
            "# HELP vigie_ingest_batch_commit_seconds Time to commit one batch (store and registry), successful commits.\n# TYPE vigie_ingest_batch_commit_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in COMMIT_BUCKETS_MICROS.iter().enumerate() {
            cumulative += get(&self.batch_commit_buckets[i]);
            let _ = writeln!(
                out,
                "vigie_ingest_batch_commit_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += get(&self.batch_commit_buckets[COMMIT_BUCKETS_MICROS.len()]);
        let _ = writeln!(
            out,
            "vigie_ingest_batch_commit_seconds_bucket{{le=\"+Inf\"}} {cumulative}\nvigie_ingest_batch_commit_seconds_sum {:.6}\nvigie_ingest_batch_commit_seconds_count {cumulative}",
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

    #[test]
    fn batch_commit_latency_is_a_cumulative_histogram() {
        let m = Metrics::new();
        m.observe_batch_commit(Duration::from_micros(800));
        m.observe_batch_commit(Duration::from_millis(30));
        m.observe_batch_commit(Duration::from_secs(60));
        let text = m.render();
        for line in [
            "# TYPE vigie_ingest_batch_commit_seconds histogram",
            "vigie_ingest_batch_commit_seconds_bucket{le=\"0.001\"} 1",
            "vigie_ingest_batch_commit_seconds_bucket{le=\"0.025\"} 1",
            "vigie_ingest_batch_commit_seconds_bucket{le=\"0.05\"} 2",
            "vigie_ingest_batch_commit_seconds_bucket{le=\"10\"} 2",
            "vigie_ingest_batch_commit_seconds_bucket{le=\"+Inf\"} 3",
            "vigie_ingest_batch_commit_seconds_count 3",
            "vigie_ingest_batch_commit_seconds_sum 60.030800",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
