//! One commit attempt, shared by the batcher and the replay of quarantined messages:
//! resolve devices and series, normalise meter readings, write the samples and the
//! registry side (quarantine, last seen, statuses, pending devices). With the embedded
//! store in the registry's file both are one idempotent transaction (one commit, one
//! fsync); with a remote store the registry side is committed after the samples.
//!
//! Readings older than the store's raw retention cut are quarantined
//! (`older_than_retention`) while the rest of the batch is stored. If retention moves
//! the cut between the check and the write, the store refuses the write whole and the
//! attempt is made again against the new cut.
//!
//! An attempt may be repeated after a failure: every write in it is idempotent, and
//! the caches it uses are forgotten on failure ([`Committer::forget`]). This module must
//! never write the registry side of a batch whose samples were not committed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigie_core::Timestamp;
use vigie_core::registry::Registry;
use vigie_core::store::{StoreError, TimeSeriesStore, WriteReport};

use super::plan::{self, DecodedMessage, DeviceCache, Plan};
use crate::normalise::{MeterCache, Normaliser, Recovery};

/// How long the store's retention cut is reused before being read again. A stale cut
/// is safe: the store refuses a write below the real one, and the commit is made again
/// with the cut read afresh.
const RETENTION_CUT_TTL: Duration = Duration::from_secs(10);

/// Commits made again when retention moves its cut during one (once a day at most).
const RETENTION_RETRIES: u32 = 3;

/// The store's retention cut (`None`: nothing retained) and when it was read.
type CutRead = (Instant, Option<Timestamp>);

/// Why an attempt failed.
enum Attempt {
    /// The store refused samples older than a cut newer than the one checked.
    RetentionMoved(StoreError),
    /// Anything else (described).
    Failed(String),
}

impl From<String> for Attempt {
    fn from(e: String) -> Attempt {
        Attempt::Failed(e)
    }
}

/// What a commit needs; cheap to clone (shared caches).
#[derive(Clone)]
pub(crate) struct Committer {
    pub(crate) registry: Registry,
    pub(crate) store: Arc<dyn TimeSeriesStore>,
    pub(crate) devices: Arc<DeviceCache>,
    pub(crate) meters: Arc<MeterCache>,
    pub(crate) normaliser: Arc<Normaliser>,
    /// The store's retention cut, and when it was read.
    retention_cut: Arc<Mutex<Option<CutRead>>>,
    /// The store is the embedded one, in the registry's file: one transaction per batch.
    same_file: bool,
}

impl Committer {
    /// A committer with empty caches.
    pub(crate) fn new(registry: Registry, store: Arc<dyn TimeSeriesStore>) -> Committer {
        let same_file = store
            .as_sqlite()
            .is_some_and(|s| s.db().path() == registry.db().path());
        Committer {
            same_file,
            registry,
            store,
            devices: Arc::default(),
            meters: Arc::default(),
            normaliser: Arc::default(),
            retention_cut: Arc::default(),
        }
    }

    /// The same committer, whose normaliser reads a meter's refused readings back from
    /// quarantine with the decoders of live ingest (a swap confirmed across a restart or
    /// across processes).
    pub(crate) fn recovering(mut self, recovery: Recovery) -> Committer {
        self.normaliser = Arc::new(Normaliser::recovering(recovery));
        self
    }

    /// The store's retention cut, read at most every [`RETENTION_CUT_TTL`].
    async fn retention_cut(&self) -> Result<Option<Timestamp>, String> {
        let cached = self.retention_cut.lock().ok().and_then(|c| *c);
        if let Some((read_at, cut)) = cached
            && read_at.elapsed() < RETENTION_CUT_TTL
        {
            return Ok(cut);
        }
        let cut = self
            .store
            .raw_retained_before()
            .await
            .map_err(|e| format!("{} store read (retention cut): {e}", self.store.name()))?;
        if let Ok(mut c) = self.retention_cut.lock() {
            *c = Some((Instant::now(), cut));
        }
        Ok(cut)
    }

    /// Forgets what may be stale after a failed attempt.
    pub(crate) fn forget(&self) {
        self.devices.clear();
        self.normaliser.forget();
        if let Ok(mut c) = self.retention_cut.lock() {
            *c = None;
        }
    }

    /// One commit of decoded messages (made again, a few times at most, when retention
    /// moved its cut meanwhile).
    pub(crate) async fn commit(
        &self,
        messages: Arc<Vec<DecodedMessage>>,
    ) -> Result<(Plan, WriteReport), String> {
        let mut moved = 0;
        loop {
            match self.attempt(messages.clone()).await {
                Err(Attempt::RetentionMoved(e)) if moved < RETENTION_RETRIES => {
                    moved += 1;
                    tracing::info!(
                        "retention moved its cut during a commit ({e}); committing again"
                    );
                    self.forget();
                }
                Err(Attempt::RetentionMoved(e)) => {
                    return Err(format!("{} store write: {e}", self.store.name()));
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(done) => return Ok(done),
            }
        }
    }

    async fn attempt(
        &self,
        messages: Arc<Vec<DecodedMessage>>,
    ) -> Result<(Plan, WriteReport), Attempt> {
        let retained_before = self.retention_cut().await?;
        let (registry, devices, meters) = (
            self.registry.clone(),
            self.devices.clone(),
            self.meters.clone(),
        );
        let msgs = messages.clone();
        let mut plan = tokio::task::spawn_blocking(move || {
            plan::resolve(&msgs, &registry, &devices, &meters, retained_before)
        })
        .await
        .map_err(|e| format!("resolve task: {e}"))??;
        if !plan.jobs.is_empty() {
            let jobs = std::mem::take(&mut plan.jobs);
            let (samples, problems) = self
                .normaliser
                .apply(&jobs, self.store.as_ref())
                .await
                .map_err(|e| {
                    format!(
                        "{} store read (meter normalisation): {e}",
                        self.store.name()
                    )
                })?;
            plan.add_normalised(samples, problems);
        }
        plan.finish(&messages);
        let refused = |e: StoreError, store: &str| match e {
            e @ StoreError::OlderThanRetention { .. } => Attempt::RetentionMoved(e),
            e => Attempt::Failed(format!("{store} store write: {e}")),
        };
        if self.same_file {
            // The embedded store in the registry's file: samples and registry side in
            // one transaction, one commit, one fsync.
            let (store, registry) = (self.store.clone(), self.registry.clone());
            let (plan, written) = tokio::task::spawn_blocking(move || {
                let mut step = "";
                let written = match store.as_sqlite() {
                    Some(sqlite) => sqlite
                        .write_with_blocking(&plan.samples, |c| {
                            plan::write_registry_in(&plan, &registry, c, &mut step)
                        })
                        .map(|(report, ())| report),
                    None => Err(StoreError::InvalidQuery("not the embedded store".into())),
                };
                (plan, written.map_err(|e| (e, step)))
            })
            .await
            .map_err(|e| format!("store task: {e}"))?;
            let report = written.map_err(|(e, step)| match e {
                StoreError::Db(e) if !step.is_empty() => {
                    Attempt::Failed(format!("{step} (with the batch's samples): {e}"))
                }
                e => refused(e, self.store.name()),
            })?;
            return Ok((plan, report));
        }
        let report = self
            .store
            .write(&plan.samples)
            .await
            .map_err(|e| refused(e, self.store.name()))?;
        let registry = self.registry.clone();
        let plan = tokio::task::spawn_blocking(move || {
            plan::write_registry(&plan, &registry).map(|()| plan)
        })
        .await
        .map_err(|e| format!("registry task: {e}"))??;
        Ok((plan, report))
    }
}
