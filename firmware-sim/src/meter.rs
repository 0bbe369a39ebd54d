//! Meter resets and meter swaps: when they happen and what a meter shows around them.
//!
//! Real meters are reset (a pulse counter reboots to zero) and swapped (the supplier
//! installs a new meter whose index starts elsewhere). The simulator schedules such
//! events deterministically from (seed, device): time is cut into
//! [`EVENT_PERIOD_MS`] periods from [`COUNTER_EPOCH`], and in each period a meter has
//! one event with probability [`EVENT_PROBABILITY`], at an instant (whole minute)
//! between day 3 and day 11 of the period, so that two events are always at least six
//! days apart. A reset restarts the shown index at 0; a swap restarts it at a fraction
//! (5–50 %) of the index shown just before. Either way the shown index drops exactly
//! at the event and never otherwise: a reading at or after the event's instant
//! belongs to the new meter.
//!
//! This module never reads the wall clock and never lets the order of calls change a
//! value: the shown index at an instant depends on (seed, device, instant) only.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigie_core::registry::{Device, DeviceKind};
use vigie_core::{DeviceId, Timestamp};

use crate::climate::{hash_str, mix};
use crate::model::COUNTER_EPOCH;

/// Length of the periods that have at most one event each (14 days).
pub const EVENT_PERIOD_MS: i64 = 14 * 86_400_000;

/// Chance that a meter has an event in a given period.
pub const EVENT_PROBABILITY: f64 = 0.3;

const DAY_MS: i64 = 86_400_000;

/// What happened to a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterEventKind {
    /// The index restarted at 0 (a pulse counter rebooted, an energy total was reset).
    Reset,
    /// A new meter was installed; its index starts at a lower value.
    Swap,
}

/// One scheduled event of a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterEvent {
    /// From this instant on (inclusive) the meter shows the new index.
    pub at: Timestamp,
    /// Reset or swap.
    pub kind: MeterEventKind,
    /// Fraction of the old index the new meter starts at (swaps only; 0 for resets).
    fraction_per_mille: u16,
}

impl MeterEvent {
    /// The index shown just after the event, given the one shown just before it.
    fn start_index(&self, before: f64) -> f64 {
        match self.kind {
            MeterEventKind::Reset => 0.0,
            MeterEventKind::Swap => {
                (before * f64::from(self.fraction_per_mille) / 1000.0 * 10.0).round() / 10.0
            }
        }
    }
}

/// Whether a device kind is a meter (has an index that events apply to).
pub fn is_meter(kind: DeviceKind) -> bool {
    matches!(
        kind,
        DeviceKind::ElectricityMeter | DeviceKind::GasMeter | DeviceKind::WaterMeter
    )
}

fn event_key(device: &DeviceId, seed: u64) -> u64 {
    mix(seed ^ hash_str(device.as_str()) ^ 0x0E7E_4700)
}

/// The event of period `k` (counted from [`COUNTER_EPOCH`]), if any.
fn event_in_period(key: u64, k: i64) -> Option<MeterEvent> {
    let mut rng = StdRng::seed_from_u64(mix(key ^ mix(k as u64)));
    if !rng.random_bool(EVENT_PROBABILITY) {
        return None;
    }
    let start = COUNTER_EPOCH.millis() + k * EVENT_PERIOD_MS;
    let minute = rng.random_range(0..(8 * DAY_MS / 60_000));
    let kind = if rng.random_bool(1.0 / 3.0) {
        MeterEventKind::Reset
    } else {
        MeterEventKind::Swap
    };
    Some(MeterEvent {
        at: Timestamp(start + 3 * DAY_MS + minute * 60_000),
        kind,
        fraction_per_mille: match kind {
            MeterEventKind::Reset => 0,
            MeterEventKind::Swap => rng.random_range(50..500),
        },
    })
}

/// The events of `device`'s meter with `from < at <= to`, in order (none for a device
/// that is not a meter).
pub fn meter_events(device: &Device, seed: u64, from: Timestamp, to: Timestamp) -> Vec<MeterEvent> {
    if !is_meter(device.kind) || to <= from {
        return Vec::new();
    }
    let key = event_key(&device.id, seed);
    let period = |t: Timestamp| (t.millis() - COUNTER_EPOCH.millis()).div_euclid(EVENT_PERIOD_MS);
    (period(from).max(0)..=period(to).max(-1))
        .filter_map(|k| event_in_period(key, k))
        .filter(|e| e.at > from && e.at <= to)
        .collect()
}

/// The meter currently installed: shown index = `base + true(t) - true_at_start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Segment {
    /// When this meter started showing its index (the event, or the counter epoch).
    pub(crate) since: Timestamp,
    base: f64,
    true_at_start: f64,
}

impl Segment {
    /// The index this meter shows when the true (never reset) counter reads `true_index`.
    pub(crate) fn shown(&self, true_index: f64) -> f64 {
        self.base + (true_index - self.true_at_start)
    }
}

/// The chain of meters of one device, walked forward in time.
///
/// `true_index_at` reads the device's true counter; it is called with the instants of
/// the events in increasing order, so a forward-only counter stays cheap.
#[derive(Debug, Clone)]
pub(crate) struct MeterHistory {
    key: u64,
    current: Segment,
    /// Next period whose event has not been applied yet.
    next_period: i64,
}

impl MeterHistory {
    pub(crate) fn new(device: &DeviceId, seed: u64, true_at_epoch: f64) -> MeterHistory {
        MeterHistory {
            key: event_key(device, seed),
            current: Segment {
                since: COUNTER_EPOCH,
                base: true_at_epoch,
                true_at_start: true_at_epoch,
            },
            next_period: 0,
        }
    }

    /// The meter installed at `ts`. Asking for an instant before the last applied event
    /// restarts the walk from the epoch.
    pub(crate) fn segment_at(
        &mut self,
        ts: Timestamp,
        true_at_epoch: f64,
        mut true_index_at: impl FnMut(Timestamp) -> f64,
    ) -> Segment {
        if ts < self.current.since {
            *self = MeterHistory {
                key: self.key,
                current: Segment {
                    since: COUNTER_EPOCH,
                    base: true_at_epoch,
                    true_at_start: true_at_epoch,
                },
                next_period: 0,
            };
        }
        loop {
            let k = self.next_period;
            if COUNTER_EPOCH.millis() + k * EVENT_PERIOD_MS > ts.millis() {
                break;
            }
            match event_in_period(self.key, k) {
                None => {}
                Some(event) if event.at <= ts => {
                    let true_at = true_index_at(event.at);
                    let before = self.current.shown(true_at);
                    self.current = Segment {
                        since: event.at,
                        base: event.start_index(before),
                        true_at_start: true_at,
                    };
                }
                Some(_) => break,
            }
            self.next_period = k + 1;
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_core::BuildingId;

    fn meter(id: &str) -> Device {
        Device::new(
            DeviceId::new(id).expect("id"),
            BuildingId::new("b").ok(),
            DeviceKind::WaterMeter,
        )
    }

    #[test]
    fn events_are_at_least_six_days_apart_and_about_thirty_percent_of_periods() {
        let d = meter("b-water");
        let from = COUNTER_EPOCH;
        let to = Timestamp(COUNTER_EPOCH.millis() + 200 * EVENT_PERIOD_MS);
        let events = meter_events(&d, 9, from, to);
        assert!((30..=90).contains(&events.len()), "{}", events.len());
        for w in events.windows(2) {
            assert!(w[1].at.millis() - w[0].at.millis() >= 6 * DAY_MS);
        }
        assert!(events.iter().any(|e| e.kind == MeterEventKind::Reset));
        assert!(events.iter().any(|e| e.kind == MeterEventKind::Swap));
        assert_eq!(meter_events(&d, 9, from, to), events);
        assert_ne!(meter_events(&d, 10, from, to), events);
    }

    #[test]
    fn the_history_applies_each_event_once_in_order() {
        let d = meter("b-water");
        let to = Timestamp(COUNTER_EPOCH.millis() + 30 * EVENT_PERIOD_MS);
        let events = meter_events(&d, 9, COUNTER_EPOCH, to);
        // A counter growing 1 unit per hour from 1000.
        let true_at = |t: Timestamp| 1000.0 + (t.millis() - COUNTER_EPOCH.millis()) as f64 / 3.6e6;
        let mut h = MeterHistory::new(&d.id, 9, 1000.0);
        let mut asked = Vec::new();
        let seg = h.segment_at(to, 1000.0, |t| {
            asked.push(t);
            true_at(t)
        });
        assert_eq!(asked, events.iter().map(|e| e.at).collect::<Vec<_>>());
        assert_eq!(seg.since, events.last().expect("events").at);
        // Going back restarts cleanly.
        let first = events[0];
        let seg = h.segment_at(first.at, 1000.0, true_at);
        assert_eq!(seg.since, first.at);
        let before = true_at(first.at);
        let shown = seg.shown(true_at(first.at));
        assert!(shown < before, "{shown} vs {before}");
    }
}
