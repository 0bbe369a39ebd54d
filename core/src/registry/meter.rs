//! Per-meter normalisation settings: index rollover, pulse factor, largest plausible
//! flow. A missing setting means "use the default" (no rollover, no pulse conversion,
//! the quantity's default maximum flow).
//!
//! Ingest reads them (with the device's kind and its building's gas PCS coefficient)
//! through [`Registry::meter_context_blocking`] on every batch, so a change is seen at
//! once. This module must never store a setting that is not a finite positive number.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{DEVICE_COLS, Device, Registry, device_from_row};
use crate::db::DbError;
use crate::ids::DeviceId;
use crate::quantity::Quantity;

/// How one meter's index behaves. `None` = default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterSettings {
    /// The index value at which the register wraps back to 0 (the modulus: `100000`
    /// for a 5-digit register, whose largest shown value is 99999.9). Ingest stores an
    /// unwrapped index `raw + k × index_rollover`; the raw reading is `stored mod
    /// index_rollover`. For a pulse meter it applies to the pulse count.
    pub index_rollover: Option<f64>,
    /// For a meter publishing `pulses`: litres per pulse (gas and water meters) or Wh
    /// per pulse (electricity meters).
    pub pulse_factor: Option<f64>,
    /// Largest plausible flow, in the index unit per hour (kWh/h = kW for electricity,
    /// m³/h for gas and water); a step implying more is quarantined.
    pub max_flow_per_hour: Option<f64>,
}

impl MeterSettings {
    /// Checks every present setting is a finite positive number; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("index_rollover", self.index_rollover),
            ("pulse_factor", self.pulse_factor),
            ("max_flow_per_hour", self.max_flow_per_hour),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(format!("{name} = {v}: expected a positive number"));
            }
        }
        Ok(())
    }
}

/// The default largest plausible flow of a counter quantity, per hour, in its unit:
/// 1 MW for a building's electricity, 160 m³/h of gas (a G100 meter's maximum), 50 m³/h
/// of water. `None` for quantities without a default (pulses: checked once converted).
pub fn default_max_flow_per_hour(q: Quantity) -> Option<f64> {
    match q {
        Quantity::ElectricityKwh => Some(1_000.0),
        Quantity::GasM3 => Some(160.0),
        Quantity::GasKwh => Some(160.0 * 12.0),
        Quantity::WaterM3 => Some(50.0),
        _ => None,
    }
}

/// What ingest needs to normalise one device's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterContext {
    /// The device.
    pub device: Device,
    /// Its settings (defaults where unset).
    pub settings: MeterSettings,
    /// Its building's gas PCS coefficient (kWh/m³), when it is installed in one.
    pub gas_pcs_kwh_per_m3: Option<f64>,
}

impl Registry {
    /// Sets (replaces) a device's meter settings. The caller validated them
    /// ([`MeterSettings::validate`]); invalid ones are refused here too.
    pub async fn set_meter_settings(
        &self,
        device: &DeviceId,
        settings: &MeterSettings,
    ) -> Result<(), DbError> {
        settings
            .validate()
            .map_err(|e| DbError::Sqlite(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
        let (d, s) = (device.clone(), *settings);
        self.db()
            .call(move |c| {
                c.execute(
                    "INSERT INTO meter_settings (device_id, index_rollover, pulse_factor, max_flow_per_hour)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (device_id) DO UPDATE SET index_rollover = excluded.index_rollover,
                       pulse_factor = excluded.pulse_factor, max_flow_per_hour = excluded.max_flow_per_hour",
                    params![d.as_str(), s.index_rollover, s.pulse_factor, s.max_flow_per_hour],
                )?;
                Ok(())
            })
            .await
    }

    /// A device's meter settings (all `None` when never set).
    pub async fn meter_settings(&self, device: &DeviceId) -> Result<MeterSettings, DbError> {
        let d = device.clone();
        self.db()
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT index_rollover, pulse_factor, max_flow_per_hour FROM meter_settings WHERE device_id = ?1",
                    [d.as_str()],
                    |r| {
                        Ok(MeterSettings {
                            index_rollover: r.get(0)?,
                            pulse_factor: r.get(1)?,
                            max_flow_per_hour: r.get(2)?,
                        })
                    },
                )
                .optional()?
                .unwrap_or_default())
            })
            .await
    }

    /// The device, its meter settings and its building's PCS; `None` if the device is
    /// unknown (blocking: for ingest's blocking pool).
    pub fn meter_context_blocking(&self, id: &DeviceId) -> Result<Option<MeterContext>, DbError> {
        let id = id.clone();
        self.db().call_blocking(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {DEVICE_COLS}, m.index_rollover, m.pulse_factor, m.max_flow_per_hour,
                            b.gas_pcs_kwh_per_m3
                     FROM devices d
                     LEFT JOIN meter_settings m ON m.device_id = d.id
                     LEFT JOIN buildings b ON b.id = d.building_id
                     WHERE d.id = ?1"
                ),
                [id.as_str()],
                |r| {
                    Ok(MeterContext {
                        device: device_from_row(r)?,
                        settings: MeterSettings {
                            index_rollover: r.get(8)?,
                            pulse_factor: r.get(9)?,
                            max_flow_per_hour: r.get(10)?,
                        },
                        gas_pcs_kwh_per_m3: r.get(11)?,
                    })
                },
            )
            .optional()?)
        })
    }
}
