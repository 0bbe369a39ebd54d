//! One commit attempt, shared by the batcher and the replay of quarantined messages:
//! resolve devices and series, normalise meter readings, write the samples in one
//! idempotent store transaction, then the registry side (quarantine, last seen,
//! statuses, pending devices).
//!
//! An attempt may be repeated after a failure: every write in it is idempotent, and
//! the caches it uses are forgotten on failure ([`Committer::forget`]). This module must
//! never write the registry side of a batch whose samples were not committed.

use std::sync::Arc;

use vigie_core::registry::Registry;
use vigie_core::store::{TimeSeriesStore, WriteReport};

use super::plan::{self, DecodedMessage, DeviceCache, Plan};
use crate::normalise::{MeterCache, Normaliser};

/// What a commit needs; cheap to clone (shared caches).
#[derive(Clone)]
pub(crate) struct Committer {
    pub(crate) registry: Registry,
    pub(crate) store: Arc<dyn TimeSeriesStore>,
    pub(crate) devices: Arc<DeviceCache>,
    pub(crate) meters: Arc<MeterCache>,
    pub(crate) normaliser: Arc<Normaliser>,
}

impl Committer {
    /// A committer with empty caches.
    pub(crate) fn new(registry: Registry, store: Arc<dyn TimeSeriesStore>) -> Committer {
        Committer {
            registry,
            store,
            devices: Arc::default(),
            meters: Arc::default(),
            normaliser: Arc::default(),
        }
    }

    /// Forgets what may be stale after a failed attempt.
    pub(crate) fn forget(&self) {
        self.devices.clear();
        self.normaliser.forget();
    }

    /// One commit attempt of decoded messages.
    pub(crate) async fn commit(
        &self,
        messages: Arc<Vec<DecodedMessage>>,
    ) -> Result<(Plan, WriteReport), String> {
        let (registry, devices, meters) = (
            self.registry.clone(),
            self.devices.clone(),
            self.meters.clone(),
        );
        let msgs = messages.clone();
        let mut plan =
            tokio::task::spawn_blocking(move || plan::resolve(&msgs, &registry, &devices, &meters))
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
        let report = self
            .store
            .write(&plan.samples)
            .await
            .map_err(|e| format!("{} store write: {e}", self.store.name()))?;
        let registry = self.registry.clone();
        let plan = tokio::task::spawn_blocking(move || {
            plan::write_registry(&plan, &registry).map(|()| plan)
        })
        .await
        .map_err(|e| format!("registry task: {e}"))??;
        Ok((plan, report))
    }
}
