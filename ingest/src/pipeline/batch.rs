//! The batcher: cuts batches, commits them, and only then acknowledges.
//!
//! A batch closes when it holds `batch_max_messages`, when `batch_linger` has passed
//! since its first message, or when no message came for `batch_idle` (the broker has
//! sent its whole in-flight window and waits for acks). Then: decode, resolve, write
//! the samples in one idempotent store transaction, write quarantine, last-seen and
//! status in the registry, and ack every message of the batch in arrival order (rumqttd
//! refuses out-of-order acks), skipping those that came on an earlier connection.
//!
//! When a commit fails nothing is acked: `store_writable` goes false, the failure is
//! logged once, and the same batch is retried with backoff until it succeeds; the
//! bounded channel then fills and the broker keeps the rest. This task must never ack a
//! message before its batch is committed, and never drop one without a trace.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use vigie_core::metrics::Metrics;
use vigie_core::store::WriteReport;

use super::commit::Committer;
use super::connection::{Ack, Inbound};
use super::plan::{self, Plan};
use crate::decode::Decoders;
use crate::error::IngestError;

/// Commit attempts made for the last batch once shutdown was asked.
const ATTEMPTS_WHEN_STOPPING: u32 = 3;

/// Batch cutting and limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub(crate) max_messages: usize,
    pub(crate) linger: Duration,
    pub(crate) idle: Duration,
    pub(crate) max_payload_bytes: usize,
    pub(crate) max_future_skew: Duration,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

/// The batcher's state.
pub(crate) struct Batcher {
    pub(crate) rx: mpsc::Receiver<Inbound>,
    /// Acknowledgements go to the connection task, which writes them.
    pub(crate) acks: mpsc::UnboundedSender<Vec<Ack>>,
    pub(crate) client: AsyncClient,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) decoders: Arc<Decoders>,
    pub(crate) committer: Committer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: BatchLimits,
}

impl Batcher {
    /// Runs until the connection task closes the channel; then commits what is left,
    /// acks it and asks the client to disconnect.
    pub(crate) async fn run(mut self) -> Result<(), IngestError> {
        let mut outcome = Ok(());
        while let Some(batch) = self.collect().await {
            if let Err(e) = self.commit_and_ack(batch).await {
                outcome = Err(e);
                // Keep draining so that the lag gauge stays true; nothing more is acked.
                while let Some(_m) = self.rx.recv().await {
                    self.metrics.consumer_lag.fetch_sub(1, Ordering::Relaxed);
                }
                break;
            }
        }
        if let Err(e) = self.client.disconnect().await {
            tracing::debug!("MQTT disconnect request not delivered: {e}");
        }
        outcome
    }

    /// The next batch, or `None` once the channel is closed and empty.
    async fn collect(&mut self) -> Option<Vec<Inbound>> {
        let first = self.rx.recv().await?;
        let max = self.limits.max_messages;
        let mut batch = Vec::with_capacity(max.min(1024));
        batch.push(first);
        let deadline = Instant::now() + self.limits.linger;
        while batch.len() < max {
            // Take what is already there without touching timers.
            while batch.len() < max {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if batch.len() >= max {
                break;
            }
            let until = deadline.min(Instant::now() + self.limits.idle);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(m)) => batch.push(m),
                // Closed (the rest is taken next round) or quiet: commit now.
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    async fn commit_and_ack(&mut self, batch: Vec<Inbound>) -> Result<(), IngestError> {
        let n = batch.len();
        let (decoders, limits) = (self.decoders.clone(), self.limits);
        let (batch, messages) = tokio::task::spawn_blocking(move || {
            let decoded = plan::decode_batch(
                &batch,
                &decoders,
                limits.max_payload_bytes,
                limits.max_future_skew,
            );
            (batch, decoded)
        })
        .await
        .map_err(|e| IngestError::Task {
            task: "decode",
            reason: e.to_string(),
        })?;
        let messages = Arc::new(messages);

        let mut backoff = self.limits.retry_min;
        let mut failed_attempts = 0u32;
        let mut attempts_stopping = 0u32;
        let (plan, report) = loop {
            let started = std::time::Instant::now();
            match self.committer.commit(messages.clone()).await {
                Ok((plan, report)) => {
                    self.metrics.observe_batch_commit(started.elapsed());
                    break (plan, report);
                }
                Err(e) => {
                    self.committer.forget();
                    self.metrics
                        .batch_commit_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.metrics.store_writable.store(false, Ordering::Relaxed);
                    failed_attempts += 1;
                    if failed_attempts == 1 {
                        tracing::error!(
                            "cannot commit a batch of {n} message(s): {e}. Nothing is acknowledged; \
                             retrying with backoff up to {:?} until it succeeds (messages wait at the broker)",
                            self.limits.retry_max
                        );
                    } else {
                        tracing::debug!("commit attempt {failed_attempts} failed: {e}");
                    }
                    if *self.stop.borrow() {
                        attempts_stopping += 1;
                        if attempts_stopping >= ATTEMPTS_WHEN_STOPPING {
                            tracing::error!(
                                "stopping with {n} uncommitted message(s), left unacknowledged: {e}"
                            );
                            self.metrics
                                .consumer_lag
                                .fetch_sub(n as u64, Ordering::Relaxed);
                            return Err(IngestError::UncommittedAtShutdown {
                                messages: n,
                                reason: e,
                            });
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.limits.retry_max);
                }
            }
        };
        if failed_attempts > 0 {
            tracing::info!(
                "store writable again: batch committed after {failed_attempts} failed attempt(s)"
            );
        }
        self.metrics.store_writable.store(true, Ordering::Relaxed);
        self.record(&plan, report);
        self.ack(&batch).await;
        Ok(())
    }

    fn record(&self, plan: &Plan, report: WriteReport) {
        let m = &self.metrics;
        m.samples_written
            .fetch_add(report.inserted, Ordering::Relaxed);
        m.samples_duplicate
            .fetch_add(report.duplicates, Ordering::Relaxed);
        m.batches_committed.fetch_add(1, Ordering::Relaxed);
        for (reason, n) in plan.quarantined.values() {
            m.quarantined(*reason, *n);
        }
        if !plan.quarantine.is_empty() {
            tracing::debug!(
                "{} quarantine entr(y/ies) written for this batch",
                plan.quarantine.len()
            );
        }
    }

    /// Acks in arrival order; messages from an earlier connection are left to the
    /// broker's redelivery (their packet ids mean nothing on the new connection).
    async fn ack(&self, batch: &[Inbound]) {
        let current = self.generation.load(Ordering::SeqCst);
        let mut acks = Vec::with_capacity(batch.len());
        for m in batch {
            self.metrics.consumer_lag.fetch_sub(1, Ordering::Relaxed);
            if m.generation != current {
                tracing::debug!(
                    pkid = m.publish.pkid,
                    "committed but not acked: it came on an earlier connection"
                );
                continue;
            }
            acks.push(Ack {
                generation: m.generation,
                pkid: m.publish.pkid,
            });
        }
        if !acks.is_empty() && self.acks.send(acks).is_err() {
            tracing::warn!(
                "cannot acknowledge: the connection task is gone (the broker redelivers)"
            );
        }
    }
}
