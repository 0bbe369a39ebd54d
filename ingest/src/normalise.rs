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
//!   step, the interval and the limit); the sample is not stored.
//!
//! Late and out-of-order samples are placed among their stored neighbours (read from
//! the store), so a backlog published after live data is normalised as if in order.
//! Live in-order data uses an in-memory last point per series instead (no read). With
//! several ingest processes, that cache may miss the other processes' latest sample:
//! the check then spans a longer interval (more lenient), the unwrapping is unchanged.
//!
//! Known limit: a meter swapped for one with a *higher* index looks like an impossible
//! jump and is quarantined until a technician sets it up again (a swap downwards is a
//! reset). This module must never store a negative consumption nor drop a reading
//! without a sample or a problem to show for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vigie_core::ids::SeriesId;
use vigie_core::registry::{
    DeviceKind, MeterContext, MeterSettings, QuarantineReason, Registry, default_max_flow_per_hour,
};
use vigie_core::store::{Point, Sample, StoreError, TimeSeriesStore};
use vigie_core::{DeviceId, Quantity, Timestamp};

use crate::decode::{Problem, Reading};

/// How long a device's meter settings are reused before being read again.
const SETTINGS_TTL: Duration = Duration::from_secs(2);
/// Shortest interval a flow is computed over (index resolution makes shorter ones noisy).
const MIN_FLOW_INTERVAL_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Last instant RFC 3339 can write: the end of forward searches.
const END_OF_TIME: Timestamp = Timestamp(253_402_300_799_999);

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
}

impl CounterJob {
    fn factor(&self) -> f64 {
        self.converted.map_or(1.0, |(_, _, f)| f)
    }
    fn index_quantity(&self) -> Quantity {
        self.converted.map_or(self.quantity, |(_, q, _)| q)
    }
}

/// Device meter contexts, reused for [`SETTINGS_TTL`].
#[derive(Debug, Default)]
pub(crate) struct MeterCache {
    entries: Mutex<HashMap<DeviceId, (Instant, Option<MeterContext>)>>,
}

impl MeterCache {
    fn get(&self, registry: &Registry, id: &DeviceId) -> Result<Option<MeterContext>, String> {
        if let Ok(m) = self.entries.lock()
            && let Some((at, ctx)) = m.get(id)
            && at.elapsed() < SETTINGS_TTL
        {
            return Ok(ctx.clone());
        }
        let ctx = registry
            .meter_context_blocking(id)
            .map_err(|e| format!("meter settings of device {id}: {e}"))?;
        if let Ok(mut m) = self.entries.lock() {
            m.insert(id.clone(), (Instant::now(), ctx.clone()));
        }
        Ok(ctx)
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
    let ctx = meters.get(registry, device)?;
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
    }))
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Stored with this (unwrapped) value.
    Accepted(f64),
    /// A sample already exists at this instant (its value is kept; writing it again is
    /// a counted no-op).
    Duplicate(f64),
    /// Refused.
    Rejected(Problem),
}

/// The latest point of each series, as last normalised.
#[derive(Debug, Default)]
pub(crate) struct Normaliser {
    last: Mutex<HashMap<SeriesId, Point>>,
}

impl Normaliser {
    /// Forgets the cached latest points (after a failed commit).
    pub(crate) fn forget(&self) {
        if let Ok(mut l) = self.last.lock() {
            l.clear();
        }
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
            let (context, latest_known) = match cached {
                Some(p) if p.ts < min => (vec![p], true),
                _ => context(store, series, min, max).await?,
            };
            let (outcomes, timeline) = normalise_series(&context, &group);
            for (job, outcome) in group.iter().zip(outcomes) {
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

/// Places each job (sorted by time) among the stored points `context` (sorted) and
/// decides its fate. Pure. Returns one outcome per job and the resulting timeline.
pub(crate) fn normalise_series(
    context: &[Point],
    jobs: &[&CounterJob],
) -> (Vec<Outcome>, Vec<Point>) {
    let mut timeline = context.to_vec();
    let outcomes = jobs
        .iter()
        .map(|job| {
            let i = match timeline.binary_search_by_key(&job.ts, |p| p.ts) {
                Ok(i) => return Outcome::Duplicate(timeline[i].value),
                Err(i) => i,
            };
            let prev = i.checked_sub(1).map(|j| timeline[j]);
            let next = timeline.get(i).copied();
            if let Some(m) = job.rollover
                && job.raw >= m
            {
                return Outcome::Rejected(Problem::new(
                    QuarantineReason::OutOfRange,
                    format!(
                        "{} {} = {} at {} is not below the meter's index rollover {m}; not stored",
                        job.device, job.quantity, job.raw, job.ts
                    ),
                ));
            }
            // A wrapped step is a rollover only if the meter could have made it.
            let max_raw_step = |a: Timestamp, b: Timestamp| {
                job.max_flow_per_hour.map_or(f64::INFINITY, |max| {
                    max * (b.0 - a.0).max(MIN_FLOW_INTERVAL_MS) as f64 / 3_600_000.0 / job.factor()
                })
            };
            let limit_prev = prev.map_or(f64::INFINITY, |p| max_raw_step(p.ts, job.ts));
            let limit_next = next.map_or(f64::INFINITY, |n| max_raw_step(job.ts, n.ts));
            let value = unwrap(prev, next, job.raw, job.rollover, limit_prev, limit_next);
            let point = Point { ts: job.ts, value };
            let checks = [prev.map(|p| (p, point)), next.map(|n| (point, n))];
            for (a, b) in checks.into_iter().flatten() {
                if let Some(p) = too_fast(job, a, b) {
                    return Outcome::Rejected(p);
                }
            }
            timeline.insert(i, point);
            Outcome::Accepted(value)
        })
        .collect();
    (outcomes, timeline)
}

/// The unwrapped value of `raw` between its neighbours (see the module doc); a wrapped
/// step larger than `limit_prev` (from the previous point) or `limit_next` (to the next
/// one) is not a rollover.
fn unwrap(
    prev: Option<Point>,
    next: Option<Point>,
    raw: f64,
    rollover: Option<f64>,
    limit_prev: f64,
    limit_next: f64,
) -> f64 {
    let Some(m) = rollover else { return raw };
    match (prev, next) {
        (Some(p), _) => {
            let k = (p.value / m).floor().max(0.0);
            let c = k * m + raw;
            if c >= p.value {
                // Slightly below a previous rollover (a glitch or a reset near the top):
                // the smaller move wins.
                if c - p.value > m / 2.0 && c - m >= 0.0 {
                    c - m
                } else {
                    c
                }
            } else {
                let wrapped = c + m - p.value;
                if wrapped <= m / 2.0 && wrapped <= limit_prev {
                    c + m
                } else {
                    c
                }
            }
        }
        (None, Some(n)) => {
            let k = (n.value / m).floor().max(0.0);
            let c = k * m + raw;
            let wrapped = n.value - (c - m);
            if c > n.value && k >= 1.0 && wrapped <= m / 2.0 && wrapped <= limit_next {
                c - m
            } else {
                c
            }
        }
        (None, None) => raw,
    }
}

/// A problem if the step from `a` to `b` is positive and faster than the meter allows.
fn too_fast(job: &CounterJob, a: Point, b: Point) -> Option<Problem> {
    let max = job.max_flow_per_hour?;
    let step = (b.value - a.value) * job.factor();
    let dt_ms = (b.ts.0 - a.ts.0).max(MIN_FLOW_INTERVAL_MS);
    let limit = max * dt_ms as f64 / 3_600_000.0;
    if step <= limit {
        return None;
    }
    let unit = job.index_quantity().unit();
    let flow = step * 3_600_000.0 / dt_ms as f64;
    Some(Problem::new(
        QuarantineReason::OutOfRange,
        format!(
            "{} {} = {} at {}: a step of {} {unit} between {} and {} ({}) implies {} {unit}/h, \
             above the meter's maximum of {max} {unit}/h; not stored",
            job.device,
            job.quantity,
            job.raw,
            job.ts,
            round3(step),
            a.ts,
            b.ts,
            human_interval(b.ts.0 - a.ts.0),
            round3(flow),
        ),
    ))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn human_interval(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests;
