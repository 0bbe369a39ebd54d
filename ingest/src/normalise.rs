//! Meter normalisation: from the counter readings a device publishes to the indexes the
//! store keeps, so that "consumption = sum of positive steps" is right.
//!
//! For each counter reading (`electricity_kwh`, `gas_m3`, `water_m3`, `gas_kwh`,
//! `pulses`), with the device's [`MeterSettings`]:
//! - **rollover** (`index_rollover` = M, the register's modulus): the stored value is the
//!   *unwrapped* index `raw + k × M`, with k chosen from the neighbouring stored sample
//!   in time (not the arrival order): a step down whose wrapped step `M − prev + raw` is
//!   under M/2 and possible at the meter's maximum flow is a rollover. The raw reading
//!   stays visible as `stored mod M`;
//! - **reset or swap**: any other step down is stored as is: a negative step, which the
//!   store counts as 0 consumption; the steps after it count normally;
//! - **pulses**: a `pulses` count is kept (unwrapped) in its own series and converted to
//!   the meter's index (`pulses × pulse_factor / 1000`: litres → m³, Wh → kWh);
//! - **gas energy**: every `gas_m3` index also yields `gas_kwh = gas_m3 × PCS` with the
//!   building's coefficient (both kept). The kWh index is proportional to the m³ index,
//!   so its consumption is the m³ consumption × PCS in every period; changing a
//!   building's PCS makes one step of `(new − old) × index` at the change;
//! - **impossible flow**: a positive step, before or after the new sample, above
//!   `max_flow_per_hour × max(Δt, 1 min)` is refused (`out_of_range`, detail with the
//!   step, the interval and the limit); the sample is not stored;
//! - **swap to a higher index**: impossible jumps after the last stored point are
//!   remembered (per series, in memory); when `SWAP_CONFIRMATIONS` of them in a row
//!   are consistent with each other, they are a new meter ([`series`]): a segment is
//!   recorded in the registry (from its first reading, stored = published − offset, the
//!   jump a zero step), the readings of this batch are accepted, and the earlier ones,
//!   in quarantine, are replayed by [`crate::replay`]. When a batch leaves such a jump
//!   unconfirmed by the suspects in memory, the registry is read back (bounded: the
//!   device's segments and its newest [`RECOVER_ROWS`] `out_of_range` quarantine rows,
//!   decoded as the replay does): the quarantine, durable and shared by every ingest
//!   process, holds the chain's earlier readings refused before a restart or by
//!   another process, and the registry a segment another process recorded meanwhile.
//!   So a chain confirms across restarts and processes, from the new meter's first
//!   reading. A lone spike stays refused: it is no chain.
//!
//! Late and out-of-order samples are placed among their stored neighbours (read from
//! the store), so a backlog published after live data is normalised as if in order.
//! Live in-order data uses an in-memory last point per series instead (no read). With
//! several ingest processes, that cache may miss the other processes' latest sample:
//! the check then spans a longer interval (more lenient), the unwrapping is unchanged;
//! a jump (an impossible step, a new segment) is always measured from the store's
//! latest point, read again.
//!
//! Known limits: the quarantine is read back from the device's newest [`RECOVER_ROWS`]
//! `out_of_range` rows only (all its quantities): a new meter whose first readings are
//! older than that many refusals of the device keeps them in quarantine (the chain
//! confirms later, from a later reading). A swap whose jump is plausible
//! over the interval (a long gap between readings) is counted as consumption. After a
//! swap upwards the stored index is the reading minus the offset until the meter is
//! reset (then stored as published again). This module must
//! never store a negative consumption nor drop a reading without a sample or a problem
//! to show for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigie_core::ids::SeriesId;
use vigie_core::registry::{
    DeviceKind, MeterContext, MeterSegment, MeterSettings, QuarantineReason, Registry,
    default_max_flow_per_hour,
};
use vigie_core::store::{Point, Sample, StoreError, TimeSeriesStore};
use vigie_core::{DeviceId, Quantity, Timestamp};

use crate::decode::{Decoders, Problem, Reading};

mod series;

pub(crate) use series::{Outcome, Segment, Suspect, normalise_series, recovered_suspects};

/// How long a device's meter settings are reused before being read again.
const SETTINGS_TTL: Duration = Duration::from_secs(2);
const DAY_MS: i64 = 86_400_000;
/// Last instant RFC 3339 can write: the end of forward searches.
const END_OF_TIME: Timestamp = Timestamp(253_402_300_799_999);
/// Most `out_of_range` quarantine rows of a device read back, newest first, to recover
/// the suspects of a series (a chain needs [`series::SWAP_CONFIRMATIONS`] of them).
const RECOVER_ROWS: usize = 64;

/// One counter reading to normalise, with everything resolved.
#[derive(Debug, Clone)]
pub(crate) struct CounterJob {
    /// Index of its message in the batch.
    pub(crate) msg: usize,
    pub(crate) device: DeviceId,
    /// As published (`pulses` or an index quantity).
    pub(crate) quantity: Quantity,
    pub(crate) ts: Timestamp,
    pub(crate) raw: f64,
    /// The series of `quantity` (holds the unwrapped published value).
    pub(crate) series: SeriesId,
    pub(crate) rollover: Option<f64>,
    /// Largest flow per hour, in the unit of the converted index.
    pub(crate) max_flow_per_hour: Option<f64>,
    /// For pulses: the index series, its quantity and the factor pulses → index.
    pub(crate) converted: Option<(SeriesId, Quantity, f64)>,
    /// For gas volume: the derived energy series and the PCS coefficient.
    pub(crate) gas_kwh: Option<(SeriesId, f64)>,
    /// The index segments of `quantity` recorded in the registry, sorted.
    pub(crate) segments: Vec<Segment>,
    /// Where new segments are recorded (`None`: kept in memory only).
    pub(crate) registry: Option<Registry>,
}

impl CounterJob {
    fn factor(&self) -> f64 {
        self.converted.map_or(1.0, |(_, _, f)| f)
    }
    fn index_quantity(&self) -> Quantity {
        self.converted.map_or(self.quantity, |(_, q, _)| q)
    }
}

/// A device's meter context and index segments.
type MeterEntry = (Option<MeterContext>, Vec<MeterSegment>);

/// Device meter contexts and segments, reused for [`SETTINGS_TTL`].
#[derive(Debug, Default)]
pub(crate) struct MeterCache {
    entries: Mutex<HashMap<DeviceId, (Instant, MeterEntry)>>,
}

impl MeterCache {
    /// Forgets a device's entry: its next reading reads the registry again.
    pub(crate) fn forget(&self, id: &DeviceId) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(id);
        }
    }

    fn get(&self, registry: &Registry, id: &DeviceId) -> Result<MeterEntry, String> {
        if let Ok(m) = self.entries.lock()
            && let Some((at, entry)) = m.get(id)
            && at.elapsed() < SETTINGS_TTL
        {
            return Ok(entry.clone());
        }
        let ctx = registry
            .meter_context_blocking(id)
            .map_err(|e| format!("meter settings of device {id}: {e}"))?;
        let segments = match &ctx {
            Some(_) => registry
                .meter_segments_blocking(id)
                .map_err(|e| format!("index segments of device {id}: {e}"))?,
            None => Vec::new(),
        };
        let entry = (ctx, segments);
        if let Ok(mut m) = self.entries.lock() {
            m.insert(id.clone(), (Instant::now(), entry.clone()));
        }
        Ok(entry)
    }
}

/// The index quantity of a meter kind.
fn meter_index(kind: DeviceKind) -> Option<Quantity> {
    match kind {
        DeviceKind::ElectricityMeter => Some(Quantity::ElectricityKwh),
        DeviceKind::GasMeter => Some(Quantity::GasM3),
        DeviceKind::WaterMeter => Some(Quantity::WaterM3),
        _ => None,
    }
}

/// Resolves a counter reading into a job (blocking: registry), or the problem that
/// keeps it out of the store.
pub(crate) fn counter_job(
    msg: usize,
    device: &DeviceId,
    r: &Reading,
    registry: &Registry,
    meters: &MeterCache,
) -> Result<Result<CounterJob, Problem>, String> {
    let (ctx, segments) = meters.get(registry, device)?;
    let (kind, settings, pcs) = match &ctx {
        Some(c) => (c.device.kind, c.settings, c.gas_pcs_kwh_per_m3),
        None => (DeviceKind::Other, MeterSettings::default(), None),
    };
    let series = |q: Quantity| {
        registry
            .series_id_blocking(device, q)
            .map_err(|e| format!("series of {device} {q}: {e}"))
    };
    let own_index = meter_index(kind);
    let converted = if r.quantity == Quantity::Pulses {
        let Some(index) = own_index else {
            return Ok(Err(Problem::new(
                QuarantineReason::UnknownQuantity,
                format!(
                    "pulses from {device}, a {} device: only electricity, gas and water meters count pulses",
                    kind.as_str()
                ),
            )));
        };
        let Some(pf) = settings.pulse_factor else {
            return Ok(Err(Problem::new(
                QuarantineReason::UnknownQuantity,
                format!(
                    "pulses from {device}: no pulse_factor set for this {} (litres or Wh per pulse)",
                    kind.as_str()
                ),
            )));
        };
        Some((series(index)?, index, pf / 1000.0))
    } else {
        None
    };
    let index = converted.map_or(r.quantity, |(_, q, _)| q);
    let gas_kwh = match (index, pcs) {
        (Quantity::GasM3, Some(pcs)) => Some((series(Quantity::GasKwh)?, pcs)),
        _ => None,
    };
    let own = r.quantity == Quantity::Pulses || Some(r.quantity) == own_index;
    Ok(Ok(CounterJob {
        msg,
        device: device.clone(),
        quantity: r.quantity,
        ts: r.ts,
        raw: r.value,
        series: series(r.quantity)?,
        rollover: settings.index_rollover.filter(|_| own),
        max_flow_per_hour: settings
            .max_flow_per_hour
            .or_else(|| default_max_flow_per_hour(index)),
        converted,
        gas_kwh,
        segments: segments
            .iter()
            .filter(|s| s.quantity == r.quantity)
            .map(|s| Segment {
                since: s.since,
                offset: s.offset,
            })
            .collect(),
        registry: Some(registry.clone()),
    }))
}

/// What [`Normaliser::recover`] read back.
struct Recovered {
    segments: Vec<Segment>,
    readings: Vec<(Timestamp, f64)>,
}

/// How refused readings are read back from quarantine: the decoders of live ingest.
#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    pub(crate) decoders: Arc<Decoders>,
    pub(crate) max_future_skew: Duration,
}

/// The latest point of each series, as last normalised; the impossible jumps that may
/// be a new meter; the segments this process recorded; how to read suspects back from
/// quarantine (`None`: memory only).
#[derive(Debug, Default)]
pub(crate) struct Normaliser {
    last: Mutex<HashMap<SeriesId, Point>>,
    suspects: Mutex<HashMap<SeriesId, Vec<Suspect>>>,
    segments: Mutex<HashMap<SeriesId, Vec<Segment>>>,
    recovery: Option<Recovery>,
}

impl Normaliser {
    /// A normaliser that reads suspects back from quarantine with `recovery`.
    pub(crate) fn recovering(recovery: Recovery) -> Normaliser {
        Normaliser {
            recovery: Some(recovery),
            ..Normaliser::default()
        }
    }

    /// What the registry holds now for `job`'s device and quantity: its index segments
    /// (another process may have recorded one since this one read them) and the
    /// readings refused as `out_of_range`, `(ts, published value)`, read back from the
    /// device's newest [`RECOVER_ROWS`] quarantine rows, decoded as the replay does.
    /// `None` without a [`Recovery`].
    async fn recover(&self, job: &CounterJob) -> Result<Option<Recovered>, StoreError> {
        let (Some(recovery), Some(registry)) = (&self.recovery, job.registry.clone()) else {
            return Ok(None);
        };
        let device = job.device.clone();
        let (segments, rows) = tokio::task::spawn_blocking(move || {
            let segments = registry.meter_segments_blocking(&device)?;
            let rows = registry.latest_out_of_range_blocking(&device, RECOVER_ROWS)?;
            Ok::<_, vigie_core::db::DbError>((segments, rows))
        })
        .await
        .map_err(|e| StoreError::Db(vigie_core::db::DbError::Task(e.to_string())))??;
        let messages =
            crate::replay::decode_rows(&rows, &recovery.decoders, recovery.max_future_skew);
        let readings = messages
            .iter()
            .filter(|m| {
                let route = m.route.as_ref().ok().map(|r| &r.device);
                m.decoded.device.as_ref().or(route) == Some(&job.device)
            })
            .flat_map(|m| &m.decoded.readings)
            .filter(|r| r.quantity == job.quantity)
            .map(|r| (r.ts, r.value))
            .collect();
        let segments = segments
            .iter()
            .filter(|s| s.quantity == job.quantity)
            .map(|s| Segment {
                since: s.since,
                offset: s.offset,
            })
            .collect();
        Ok(Some(Recovered { segments, readings }))
    }

    /// Forgets the cached latest points (after a failed commit).
    pub(crate) fn forget(&self) {
        if let Ok(mut l) = self.last.lock() {
            l.clear();
        }
    }

    /// The segments of a series: the registry's (as of the jobs) and this process's.
    fn segments_of(&self, series: SeriesId, from_registry: &[Segment]) -> Vec<Segment> {
        let mut all = from_registry.to_vec();
        if let Ok(known) = self.segments.lock()
            && let Some(mine) = known.get(&series)
        {
            for s in mine {
                if !all.iter().any(|a| a.since == s.since) {
                    all.push(*s);
                }
            }
        }
        all.sort_by_key(|s| s.since);
        all
    }

    /// Records new segments in the registry (marked for replay when readings of the
    /// new meter wait in quarantine) and in memory.
    async fn record_segments(
        &self,
        series: SeriesId,
        job: &CounterJob,
        new: &[(Segment, bool)],
    ) -> Result<(), StoreError> {
        for (segment, _) in new {
            tracing::info!(
                "{} {}: meter swap detected at {} (a jump to a higher index, then consistent readings); \
                 readings from then on are stored minus {}",
                job.device,
                job.quantity,
                segment.since,
                segment.offset
            );
        }
        if let Some(registry) = job.registry.clone() {
            let (device, quantity) = (job.device.clone(), job.quantity);
            let new = new.to_vec();
            tokio::task::spawn_blocking(move || {
                new.iter().try_for_each(|(s, replay)| {
                    let segment = MeterSegment {
                        quantity,
                        since: s.since,
                        offset: s.offset,
                    };
                    registry.add_meter_segment_blocking(&device, &segment, *replay)
                })
            })
            .await
            .map_err(|e| StoreError::Db(vigie_core::db::DbError::Task(e.to_string())))??;
        }
        if let Ok(mut known) = self.segments.lock() {
            known
                .entry(series)
                .or_default()
                .extend(new.iter().map(|(s, _)| *s));
        }
        Ok(())
    }

    /// Normalises every job: samples to write, and problems per message index.
    pub(crate) async fn apply(
        &self,
        jobs: &[CounterJob],
        store: &dyn TimeSeriesStore,
    ) -> Result<(Vec<Sample>, Vec<(usize, Problem)>), StoreError> {
        let mut by_series: BTreeMap<SeriesId, Vec<&CounterJob>> = BTreeMap::new();
        for j in jobs {
            by_series.entry(j.series).or_default().push(j);
        }
        let mut samples = Vec::with_capacity(jobs.len() * 2);
        let mut problems = Vec::new();
        for (series, mut group) in by_series {
            group.sort_by_key(|j| j.ts);
            let (min, max) = (group[0].ts, group[group.len() - 1].ts);
            let cached = self.last.lock().ok().and_then(|l| l.get(&series).copied());
            let from_cache = cached.is_some_and(|p| p.ts < min);
            let (mut around, mut latest_known) = match cached {
                Some(p) if from_cache => (vec![p], true),
                _ => context(store, series, min, max).await?,
            };
            let mut segments = self.segments_of(series, &group[0].segments);
            let suspects = self
                .suspects
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&series))
                .unwrap_or_default();
            let before = suspects.clone();
            let mut run = normalise_series(&around, &segments, suspects, &group);
            if from_cache && (!run.new_segments.is_empty() || left_unconfirmed(&group, &run)) {
                // A jump is measured from the series' latest point: another process may
                // have stored a later one than the cached one.
                (around, latest_known) = context(store, series, min, max).await?;
                run = normalise_series(&around, &segments, before.clone(), &group);
            }
            if left_unconfirmed(&group, &run)
                && let Some(found) = self.recover(group[0]).await?
            {
                // An impossible jump after the last stored point that memory does not
                // confirm: its earlier readings may have been refused by another process
                // or before a restart (the quarantine, shared and durable, has them), or
                // another process may have confirmed the swap already (the registry has
                // its segment).
                let fresh: Vec<Segment> = found
                    .segments
                    .iter()
                    .filter(|f| !segments.iter().any(|s| s.since == f.since))
                    .copied()
                    .collect();
                if !fresh.is_empty() {
                    // What this process knows of the series may be stale too.
                    segments.extend(&fresh);
                    segments.sort_by_key(|s| s.since);
                    (around, latest_known) = context(store, series, min, max).await?;
                    if let Ok(mut known) = self.segments.lock() {
                        known.entry(series).or_default().extend(&fresh);
                    }
                }
                let recovered: Vec<Suspect> =
                    recovered_suspects(&around, &segments, group[0], &found.readings)
                        .into_iter()
                        .filter(|r| !before.iter().any(|b| b.ts == r.ts))
                        .filter(|r| !group.iter().any(|j| j.ts == r.ts))
                        .collect();
                if !fresh.is_empty() || !recovered.is_empty() {
                    let mut merged = before.clone();
                    merged.extend(recovered);
                    merged.sort_by_key(|s| s.ts);
                    run = normalise_series(&around, &segments, merged, &group);
                }
            }
            if !run.new_segments.is_empty()
                && let Err(e) = self
                    .record_segments(series, group[0], &run.new_segments)
                    .await
            {
                // The batch is retried: with the suspects it started from.
                if let Ok(mut s) = self.suspects.lock() {
                    s.insert(series, before);
                }
                return Err(e);
            }
            if !run.suspects.is_empty()
                && let Ok(mut s) = self.suspects.lock()
            {
                s.insert(series, run.suspects);
            }
            let timeline = run.timeline;
            for (job, outcome) in group.iter().zip(run.outcomes) {
                let value = match outcome {
                    Outcome::Accepted(v) | Outcome::Duplicate(v) => v,
                    Outcome::Rejected(p) => {
                        problems.push((job.msg, p));
                        continue;
                    }
                };
                samples.push(Sample {
                    series,
                    ts: job.ts,
                    value,
                });
                let index = value * job.factor();
                if let Some((s, _, _)) = job.converted {
                    samples.push(Sample {
                        series: s,
                        ts: job.ts,
                        value: index,
                    });
                }
                if let Some((s, pcs)) = job.gas_kwh {
                    samples.push(Sample {
                        series: s,
                        ts: job.ts,
                        value: index * pcs,
                    });
                }
            }
            if latest_known && let (Some(last), Ok(mut l)) = (timeline.last(), self.last.lock()) {
                l.insert(series, *last);
            }
        }
        Ok((samples, problems))
    }
}

/// Whether a job of `group` was refused as an impossible jump after the last stored
/// point and left as a suspect (a chain not confirmed by the suspects the run had).
fn left_unconfirmed(group: &[&CounterJob], run: &series::SeriesRun) -> bool {
    group.iter().zip(&run.outcomes).any(|(j, o)| {
        matches!(o, Outcome::Rejected(_)) && run.suspects.iter().any(|s| s.ts == j.ts)
    })
}

/// Stored points around `[min, max]`: the last one before, those within, the first one
/// after; and whether the last returned point is the series' latest.
async fn context(
    store: &dyn TimeSeriesStore,
    series: SeriesId,
    min: Timestamp,
    max: Timestamp,
) -> Result<(Vec<Point>, bool), StoreError> {
    let mut pts = store
        .range(
            series,
            min.plus_millis(-DAY_MS),
            max.plus_millis(DAY_MS + 1),
        )
        .await?;
    if !pts.iter().any(|p| p.ts < min) {
        for from in [
            min.plus_millis(-35 * DAY_MS),
            min.plus_millis(-400 * DAY_MS),
            Timestamp(0),
        ] {
            let before = store.range(series, from, min.plus_millis(-DAY_MS)).await?;
            if let Some(p) = before.last() {
                pts.insert(0, *p);
                break;
            }
        }
    }
    let mut latest_known = true;
    match pts.iter().position(|p| p.ts > max) {
        Some(i) => {
            pts.truncate(i + 1);
            latest_known = false;
        }
        None => {
            let after = store
                .range(series, max.plus_millis(DAY_MS + 1), END_OF_TIME)
                .await?;
            if let Some(p) = after.first() {
                pts.push(*p);
                latest_known = false;
            }
        }
    }
    Ok((pts, latest_known))
}

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
