//! Energy consumption of a building over Europe/Paris calendar periods, shared by the
//! API and the pages.
//!
//! Consumption is the sum of positive steps of the building's meter indexes (all its
//! meters of that energy), computed by the store over `vigie_core::time::periods`; a
//! period without data has no value (`None`), which is not the same as zero.
//!
//! Gas is metered in m³ and billed in kWh: [`Consumption::converted`] turns gas m³ into
//! kWh with the building's PCS coefficient (kWh = m³ × PCS, the same product ingest
//! stores as `gas_kwh`). It multiplies the m³ consumption rather than reading the
//! stored `gas_kwh` index, so that history recorded before that index existed converts
//! too, and a change of the building's PCS re-values every period with the new
//! coefficient instead of showing the jump `(new − old) × index` that the stored kWh
//! index makes at the change. This module must never check visibility: callers pass
//! a building the user may see.

use chrono::NaiveDate;
use vigie_core::ids::BuildingId;
use vigie_core::quantity::{Energy, Unit};
use vigie_core::registry::Building;
use vigie_core::store::{AggregateQuery, Aggregation, BucketValue};
use vigie_core::time::{self, Bucket, Timestamp};

use crate::AppState;
use crate::error::ReadError;

/// The consumption of one energy of one building, period by period.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumption {
    /// The energy.
    pub energy: Energy,
    /// Unit of the values (the meter index's unit).
    pub unit: Unit,
    /// Whether the building has at least one meter of this energy.
    pub has_meter: bool,
    /// One value per period, in order; `None` where there is no data.
    pub periods: Vec<BucketValue>,
}

impl Consumption {
    /// The sum over all periods that have data; `None` if none has.
    pub fn total(&self) -> Option<f64> {
        self.periods
            .iter()
            .filter_map(|p| p.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }
}

/// Why a consumption cannot be expressed in the unit asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// No conversion exists between the two units for this energy.
    #[error("{energy} is measured in {native} only, not {asked}")]
    NoConversion {
        /// The energy (`electricity`, `gas`, `water`).
        energy: &'static str,
        /// Its meters' unit.
        native: Unit,
        /// The unit asked for.
        asked: Unit,
    },
    /// The building's PCS coefficient is not a positive number.
    #[error("building {building} has no usable gas PCS coefficient (found {pcs} kWh/m³)")]
    BadPcs {
        /// The building.
        building: BuildingId,
        /// Its coefficient.
        pcs: f64,
    },
}

impl Consumption {
    /// The same consumption in `unit`: unchanged in its own unit; gas m³ × the
    /// building's PCS in kWh; anything else is a [`UnitError`].
    pub fn converted(&self, unit: Unit, building: &Building) -> Result<Consumption, UnitError> {
        if unit == self.unit {
            return Ok(self.clone());
        }
        let factor = match (self.energy, self.unit, unit) {
            (Energy::Gas, Unit::CubicMetre, Unit::KilowattHour) => {
                let pcs = building.gas_pcs_kwh_per_m3;
                if !(pcs.is_finite() && pcs > 0.0) {
                    return Err(UnitError::BadPcs {
                        building: building.id.clone(),
                        pcs,
                    });
                }
                pcs
            }
            _ => {
                return Err(UnitError::NoConversion {
                    energy: self.energy.as_str(),
                    native: self.unit,
                    asked: unit,
                });
            }
        };
        Ok(Consumption {
            energy: self.energy,
            unit,
            has_meter: self.has_meter,
            periods: self
                .periods
                .iter()
                .map(|p| BucketValue {
                    value: p.value.map(|v| v * factor),
                    ..p.clone()
                })
                .collect(),
        })
    }
}

/// The consumption of `energy` in `building` over the local dates `from..=to`.
pub async fn consumption(
    state: &AppState,
    building: &BuildingId,
    energy: Energy,
    from: NaiveDate,
    to: NaiveDate,
    bucket: Bucket,
) -> Result<Consumption, ReadError> {
    let series = state.registry.energy_series(building, energy).await?;
    let periods = time::periods(from, to, bucket);
    let has_meter = !series.is_empty();
    let values = if has_meter {
        let query = AggregateQuery {
            series: series.iter().map(|s| s.id).collect(),
            aggregation: Aggregation::Consumption,
            periods,
        };
        state.store.aggregate(&query).await?
    } else {
        periods
            .into_iter()
            .map(|p| BucketValue {
                period: p.label,
                start: p.start,
                value: None,
            })
            .collect()
    };
    Ok(Consumption {
        energy,
        unit: energy.index_quantity().unit(),
        has_meter,
        periods: values,
    })
}

/// Today's date in Paris.
pub fn today() -> NaiveDate {
    time::local_date(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn building(pcs: f64) -> Building {
        Building {
            id: "mairie".parse().expect("id"),
            member_id: "commune".parse().expect("id"),
            name: "Mairie".into(),
            address: String::new(),
            floor_area_m2: None,
            usage: "bureaux".into(),
            gas_pcs_kwh_per_m3: pcs,
        }
    }

    fn gas(values: &[Option<f64>]) -> Consumption {
        Consumption {
            energy: Energy::Gas,
            unit: Unit::CubicMetre,
            has_meter: true,
            periods: values
                .iter()
                .enumerate()
                .map(|(i, v)| BucketValue {
                    period: format!("2026-11-{:02}", i + 1),
                    start: Timestamp(i as i64 * 86_400_000),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn gas_kwh_is_m3_times_the_buildings_pcs_and_gaps_stay_gaps() {
        let kwh = gas(&[Some(10.0), None, Some(0.0)])
            .converted(Unit::KilowattHour, &building(10.5))
            .expect("convert");
        assert_eq!(kwh.unit, Unit::KilowattHour);
        let values: Vec<_> = kwh.periods.iter().map(|p| p.value).collect();
        assert_eq!(values, [Some(105.0), None, Some(0.0)]);
        assert_eq!(kwh.periods[1].period, "2026-11-02");
        assert_eq!(kwh.total(), Some(105.0));
    }

    #[test]
    fn only_gas_converts_and_only_with_a_positive_pcs() {
        let same = gas(&[Some(1.0)]).converted(Unit::CubicMetre, &building(11.2));
        assert_eq!(same, Ok(gas(&[Some(1.0)])));
        for pcs in [0.0, -1.0, f64::NAN] {
            let e = gas(&[Some(1.0)]).converted(Unit::KilowattHour, &building(pcs));
            assert!(matches!(e, Err(UnitError::BadPcs { .. })), "{pcs}");
        }
        let water = Consumption {
            energy: Energy::Water,
            ..gas(&[Some(1.0)])
        };
        let e = water
            .converted(Unit::KilowattHour, &building(11.2))
            .unwrap_err();
        assert_eq!(e.to_string(), "water is measured in m³ only, not kWh");
    }
}
