//! Outdoor weather, local calendar and building occupancy, as pure functions of time.
//!
//! Everything here is a function of (seed, instant): no state, no clock, so that the
//! same seed gives the same weather for the same instant in every run and in every
//! device (the outdoor thermometer and the gas meter of a building see the same
//! weather). Local time is Europe/Paris. This module must never read the wall clock
//! nor draw from a shared random generator whose state depends on call order.

use std::f64::consts::TAU;

use chrono::{Datelike, Timelike, Weekday};
use vigie_core::Timestamp;
use vigie_core::time::PARIS;

/// Width of one simulation slot: meters accumulate consumption per quarter-hour.
pub const SLOT_MS: i64 = 15 * 60 * 1000;

/// A stable 64-bit mix (SplitMix64 finaliser).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable hash of a text (FNV-1a), independent of the Rust version.
pub(crate) fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Deterministic noise in [-1, 1) for (key, position, channel).
pub(crate) fn noise(key: u64, n: i64, channel: u64) -> f64 {
    let h = mix(key ^ mix((n as u64) ^ mix(channel)));
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Smooth deterministic noise in [-1, 1]: cosine interpolation between random knots
/// spaced `period_ms` apart.
fn smooth_noise(key: u64, t_ms: i64, period_ms: i64, channel: u64) -> f64 {
    let k = t_ms.div_euclid(period_ms);
    let f = t_ms.rem_euclid(period_ms) as f64 / period_ms as f64;
    let w = (1.0 - (f * std::f64::consts::PI).cos()) / 2.0;
    let a = noise(key, k, channel);
    let b = noise(key, k + 1, channel);
    a * (1.0 - w) + b * w
}

/// An instant with its Europe/Paris calendar fields, computed once.
#[derive(Debug, Clone, Copy)]
pub struct LocalTime {
    /// The instant.
    pub ts: Timestamp,
    /// Local day of the week.
    pub weekday: Weekday,
    /// Local month, 1 to 12.
    pub month: u32,
    /// Local day of the year, 0-based, with the fraction of the day.
    pub day_of_year: f64,
    /// Local hour with its fraction (0.0 ≤ hour < 24.0).
    pub hour: f64,
}

impl LocalTime {
    /// The Paris calendar fields of `ts`.
    pub fn at(ts: Timestamp) -> LocalTime {
        let local = ts.to_utc().with_timezone(&PARIS);
        let hour = f64::from(local.hour())
            + f64::from(local.minute()) / 60.0
            + f64::from(local.second()) / 3600.0;
        LocalTime {
            ts,
            weekday: local.weekday(),
            month: local.month(),
            day_of_year: f64::from(local.ordinal0()) + hour / 24.0,
            hour,
        }
    }
}

/// The outdoor weather of the simulated region (a temperate French climate).
#[derive(Debug, Clone, Copy)]
pub struct Weather {
    key: u64,
}

impl Weather {
    /// The weather drawn from `seed`.
    pub fn new(seed: u64) -> Weather {
        Weather {
            key: mix(seed ^ 0x00C1_1A7E),
        }
    }

    /// Seasonal normal temperature (°C) on a day of the year: about 3 °C mid-January,
    /// 22 °C mid-July.
    pub fn seasonal_c(day_of_year: f64) -> f64 {
        12.5 - 9.5 * (TAU * (day_of_year - 15.0) / 365.25).cos()
    }

    /// Outdoor air temperature (°C): season, daily cycle (coldest near 6 h, warmest
    /// near 15 h) and multi-day weather anomalies. Smooth in time.
    pub fn outdoor_c(&self, lt: &LocalTime) -> f64 {
        let season = Self::seasonal_c(lt.day_of_year);
        let summer = (season - 3.0) / 19.0; // 0 in winter, 1 in summer
        let daily_amp = 3.0 + 2.5 * summer;
        let daily = daily_amp * (TAU * (lt.hour - 15.0) / 24.0).cos();
        let t = lt.ts.millis();
        let day = 86_400_000;
        let anomaly = 3.0 * smooth_noise(self.key, t, 5 * day, 1)
            + 1.5 * smooth_noise(self.key, t, day, 2)
            + 0.4 * smooth_noise(self.key, t, 3 * 3_600_000, 3);
        season + daily + anomaly
    }
}

/// How a building is used, which fixes when it is occupied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Town halls, libraries: office hours on weekdays, Saturday morning.
    Offices,
    /// Schools: Monday, Tuesday, Thursday, Friday 8:30–16:30; closed July and August.
    School,
    /// Gymnasiums: evenings and weekends, some school sport on weekdays.
    Sport,
}

impl Usage {
    /// The usage of a registry usage category (`bureaux`, `enseignement`, `sport`);
    /// anything else is treated as offices.
    pub fn from_category(category: &str) -> Usage {
        match category {
            "enseignement" => Usage::School,
            "sport" => Usage::Sport,
            _ => Usage::Offices,
        }
    }

    /// Occupancy between 0 (empty) and 1 (fully used) at a local time.
    pub fn occupancy(self, lt: &LocalTime) -> f64 {
        let h = lt.hour;
        let within = |from: f64, to: f64| h >= from && h < to;
        match self {
            Usage::Offices => match lt.weekday {
                Weekday::Sat if within(9.0, 12.0) => 0.6,
                Weekday::Sat | Weekday::Sun => 0.0,
                _ if within(12.0, 13.5) => 0.5,
                _ if within(8.0, 18.0) => 1.0,
                _ => 0.0,
            },
            Usage::School => {
                let summer_break = matches!(lt.month, 7 | 8);
                let school_day = matches!(
                    lt.weekday,
                    Weekday::Mon | Weekday::Tue | Weekday::Thu | Weekday::Fri
                );
                if summer_break || !school_day {
                    0.0
                } else if within(11.5, 13.5) {
                    0.8
                } else if within(8.5, 16.5) {
                    1.0
                } else if within(16.5, 18.0) {
                    0.2 // after-school care
                } else {
                    0.0
                }
            }
            Usage::Sport => match lt.weekday {
                Weekday::Sat if within(9.0, 18.0) => 0.8,
                Weekday::Sun if within(9.0, 12.0) => 0.5,
                Weekday::Sat | Weekday::Sun => 0.0,
                _ if within(17.0, 22.0) => 1.0,
                _ if (within(9.0, 12.0) || within(14.0, 16.0)) && !matches!(lt.month, 7 | 8) => 0.5,
                _ => 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(s: &str) -> LocalTime {
        LocalTime::at(Timestamp::parse_rfc3339(s).expect("valid"))
    }

    #[test]
    fn local_time_is_paris_time() {
        // 23:30 UTC on 28 November is 00:30 on Sunday 29 November in Paris.
        let t = lt("2026-11-28T23:30:00Z");
        assert_eq!(t.weekday, Weekday::Sun);
        assert!((t.hour - 0.5).abs() < 1e-9);
        // Summer time: 06:00 UTC is 08:00 in Paris.
        assert!((lt("2026-07-01T06:00:00Z").hour - 8.0).abs() < 1e-9);
    }

    #[test]
    fn january_is_colder_than_july() {
        let w = Weather::new(3);
        let mean = |month: &str| {
            (1..=28)
                .flat_map(|d| (0..24).map(move |h| (d, h)))
                .map(|(d, h)| w.outdoor_c(&lt(&format!("2026-{month}-{d:02}T{h:02}:00:00Z"))))
                .sum::<f64>()
                / (28.0 * 24.0)
        };
        let (jan, jul) = (mean("01"), mean("07"));
        assert!((0.0..7.0).contains(&jan), "January mean {jan}");
        assert!((18.0..26.0).contains(&jul), "July mean {jul}");
    }

    #[test]
    fn schools_are_empty_on_wednesdays_nights_and_in_summer() {
        // Thursday 26 November 2026, 10:00 Paris = 09:00 UTC.
        assert_eq!(Usage::School.occupancy(&lt("2026-11-26T09:00:00Z")), 1.0);
        assert_eq!(Usage::School.occupancy(&lt("2026-11-25T09:00:00Z")), 0.0);
        assert_eq!(Usage::School.occupancy(&lt("2026-11-26T02:00:00Z")), 0.0);
        assert_eq!(Usage::School.occupancy(&lt("2026-07-09T08:00:00Z")), 0.0);
    }

    #[test]
    fn town_halls_open_on_saturday_morning_and_gyms_in_the_evening() {
        // Saturday 28 November 2026, 10:00 Paris.
        assert!(Usage::Offices.occupancy(&lt("2026-11-28T09:00:00Z")) > 0.0);
        assert_eq!(Usage::Offices.occupancy(&lt("2026-11-28T15:00:00Z")), 0.0);
        // Tuesday 24 November 2026, 19:00 Paris.
        assert_eq!(Usage::Sport.occupancy(&lt("2026-11-24T18:00:00Z")), 1.0);
        assert_eq!(Usage::Offices.occupancy(&lt("2026-11-24T18:00:00Z")), 0.0);
    }

    #[test]
    fn noise_is_bounded_and_repeatable() {
        for n in -50..50 {
            let v = noise(9, n, 1);
            assert!((-1.0..1.0).contains(&v));
            assert_eq!(v, noise(9, n, 1));
        }
        assert_ne!(noise(9, 1, 1), noise(10, 1, 1));
    }
}
