//! Replay of quarantined messages once their device is registered (provisioning).
//!
//! A message from an unknown device is quarantined as `unknown_device` (payload kept,
//! first reception time kept). When a technician assigns the device — from the
//! dashboard, possibly another process — this task, polling the registry every
//! [`REPLAY_EVERY`], finds those rows, decodes them again as if just received *at
//! their original reception time* (readings without `ts` get that instant, not now),
//! and commits them through the same path as live messages (meter normalisation,
//! idempotent write, quarantine of what is still unusable, with its real reason). Only
//! then are the rows deleted. A crash between the two repeats the replay, which writes
//! nothing twice: samples are keyed by (series, timestamp).
//!
//! The same task replays a meter's `out_of_range` messages once normalisation has
//! detected a swap to a higher index (a segment marked for replay in the registry):
//! the readings of the new meter that were refused before the swap was confirmed are
//! then stored; what is still impossible (a real spike) is quarantined again and its
//! row kept.
//!
//! Those segments may have been recorded by another ingest process: the device's
//! segments are read again before its rows are replayed.
//!
//! The payload is decoded by the decoder that recognises its topic, exactly as live
//! ingest does ([`decode_rows`], which meter normalisation also uses to read a
//! meter's refused readings back). Caveat: identical payloads on one topic share one quarantine row (its
//! first reception time), so a device that sent the very same `ts`-less payload twice
//! gets one sample back. This task must never delete a row whose content it did not
//! commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{Publish, QoS};
use tokio::sync::watch;
use vigie_core::DeviceId;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{QuarantineReason, ReplayableMessage};

use crate::decode::{DecodeContext, Decoded, Decoders};
use crate::pipeline::commit::Committer;
use crate::pipeline::plan::{DecodedMessage, Plan};

/// How often the registry is polled for replayable messages.
pub(crate) const REPLAY_EVERY: Duration = Duration::from_secs(1);
/// Most quarantine rows replayed per commit.
const REPLAY_BATCH: usize = 500;

/// The replay task's state.
pub(crate) struct Replayer {
    pub(crate) committer: Committer,
    pub(crate) decoders: Arc<Decoders>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_future_skew: Duration,
}

impl Replayer {
    /// Polls and replays until `stop` turns true.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let replayed = match self.replay_once().await {
                Ok(n) => self.replay_swaps().await.map(|m| n + m),
                Err(e) => Err(e),
            };
            match replayed {
                Ok(0) => {}
                Ok(n) => {
                    failing = false;
                    tracing::info!(
                        "replayed {n} quarantined message(s) of newly registered device(s) or swapped meters"
                    );
                    // More may be waiting: go on at once.
                    continue;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("replay of quarantined messages failed, will retry: {e}");
                }
                Err(e) => tracing::debug!("replay still failing: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(REPLAY_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Replays one chunk of quarantined messages; returns how many rows it consumed.
    pub(crate) async fn replay_once(&self) -> Result<usize, String> {
        let registry = self.committer.registry.clone();
        let rows = tokio::task::spawn_blocking(move || registry.replayable_blocking(REPLAY_BATCH))
            .await
            .map_err(|e| format!("replay task: {e}"))?
            .map_err(|e| format!("reading replayable quarantine: {e}"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        // A device removed meanwhile is quarantined again as unknown: same row (same
        // topic, payload, reason, detail), which must then stay.
        self.replay_rows(&rows, |i, plan| plan.unknown.contains(&i))
            .await?;
        Ok(rows.len())
    }

    /// Replays the `out_of_range` messages of meters with a newly detected segment (a
    /// swap to a higher index); returns how many rows it went through.
    pub(crate) async fn replay_swaps(&self) -> Result<usize, String> {
        let registry = self.committer.registry.clone();
        let pending = blocking(move || registry.pending_segment_replays_blocking())
            .await
            .map_err(|e| format!("reading meter segments to replay: {e}"))?;
        let mut by_device: BTreeMap<DeviceId, Vec<i64>> = BTreeMap::new();
        for (id, device) in pending {
            by_device.entry(device).or_default().push(id);
        }
        let mut total = 0;
        for (device, segments) in by_device {
            // The segment may have been recorded by another process: read the device's
            // segments afresh, or its readings would be refused again.
            self.committer.meters.forget(&device);
            let mut after = 0;
            loop {
                let (registry, d) = (self.committer.registry.clone(), device.clone());
                let rows = blocking(move || {
                    registry.out_of_range_quarantined_blocking(&d, after, REPLAY_BATCH)
                })
                .await
                .map_err(|e| format!("reading the quarantine of {device}: {e}"))?;
                let Some(last) = rows.last() else { break };
                after = last.0.id;
                let (messages, details): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
                // Still impossible with the same detail: the same row, which must stay.
                self.replay_rows(&messages, |i, plan| {
                    let m = &messages[i];
                    plan.quarantine.iter().any(|e| {
                        e.reason == QuarantineReason::OutOfRange
                            && e.topic == m.topic
                            && e.payload == m.payload
                            && e.detail == details[i]
                    })
                })
                .await?;
                total += messages.len();
                if messages.len() < REPLAY_BATCH {
                    break;
                }
            }
            let registry = self.committer.registry.clone();
            blocking(move || registry.segments_replayed_blocking(&segments))
                .await
                .map_err(|e| format!("marking the segments of {device} replayed: {e}"))?;
            tracing::info!("replayed the refused readings of {device} after a meter swap");
        }
        Ok(total)
    }

    /// Decodes `rows` again at their reception time, commits them, and deletes the
    /// rows except those `kept` (by index, given the committed plan).
    async fn replay_rows(
        &self,
        rows: &[ReplayableMessage],
        kept: impl Fn(usize, &Plan) -> bool,
    ) -> Result<(), String> {
        let messages = decode_rows(rows, &self.decoders, self.max_future_skew);
        let messages = Arc::new(messages);
        let (plan, report) = match self.committer.commit(messages).await {
            Ok(done) => done,
            Err(e) => {
                self.committer.forget();
                return Err(e);
            }
        };
        let ids: Vec<i64> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !kept(*i, &plan))
            .map(|(_, r)| r.id)
            .collect();
        let registry = self.committer.registry.clone();
        blocking(move || registry.forget_quarantined_blocking(&ids))
            .await
            .map_err(|e| format!("deleting replayed quarantine rows: {e}"))?;
        let m = &self.metrics;
        m.samples_written
            .fetch_add(report.inserted, Ordering::Relaxed);
        m.samples_duplicate
            .fetch_add(report.duplicates, Ordering::Relaxed);
        for (reason, n) in plan.quarantined.values() {
            m.quarantined(*reason, *n);
        }
        tracing::debug!(
            rows = rows.len(),
            inserted = report.inserted,
            duplicates = report.duplicates,
            "replayed quarantined messages"
        );
        Ok(())
    }
}

/// Decodes quarantined `rows` again, as if just received at their first reception time,
/// by the decoder that recognises their topic (as live ingest does). Shared with
/// [`crate::normalise`], which reads a meter's refused readings back.
pub(crate) fn decode_rows(
    rows: &[ReplayableMessage],
    decoders: &Decoders,
    max_future_skew: Duration,
) -> Vec<DecodedMessage> {
    rows.iter()
        .map(|row| {
            let ctx = DecodeContext {
                received_at: row.received_at,
                max_future_skew,
            };
            let routed = decoders.route(&row.topic);
            let decoded = match &routed {
                Ok((decoder, route)) => decoder.decode(route, &row.payload, &ctx),
                Err(p) => Decoded {
                    problems: vec![p.clone()],
                    ..Decoded::default()
                },
            };
            DecodedMessage {
                publish: Publish::new(row.topic.clone(), QoS::AtLeastOnce, row.payload.clone()),
                received_at: row.received_at,
                route: routed
                    .as_ref()
                    .map(|(_, r)| r.clone())
                    .map_err(Clone::clone),
                format: routed.as_ref().map(|(d, _)| d.format()).unwrap_or(""),
                decoded,
            }
        })
        .collect()
}

/// Runs a blocking registry call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, vigie_core::db::DbError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("replay task: {e}"))?
        .map_err(|e| e.to_string())
}
