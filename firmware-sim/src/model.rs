//! The physical model of a simulated device: what it measures at a given instant.
//!
//! Gauges (temperatures, CO2, humidity) are pure functions of (seed, device, instant).
//! Meter indexes are counters: the sum of per-quarter-hour consumptions since
//! [`COUNTER_EPOCH`], each consumption itself a pure function of (seed, device, slot),
//! so that the same seed gives the same index for the same instant in every run, and
//! an index never decreases. A [`DeviceModel`] keeps the running sum so that reading
//! forward in time costs only the slots in between.
//!
//! Per-device constants (base loads, starting index, room size) come from a
//! `StdRng` seeded per device; per-instant noise from a stable hash. This module must
//! never read the wall clock, and never let the order of calls change a value.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigie_core::payload::Telemetry;
use vigie_core::registry::{Building, Device, DeviceKind};
use vigie_core::{Quantity, Timestamp};

use crate::climate::{LocalTime, SLOT_MS, Usage, Weather, hash_str, mix, noise};

/// Meters start counting at 2024-01-01 00:00 Europe/Paris (2023-12-31T23:00:00Z);
/// before it, indexes stay at their starting value.
pub const COUNTER_EPOCH: Timestamp = Timestamp(1_704_063_600_000);

/// Outdoor temperature under which the heating runs.
pub const HEATING_THRESHOLD_C: f64 = 15.0;

/// Outdoor CO2 concentration.
pub const OUTDOOR_CO2_PPM: f64 = 420.0;

/// Useful heat delivered per m³ of gas (PCS 11.2 kWh/m³ × boiler efficiency).
const HEAT_KWH_PER_GAS_M3: f64 = 10.0;

/// The quantities a device of this kind publishes.
pub fn published_quantities(kind: DeviceKind) -> &'static [Quantity] {
    match kind {
        DeviceKind::ElectricityMeter => &[Quantity::ElectricityKwh, Quantity::PowerW],
        DeviceKind::GasMeter => &[Quantity::GasM3],
        DeviceKind::WaterMeter => &[Quantity::WaterM3],
        DeviceKind::AirQuality => &[
            Quantity::Co2Ppm,
            Quantity::TemperatureC,
            Quantity::HumidityPct,
        ],
        DeviceKind::OutdoorThermometer => &[Quantity::OutdoorTemperatureC],
        DeviceKind::ServerAgent | DeviceKind::Other => &[],
    }
}

/// Thermal and usage characteristics of a building, drawn once from the seed.
#[derive(Debug, Clone)]
struct BuildingPhysics {
    usage: Usage,
    /// Heat loss coefficient, W/K.
    loss_w_per_k: f64,
    /// Heating set point when occupied, °C.
    comfort_c: f64,
    /// Heating set point at night and weekends, °C.
    setback_c: f64,
    /// Electric load when empty, W.
    base_w: f64,
    /// Extra electric load at full occupancy, W.
    occupied_w: f64,
    /// Water use at full occupancy, litres per hour.
    water_l_per_h: f64,
    /// Permanent small leak, litres per hour.
    leak_l_per_h: f64,
    /// Hot water heat at full occupancy (showers, kitchen), W.
    hot_water_w: f64,
}

impl BuildingPhysics {
    fn new(building: &Building, seed: u64) -> BuildingPhysics {
        let mut rng = StdRng::seed_from_u64(mix(seed ^ hash_str(building.id.as_str())));
        let area = building.floor_area_m2.unwrap_or(800.0).max(50.0);
        let usage = Usage::from_category(&building.usage);
        let (water_per_m2, hot_water_per_m2) = match usage {
            Usage::Offices => (0.03, 0.5),
            Usage::School => (0.10, 2.0),
            Usage::Sport => (0.15, 8.0),
        };
        BuildingPhysics {
            usage,
            loss_w_per_k: area * rng.random_range(1.6..2.4),
            comfort_c: rng.random_range(19.5..20.5),
            setback_c: rng.random_range(16.2..16.8),
            base_w: area * rng.random_range(2.5..4.0),
            occupied_w: area * rng.random_range(8.0..14.0),
            water_l_per_h: area * water_per_m2 * rng.random_range(0.8..1.2),
            leak_l_per_h: rng.random_range(0.3..2.0),
            hot_water_w: area * hot_water_per_m2 * rng.random_range(0.8..1.2),
        }
    }

    /// Whether the heating aims at the comfort set point: occupied now or within the
    /// hour (pre-heating).
    fn comfort(&self, lt: &LocalTime) -> bool {
        if self.usage.occupancy(lt) > 0.0 {
            return true;
        }
        let ahead = LocalTime::at(lt.ts.plus_millis(3_600_000));
        self.usage.occupancy(&ahead) > 0.0
    }

    /// Heating set point at `lt`, or `None` when the heating is off.
    fn set_point(&self, lt: &LocalTime, outdoor_c: f64) -> Option<f64> {
        (outdoor_c < HEATING_THRESHOLD_C).then(|| {
            if self.comfort(lt) {
                self.comfort_c
            } else {
                self.setback_c
            }
        })
    }

    /// Indoor temperature the building drifts to without heating.
    fn free_float_c(outdoor_c: f64, occupancy: f64) -> f64 {
        12.0 + 0.45 * outdoor_c + 1.0 * occupancy
    }
}

/// Per-room characteristics of an air-quality sensor.
#[derive(Debug, Clone)]
struct Room {
    /// CO2 level reached at full occupancy, ppm.
    co2_full_ppm: f64,
    /// Offset of this room's temperature from the building's, °C.
    temp_offset_c: f64,
}

#[derive(Debug, Clone)]
struct Counter {
    /// Index at [`COUNTER_EPOCH`].
    start: f64,
    /// Slot number of the boundary `index` is valid at.
    boundary: i64,
    /// Index at that boundary.
    index: f64,
}

/// A simulated device: produces its reading at any instant.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    kind: DeviceKind,
    key: u64,
    weather: Weather,
    physics: BuildingPhysics,
    room: Room,
    counter: Option<Counter>,
}

fn slot_of_boundary(ts: Timestamp) -> i64 {
    ts.millis().div_euclid(SLOT_MS)
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

impl DeviceModel {
    /// The model of `device`, installed in `building`, drawn from `seed`.
    pub fn new(device: &Device, building: &Building, seed: u64) -> DeviceModel {
        let key = mix(seed ^ hash_str(device.id.as_str()));
        let mut rng = StdRng::seed_from_u64(key);
        let start = match device.kind {
            DeviceKind::ElectricityMeter => Some(rng.random_range(5_000.0..60_000.0)),
            DeviceKind::GasMeter => Some(rng.random_range(1_000.0..30_000.0)),
            DeviceKind::WaterMeter => Some(rng.random_range(100.0..5_000.0)),
            _ => None,
        };
        let room = Room {
            co2_full_ppm: rng.random_range(800.0..1400.0),
            temp_offset_c: rng.random_range(-0.5..0.5),
        };
        DeviceModel {
            kind: device.kind,
            key,
            weather: Weather::new(seed),
            physics: BuildingPhysics::new(building, seed),
            room,
            counter: start.map(|start| Counter {
                start: round_to(start, 1),
                boundary: slot_of_boundary(COUNTER_EPOCH),
                index: round_to(start, 1),
            }),
        }
    }

    /// What the device publishes at `ts`, advancing its counter to `ts`. Reading an
    /// earlier instant than the previous one is allowed (the counter is recomputed).
    pub fn reading_at(&mut self, ts: Timestamp) -> Telemetry {
        let lt = LocalTime::at(ts);
        let mut values = BTreeMap::new();
        match self.kind {
            DeviceKind::ElectricityMeter => {
                let (index, per_hour) = self.counter_at(ts);
                values.insert(Quantity::ElectricityKwh, round_to(index, 3));
                values.insert(Quantity::PowerW, (per_hour * 1000.0).round());
            }
            DeviceKind::GasMeter => {
                let (index, _) = self.counter_at(ts);
                values.insert(Quantity::GasM3, round_to(index, 3));
            }
            DeviceKind::WaterMeter => {
                let (index, _) = self.counter_at(ts);
                values.insert(Quantity::WaterM3, round_to(index, 3));
            }
            DeviceKind::AirQuality => {
                let co2 = self.co2_ppm(&lt);
                values.insert(Quantity::Co2Ppm, co2.round());
                values.insert(Quantity::TemperatureC, round_to(self.indoor_c(&lt), 1));
                values.insert(
                    Quantity::HumidityPct,
                    round_to(self.humidity_pct(&lt, co2), 1),
                );
            }
            DeviceKind::OutdoorThermometer => {
                let t = self.weather.outdoor_c(&lt) + 0.15 * noise(self.key, ts.millis(), 7);
                values.insert(Quantity::OutdoorTemperatureC, round_to(t, 1));
            }
            DeviceKind::ServerAgent | DeviceKind::Other => {}
        }
        Telemetry {
            ts: Some(ts),
            values,
        }
    }

    /// The counter's index at `ts` and its rate (unit per hour) over the slot that
    /// contains `ts`; slots are `(start, end]`, so a reading on a boundary closes the
    /// slot before it.
    fn counter_at(&mut self, ts: Timestamp) -> (f64, f64) {
        let slot = (ts.millis() - 1).div_euclid(SLOT_MS);
        let Some(mut counter) = self.counter.take() else {
            return (0.0, 0.0);
        };
        if counter.boundary > slot.max(slot_of_boundary(COUNTER_EPOCH)) {
            counter.boundary = slot_of_boundary(COUNTER_EPOCH);
            counter.index = counter.start;
        }
        while counter.boundary < slot {
            counter.index += self.slot_consumption(counter.boundary);
            counter.boundary += 1;
        }
        let used = self.slot_consumption(slot);
        let fraction = (ts.millis() - slot * SLOT_MS) as f64 / SLOT_MS as f64;
        let index = counter.index + used * fraction;
        self.counter = Some(counter);
        (index, used * 3_600_000.0 / SLOT_MS as f64)
    }

    /// Consumption during slot `slot` (kWh or m³); zero before the epoch.
    fn slot_consumption(&self, slot: i64) -> f64 {
        if slot < slot_of_boundary(COUNTER_EPOCH) {
            return 0.0;
        }
        let mid = LocalTime::at(Timestamp(slot * SLOT_MS + SLOT_MS / 2));
        let hours = SLOT_MS as f64 / 3_600_000.0;
        let p = &self.physics;
        let occupancy = p.usage.occupancy(&mid);
        let jitter = 1.0 + 0.05 * noise(self.key, slot, 1);
        match self.kind {
            DeviceKind::ElectricityMeter => {
                let w = (p.base_w + p.occupied_w * occupancy) * jitter;
                w * hours / 1000.0
            }
            DeviceKind::GasMeter => {
                let outdoor = self.weather.outdoor_c(&mid);
                let heating_w = p
                    .set_point(&mid, outdoor)
                    .map(|sp| p.loss_w_per_k * (sp - outdoor).max(0.0))
                    .unwrap_or(0.0);
                let w = (heating_w + p.hot_water_w * occupancy) * jitter;
                w * hours / 1000.0 / HEAT_KWH_PER_GAS_M3
            }
            DeviceKind::WaterMeter => {
                let l_per_h = p.leak_l_per_h + p.water_l_per_h * occupancy;
                l_per_h * jitter * hours / 1000.0
            }
            _ => 0.0,
        }
    }

    /// Indoor temperature: the heating set point or the free-floating temperature,
    /// whichever is higher, smoothed over the last two hours (thermal inertia).
    fn indoor_c(&self, lt: &LocalTime) -> f64 {
        let p = &self.physics;
        let target = |lt: &LocalTime| {
            let outdoor = self.weather.outdoor_c(lt);
            let occupancy = p.usage.occupancy(lt);
            let free = BuildingPhysics::free_float_c(outdoor, occupancy);
            let heated = p.set_point(lt, outdoor).unwrap_or(f64::MIN);
            heated.max(free) + 0.5 * occupancy
        };
        let value = smoothed(lt, 8, 0.6, target);
        value + self.room.temp_offset_c + 0.1 * noise(self.key, lt.ts.millis(), 2)
    }

    /// CO2: outdoor level plus what the occupants exhaled, decaying with a time
    /// constant of about 45 minutes once the room empties.
    fn co2_ppm(&self, lt: &LocalTime) -> f64 {
        let usage = self.physics.usage;
        let excess = smoothed(lt, 12, 0.72, |lt| usage.occupancy(lt));
        let swing = self.room.co2_full_ppm - OUTDOOR_CO2_PPM;
        OUTDOOR_CO2_PPM + swing * excess + 15.0 * noise(self.key, lt.ts.millis(), 3)
    }

    /// Relative humidity: drier in winter, raised by occupants, within 35–60 %.
    fn humidity_pct(&self, lt: &LocalTime, co2: f64) -> f64 {
        let season = Weather::seasonal_c(lt.day_of_year);
        let occupants = ((co2 - OUTDOOR_CO2_PPM) / 1000.0).clamp(0.0, 1.0);
        let h = 31.0 + 1.0 * season + 6.0 * occupants + 2.0 * noise(self.key, lt.ts.millis(), 4);
        h.clamp(35.0, 60.0)
    }
}

/// First-order lag of `f` over the `n` previous quarter-hours: a weighted mean with
/// weights `decay^j`, evaluated without state.
fn smoothed(lt: &LocalTime, n: i64, decay: f64, f: impl Fn(&LocalTime) -> f64) -> f64 {
    let mut sum = 0.0;
    let mut weights = 0.0;
    let mut w = 1.0;
    for j in 0..n {
        let past = if j == 0 {
            *lt
        } else {
            LocalTime::at(lt.ts.plus_millis(-j * SLOT_MS))
        };
        sum += w * f(&past);
        weights += w;
        w *= decay;
    }
    sum / weights
}
