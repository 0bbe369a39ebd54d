//! What a device's firmware reports: the physical model's values seen through the
//! device's meter history (resets, swaps) and its own clock (skew).
//!
//! [`DeviceReadings`] wraps a [`DeviceModel`]: it stamps each reading with the
//! device's clock (the true instant plus a fixed per-device offset drawn from the
//! seed), replaces a meter's true index by the index its currently installed meter
//! shows ([`crate::meter`]), and, when asked, adds the energy of the current and
//! previous local days (what Tasmota reports as `Today` / `Yesterday`). Values are
//! always those of the true instant: a skewed clock mislabels a reading, it does not
//! change what was measured. This module never reads the wall clock.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use vigie_core::registry::{Building, Device, DeviceKind};
use vigie_core::time::{local_date, local_midnight};
use vigie_core::{Quantity, Timestamp};

use crate::climate::{hash_str, mix, noise};
use crate::meter::{MeterHistory, is_meter};
use crate::model::{COUNTER_EPOCH, DeviceModel};

/// One reading as the device reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The instant on the device's clock (true instant plus its skew).
    pub ts: Timestamp,
    /// Values by quantity; a meter's index is the one its current meter shows.
    pub values: BTreeMap<Quantity, f64>,
    /// For meters: when the current meter started counting (the last reset or swap,
    /// or the counter epoch), on the device's clock.
    pub meter_since: Option<Timestamp>,
    /// For electricity meters, when asked for: energy of the local day so far and of
    /// the previous local day (kWh, Europe/Paris days of the true instant).
    pub day_energy: Option<DayEnergy>,
}

/// Energy of the current and previous local days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayEnergy {
    /// kWh since local midnight.
    pub today_kwh: f64,
    /// kWh over the whole previous local day.
    pub yesterday_kwh: f64,
}

/// How a simulated firmware misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirmwareOptions {
    /// Apply the seed's meter resets and swaps ([`crate::meter`]).
    pub resets: bool,
    /// Largest clock error; each device gets a fixed offset in `[-skew, +skew]`.
    pub skew: Option<Duration>,
    /// Compute [`Reading::day_energy`] for electricity meters.
    pub day_energy: bool,
}

/// The index quantity of a meter kind.
pub fn index_quantity(kind: DeviceKind) -> Option<Quantity> {
    match kind {
        DeviceKind::ElectricityMeter => Some(Quantity::ElectricityKwh),
        DeviceKind::GasMeter => Some(Quantity::GasM3),
        DeviceKind::WaterMeter => Some(Quantity::WaterM3),
        _ => None,
    }
}

/// The fixed clock offset (ms) of `device` for a largest skew of `skew`.
pub fn clock_offset_ms(device: &Device, seed: u64, skew: Option<Duration>) -> i64 {
    let Some(skew) = skew else { return 0 };
    let max = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX / 2) as f64;
    let key = mix(seed ^ hash_str(device.id.as_str()) ^ 0x5CE3);
    (max * noise(key, 0, 11)).round() as i64
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The readings of one device, as its firmware reports them.
#[derive(Debug, Clone)]
pub struct DeviceReadings {
    kind: DeviceKind,
    model: DeviceModel,
    offset_ms: i64,
    /// Meter history and a model that walks forward to the events' instants.
    history: Option<(MeterHistory, DeviceModel, f64)>,
    /// A model that walks forward over local midnights, and their true indexes.
    midnights: Option<(DeviceModel, BTreeMap<NaiveDate, f64>)>,
}

fn true_index(model: &mut DeviceModel, q: Quantity, ts: Timestamp) -> f64 {
    model.reading_at(ts).values.get(&q).copied().unwrap_or(0.0)
}

impl DeviceReadings {
    /// The firmware of `device` in `building`, drawn from `seed`.
    pub fn new(device: &Device, building: &Building, seed: u64, opts: FirmwareOptions) -> Self {
        let model = DeviceModel::new(device, building, seed);
        let history = index_quantity(device.kind)
            .filter(|_| opts.resets && is_meter(device.kind))
            .map(|q| {
                let mut walker = model.clone();
                let at_epoch = true_index(&mut walker, q, COUNTER_EPOCH);
                (
                    MeterHistory::new(&device.id, seed, at_epoch),
                    walker,
                    at_epoch,
                )
            });
        let midnights = (opts.day_energy && device.kind == DeviceKind::ElectricityMeter)
            .then(|| (model.clone(), BTreeMap::new()));
        DeviceReadings {
            kind: device.kind,
            model,
            offset_ms: clock_offset_ms(device, seed, opts.skew),
            history,
            midnights,
        }
    }

    /// This device's clock offset, in milliseconds.
    pub fn clock_offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// What the device reports for the true instant `ts`.
    pub fn reading_at(&mut self, ts: Timestamp) -> Reading {
        let mut values = self.model.reading_at(ts).values;
        let q = index_quantity(self.kind);
        let mut meter_since = q.map(|_| COUNTER_EPOCH);
        let true_now = q.and_then(|q| values.get(&q).copied()).unwrap_or(0.0);
        if let (Some(q), Some((history, walker, at_epoch))) = (q, self.history.as_mut())
            && let Some(v) = values.get_mut(&q)
        {
            let segment = history.segment_at(ts, *at_epoch, |t| true_index(walker, q, t));
            *v = round3(segment.shown(*v).max(0.0));
            meter_since = Some(segment.since);
        }
        let day_energy = match (q, self.midnights.as_mut()) {
            (Some(q), Some((walker, cache))) => {
                let today = local_date(ts);
                let yesterday = today.pred_opt().unwrap_or(today);
                let mut at_midnight = |d: NaiveDate| {
                    *cache
                        .entry(d)
                        .or_insert_with(|| true_index(walker, q, local_midnight(d)))
                };
                let (y, t) = (at_midnight(yesterday), at_midnight(today));
                cache.retain(|d, _| *d >= yesterday);
                Some(DayEnergy {
                    today_kwh: round3(true_now - t),
                    yesterday_kwh: round3(t - y),
                })
            }
            _ => None,
        };
        Reading {
            ts: ts.plus_millis(self.offset_ms),
            values,
            meter_since: meter_since.map(|t| t.plus_millis(self.offset_ms)),
            day_energy,
        }
    }
}
