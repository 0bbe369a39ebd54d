//! Energy consumption of a building over Europe/Paris calendar periods, shared by the
//! API and the pages.
//!
//! Consumption is the sum of positive steps of the building's meter indexes (all its
//! meters of that energy), computed by the store over `vigie_core::time::periods`; a
//! period without data has no value (`None`), which is not the same as zero. This
//! module must never check visibility: callers pass a building the user may see.

use chrono::NaiveDate;
use vigie_core::ids::BuildingId;
use vigie_core::quantity::{Energy, Unit};
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
