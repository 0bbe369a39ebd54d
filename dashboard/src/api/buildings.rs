//! `GET /api/v1/buildings`, `/buildings/{id}` (with its devices) and
//! `/buildings/{id}/consumption`.
//!
//! Consumption answers one entry per Europe/Paris period from `from` to `to`
//! inclusive, with `"value": null` for a period without data (kept, so that periods
//! stay contiguous and a gap is visible as a gap, not as zero). Values are in the
//! meters' own unit (electricity kWh, gas and water m³) unless `unit=kwh|m3` asks
//! otherwise: gas in kWh is m³ × the building's PCS. Values are rounded to 6 decimals
//! (a sum of index steps carries float noise such as `11916.195199999998`; meters
//! count to 3 decimals at best). This module must never answer for a building outside
//! the caller's scope.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use vigie_core::ids::BuildingId;
use vigie_core::registry::{Building, Scope};
use vigie_core::time::Bucket;

use super::devices::DeviceJson;
use super::params::Params;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::consumption::{self, UnitError};
use crate::error::ApiError;

/// A building as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildingJson {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Owning member.
    pub member_id: String,
    /// Heated floor area, m².
    pub floor_area_m2: Option<f64>,
    /// Postal address.
    pub address: String,
    /// Usage category.
    pub usage: String,
    /// Gas conversion coefficient (PCS), kWh per m³: gas kWh = m³ × this.
    pub gas_pcs_kwh_per_m3: f64,
}

impl From<&Building> for BuildingJson {
    fn from(b: &Building) -> Self {
        BuildingJson {
            id: b.id.to_string(),
            name: b.name.clone(),
            member_id: b.member_id.to_string(),
            floor_area_m2: b.floor_area_m2,
            address: b.address.clone(),
            usage: b.usage.clone(),
            gas_pcs_kwh_per_m3: b.gas_pcs_kwh_per_m3,
        }
    }
}

/// A building with its devices.
#[derive(Debug, Clone, Serialize)]
pub struct BuildingWithDevices {
    /// The building's fields.
    #[serde(flatten)]
    pub building: BuildingJson,
    /// Its devices.
    pub devices: Vec<DeviceJson>,
}

/// One period of consumption.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumptionJson {
    /// Period label: `2026-11-28` (day) or `2026-11` (month), Paris local time.
    pub period: String,
    /// Consumption in the period; `null` when there is no data.
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: &'static str,
}

/// The most periods one consumption request may ask for.
pub const MAX_PERIODS: usize = 3700;

/// The building `id` if the caller may see it; 404 otherwise (also for a malformed id).
pub(crate) async fn visible(
    state: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<Building, ApiError> {
    let not_found = || ApiError::not_found("building", id);
    let bid: BuildingId = id.parse().map_err(|_| not_found())?;
    state
        .registry
        .building(scope, &bid)
        .await?
        .ok_or_else(not_found)
}

/// `GET /api/v1/buildings`.
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    params: Params,
) -> Result<Json<Vec<BuildingJson>>, ApiError> {
    params.only(&[])?;
    let buildings = state.registry.buildings(&caller.user.scope()).await?;
    Ok(Json(buildings.iter().map(BuildingJson::from).collect()))
}

/// `GET /api/v1/buildings/{id}`.
pub async fn one(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<BuildingWithDevices>, ApiError> {
    let building = visible(&state, &caller.user.scope(), &id).await?;
    let devices = state.registry.devices_of_building(&building.id).await?;
    Ok(Json(BuildingWithDevices {
        building: BuildingJson::from(&building),
        devices: devices.iter().map(DeviceJson::from).collect(),
    }))
}

/// `GET /api/v1/buildings/{id}/consumption?energy=&from=&to=&step=&unit=`.
pub async fn consumption(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Vec<ConsumptionJson>>, ApiError> {
    params.only(&["energy", "from", "to", "step", "unit"])?;
    let energy = params.energy("energy")?;
    let unit = params.energy_unit("unit")?;
    let from = params.date("from")?;
    let to = params.date("to")?;
    let step = params.step("step")?;
    if to < from {
        return Err(ApiError::bad_parameter(
            "to",
            format!("must not be before from ({from})"),
        ));
    }
    let days = (to - from).num_days() as usize + 1;
    let periods = match step {
        Bucket::Month => days / 28 + 1,
        _ => days,
    };
    if periods > MAX_PERIODS {
        return Err(ApiError::bad_parameter(
            "to",
            format!("too far from from: at most {MAX_PERIODS} periods per request"),
        ));
    }
    let building = visible(&state, &caller.user.scope(), &id).await?;
    let mut c = consumption::consumption(&state, &building.id, energy, from, to, step).await?;
    if let Some(unit) = unit {
        c = c.converted(unit, &building).map_err(|e| match e {
            UnitError::NoConversion { .. } => ApiError::bad_parameter("unit", &e),
            UnitError::BadPcs { .. } => {
                tracing::error!(error = %e, "converting gas to kWh");
                ApiError {
                    status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    message: e.to_string(),
                }
            }
        })?;
    }
    let unit = c.unit.symbol();
    Ok(Json(
        c.periods
            .into_iter()
            .map(|p| ConsumptionJson {
                period: p.period,
                value: p.value.map(without_float_noise),
                unit,
            })
            .collect(),
    ))
}

/// `v` rounded to 6 decimals (values too large for that are returned as they are).
fn without_float_noise(v: f64) -> f64 {
    let scaled = (v * 1e6).round() / 1e6;
    if scaled.is_finite() { scaled } else { v }
}

#[cfg(test)]
mod tests {
    use super::without_float_noise;

    #[test]
    fn consumption_values_lose_their_float_noise_and_nothing_else() {
        assert_eq!(without_float_noise(0.1 + 0.2), 0.3);
        assert_eq!(without_float_noise(11916.195199999998), 11916.1952);
        assert_eq!(without_float_noise(290.0), 290.0);
        assert_eq!(without_float_noise(0.000_25), 0.000_25);
        assert_eq!(without_float_noise(1e300), 1e300);
    }
}
