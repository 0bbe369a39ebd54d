//! `/`: the buildings the user may see; `/buildings/{id}`: one building's energy
//! (daily bars over 30 days, monthly bars over 12 months, totals, per energy), the
//! current air quality per room and its devices.
//!
//! Gas is shown in kWh, the unit of the bills and of the other energies (m³ × the
//! building's PCS, see [`Consumption::converted`]), with the metered m³ alongside in
//! the totals and the monthly table, and the coefficient said under the charts.
//!
//! Periods are Europe/Paris calendar days and months ending today. This module must
//! never show a building outside the user's scope (it answers 404 like a missing one).

use std::collections::HashMap;

use axum::extract::{Path, State};
use chrono::{Datelike, Duration, Months, NaiveDate};
use maud::{Markup, PreEscaped, html};
use vigie_core::ids::BuildingId;
use vigie_core::quantity::{Energy, Quantity, Unit};
use vigie_core::registry::{Building, Device};
use vigie_core::time::{self, Bucket, Timestamp};

use super::layout;
use crate::AppState;
use crate::auth::SessionUser;
use crate::charts;
use crate::consumption::{self, Consumption};
use crate::error::{PageError, ReadError};
use crate::format;

/// CO2 above this is "to watch" (ppm).
pub const CO2_WARN_PPM: f64 = 800.0;
/// CO2 above this is "too high: air the room" (ppm).
pub const CO2_BAD_PPM: f64 = 1200.0;

/// The CSS class of a CO2 reading: `co2-ok`, `co2-warn` or `co2-bad`.
pub fn co2_class(ppm: f64) -> &'static str {
    if ppm >= CO2_BAD_PPM {
        "co2-bad"
    } else if ppm >= CO2_WARN_PPM {
        "co2-warn"
    } else {
        "co2-ok"
    }
}

fn floor_area(b: &Building) -> String {
    b.floor_area_m2
        .map(|a| format!("{}{}m²", format::number(a, 0), format::UNIT_SEP))
        .unwrap_or_else(|| "—".into())
}

/// `GET /`.
pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
) -> Result<Markup, PageError> {
    let scope = session.user.scope();
    let buildings = state.registry.buildings(&scope).await?;
    let members: HashMap<_, _> = state
        .registry
        .members(&scope)
        .await?
        .into_iter()
        .map(|m| (m.id, m.name))
        .collect();
    let mut last_data: HashMap<BuildingId, Timestamp> = HashMap::new();
    for d in state.registry.devices(&scope).await? {
        if let (Some(b), Some(seen)) = (d.building_id, d.last_seen) {
            let e = last_data.entry(b).or_insert(seen);
            *e = (*e).max(seen);
        }
    }
    let content = html! {
        @if buildings.is_empty() {
            p.muted { "Aucun bâtiment n'est visible pour votre compte." }
        } @else {
            table {
                thead { tr {
                    th { "Bâtiment" } th { "Membre" } th { "Usage" }
                    th { "Surface" } th { "Dernière donnée" }
                } }
                tbody {
                    @for b in &buildings {
                        tr {
                            td { a href={ "/buildings/" (b.id) } { (b.name) } }
                            td { (members.get(&b.member_id).map(String::as_str).unwrap_or(b.member_id.as_str())) }
                            td { (b.usage) }
                            td.num { (floor_area(b)) }
                            td { @match last_data.get(&b.id) {
                                Some(ts) => (format::date_time(*ts)),
                                None => span.muted { "aucune" },
                            } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Bâtiments", content))
}

/// The current air quality of one room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomReading {
    /// Room name (or the device id when the device has no room).
    pub room: String,
    /// CO2, ppm.
    pub co2_ppm: Option<f64>,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Relative humidity, %.
    pub humidity_pct: Option<f64>,
    /// Instant of the newest of these readings.
    pub at: Option<Timestamp>,
}

async fn room_readings(
    state: &AppState,
    devices: &[Device],
) -> Result<Vec<RoomReading>, ReadError> {
    let mut rooms = Vec::new();
    for d in devices {
        let series = state.registry.series_of_device(&d.id).await?;
        let wanted: Vec<_> = series
            .iter()
            .filter(|s| {
                matches!(
                    s.quantity,
                    Quantity::Co2Ppm | Quantity::TemperatureC | Quantity::HumidityPct
                )
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let ids: Vec<_> = wanted.iter().map(|s| s.id).collect();
        let mut reading = RoomReading {
            room: if d.room.is_empty() {
                d.id.to_string()
            } else {
                d.room.clone()
            },
            co2_ppm: None,
            temperature_c: None,
            humidity_pct: None,
            at: None,
        };
        for (sid, p) in state.store.latest(&ids).await? {
            match wanted.iter().find(|s| s.id == sid).map(|s| s.quantity) {
                Some(Quantity::Co2Ppm) => reading.co2_ppm = Some(p.value),
                Some(Quantity::TemperatureC) => reading.temperature_c = Some(p.value),
                Some(Quantity::HumidityPct) => reading.humidity_pct = Some(p.value),
                _ => continue,
            }
            reading.at = reading.at.max(Some(p.ts));
        }
        rooms.push(reading);
    }
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(rooms)
}

fn chart(title: &str, unit: &str, bars: &[(String, Option<f64>)]) -> Markup {
    match charts::bar_chart_svg(title, unit, bars) {
        Ok(svg) => html! { div.chart { (PreEscaped(svg)) } },
        Err(e) => {
            tracing::error!(error = %e, "chart");
            html! { p.error { "Graphique indisponible." } }
        }
    }
}

fn daily_bars(c: &Consumption) -> Vec<(String, Option<f64>)> {
    c.periods
        .iter()
        .map(|p| (format::day_month(time::local_date(p.start)), p.value))
        .collect()
}

fn monthly_bars(c: &Consumption) -> Vec<(String, Option<f64>)> {
    c.periods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = time::local_date(p.start);
            let label = if i == 0 || d.month() == 1 {
                format!("{} {:02}", format::month_abbr(d.month()), d.year() % 100)
            } else {
                format::month_abbr(d.month()).to_string()
            };
            (label, p.value)
        })
        .collect()
}

fn total(c: &Consumption) -> String {
    c.total()
        .map(|t| format::quantity(t, c.unit.symbol()))
        .unwrap_or_else(|| "—".into())
}

/// A value in its unit, `—` without data.
fn value(v: Option<f64>, unit: Unit) -> String {
    v.map(|v| format::quantity(v, unit.symbol()))
        .unwrap_or_else(|| "—".into())
}

/// A coefficient with the decimals it needs (at least one, at most three): `11,2`,
/// `10,53`.
pub fn coefficient(v: f64) -> String {
    let s = format::number(v, 3);
    match s.split_once(',') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{int},{frac}")
        }
        None => s,
    }
}

/// One energy of the building page: what the charts and totals show, and for gas the
/// metered volume alongside.
#[derive(Debug, Clone)]
struct EnergyView {
    energy: Energy,
    daily: Consumption,
    monthly: Consumption,
    /// Gas shown in kWh: the m³ it comes from (daily, monthly) and the PCS used.
    volume: Option<(Consumption, Consumption, f64)>,
}

/// `main` and, when there is one, ` (other)` after it: `459 kWh (41,0 m³)`.
fn with_volume(main: String, volume: Option<String>) -> Markup {
    html! {
        strong { (main) }
        @if let Some(v) = volume { " (" (v) ")" }
    }
}

fn energy_section(view: &EnergyView) -> Markup {
    let EnergyView {
        energy,
        daily,
        monthly,
        volume,
    } = view;
    let unit = daily.unit.symbol();
    html! {
        section.energy {
            h2 { (energy.label_fr()) }
            @if !daily.has_meter {
                p.muted { "Aucun compteur n'est installé pour cette énergie." }
            } @else {
                div.totals {
                    div { "30 derniers jours : " (with_volume(total(daily), volume.as_ref().map(|v| total(&v.0)))) }
                    div { "12 derniers mois : " (with_volume(total(monthly), volume.as_ref().map(|v| total(&v.1)))) }
                }
                div.charts {
                    (chart(&format!("{} — par jour, 30 derniers jours", energy.label_fr()), unit, &daily_bars(daily)))
                    (chart(&format!("{} — par mois, 12 derniers mois", energy.label_fr()), unit, &monthly_bars(monthly)))
                }
                @if let Some((_, monthly_m3, pcs)) = volume {
                    p.legend.muted {
                        "Énergie en kWh PCS : volume relevé au compteur (m³) × coefficient PCS du bâtiment ("
                        (coefficient(*pcs)) (format::UNIT_SEP) "kWh/m³)."
                    }
                    details.monthly {
                        summary { "Détail mensuel (kWh et m³)" }
                        table {
                            thead { tr { th { "Mois" } th { "Énergie" } th { "Volume" } } }
                            tbody {
                                @for (e, v) in monthly.periods.iter().zip(&monthly_m3.periods) {
                                    tr {
                                        td { (format::month_year(time::local_date(e.start))) }
                                        td.num { (value(e.value, monthly.unit)) }
                                        td.num { (value(v.value, monthly_m3.unit)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Gas in kWh with its m³ alongside; other energies (or gas with an unusable PCS,
/// logged) in their meters' unit.
fn energy_view(
    building: &Building,
    energy: Energy,
    daily: Consumption,
    monthly: Consumption,
) -> EnergyView {
    let as_metered = |daily, monthly| EnergyView {
        energy,
        daily,
        monthly,
        volume: None,
    };
    if energy != Energy::Gas {
        return as_metered(daily, monthly);
    }
    let kwh = daily
        .converted(Unit::KilowattHour, building)
        .and_then(|d| Ok((d, monthly.converted(Unit::KilowattHour, building)?)));
    match kwh {
        Ok((daily_kwh, monthly_kwh)) => EnergyView {
            energy,
            daily: daily_kwh,
            monthly: monthly_kwh,
            volume: Some((daily, monthly, building.gas_pcs_kwh_per_m3)),
        },
        Err(e) => {
            tracing::warn!(error = %e, "gas shown in m³");
            as_metered(daily, monthly)
        }
    }
}

fn opt(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map(|v| format!("{}{}{unit}", format::number(v, decimals), format::UNIT_SEP))
        .unwrap_or_else(|| "—".into())
}

fn rooms_section(rooms: &[RoomReading]) -> Markup {
    html! {
        h2 { "Qualité de l'air par pièce" }
        @if rooms.is_empty() {
            p.muted { "Aucun capteur de qualité d'air dans ce bâtiment." }
        } @else {
            table.rooms {
                thead { tr {
                    th { "Pièce" } th { "CO₂" } th { "Température" } th { "Humidité" } th { "Relevé" }
                } }
                tbody {
                    @for r in rooms {
                        tr {
                            td { (r.room) }
                            @match r.co2_ppm {
                                Some(ppm) => td class={ "num " (co2_class(ppm)) } { (opt(Some(ppm), 0, "ppm")) },
                                None => td.num { "—" },
                            }
                            td.num { (opt(r.temperature_c, 1, "°C")) }
                            td.num { (opt(r.humidity_pct, 0, "%")) }
                            td { (r.at.map(format::date_time).unwrap_or_else(|| "—".into())) }
                        }
                    }
                }
            }
            p.legend.muted {
                span.co2-ok { "CO₂ < 800 ppm" }
                span.co2-warn { "800 à 1 200 ppm : à surveiller" }
                span.co2-bad { "≥ 1 200 ppm : aérer" }
            }
        }
    }
}

fn devices_section(devices: &[Device]) -> Markup {
    html! {
        h2 { "Appareils" }
        @if devices.is_empty() {
            p.muted { "Aucun appareil installé." }
        } @else {
            table.devices {
                thead { tr { th { "Identifiant" } th { "Type" } th { "Pièce" } th { "Dernier message" } th { "État" } } }
                tbody {
                    @for d in devices {
                        tr {
                            td { code { (d.id) } }
                            td { (d.kind.label_fr()) }
                            td { (d.room) }
                            td { (d.last_seen.map(format::date_time).unwrap_or_else(|| "jamais".into())) }
                            td { @match d.online {
                                Some(true) => "en ligne",
                                Some(false) => "hors ligne",
                                None => span.muted { "inconnu" },
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// The first day of the month eleven months before `today`'s.
fn twelve_months_start(today: NaiveDate) -> NaiveDate {
    let first = today.with_day(1).unwrap_or(today);
    first.checked_sub_months(Months::new(11)).unwrap_or(first)
}

/// `GET /buildings/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    session: SessionUser,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let scope = session.user.scope();
    let bid: BuildingId = id.parse().map_err(|_| PageError::not_found())?;
    let building = state
        .registry
        .building(&scope, &bid)
        .await?
        .ok_or_else(PageError::not_found)?;
    let member = state
        .registry
        .members(&scope)
        .await?
        .into_iter()
        .find(|m| m.id == building.member_id)
        .map(|m| m.name)
        .unwrap_or_else(|| building.member_id.to_string());
    let today = consumption::today();
    let mut energies = Vec::new();
    for energy in Energy::ALL {
        let daily = consumption::consumption(
            &state,
            &building.id,
            energy,
            today - Duration::days(29),
            today,
            Bucket::Day,
        )
        .await?;
        let monthly = consumption::consumption(
            &state,
            &building.id,
            energy,
            twelve_months_start(today),
            today,
            Bucket::Month,
        )
        .await?;
        energies.push(energy_view(&building, energy, daily, monthly));
    }
    let devices = state.registry.devices_of_building(&building.id).await?;
    let rooms = room_readings(&state, &devices).await?;
    let content = html! {
        p.muted {
            (member) " · " (building.usage) " · " (floor_area(&building))
            @if !building.address.is_empty() { " · " (building.address) }
        }
        @for view in &energies {
            (energy_section(view))
        }
        (rooms_section(&rooms))
        (devices_section(&devices))
    };
    Ok(layout::page(&session, &building.name, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co2_is_classed_by_the_800_and_1200_ppm_thresholds() {
        assert_eq!(co2_class(450.0), "co2-ok");
        assert_eq!(co2_class(799.9), "co2-ok");
        assert_eq!(co2_class(800.0), "co2-warn");
        assert_eq!(co2_class(1199.0), "co2-warn");
        assert_eq!(co2_class(1200.0), "co2-bad");
    }

    #[test]
    fn coefficients_show_the_decimals_they_need() {
        assert_eq!(coefficient(11.2), "11,2");
        assert_eq!(coefficient(10.53), "10,53");
        assert_eq!(coefficient(11.0), "11,0");
        assert_eq!(coefficient(9.8765), "9,877");
    }

    #[test]
    fn twelve_months_end_with_the_current_one() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
        assert_eq!(
            twelve_months_start(d),
            NaiveDate::from_ymd_opt(2025, 12, 1).expect("date")
        );
        let periods = time::periods(twelve_months_start(d), d, Bucket::Month);
        assert_eq!(periods.len(), 12);
    }
}
