//! Per-meter normalisation settings: index rollover, pulse factor, largest plausible
//! flow. A missing setting means "use the default" (no rollover, no pulse conversion,
//! the quantity's default maximum flow).
//!
//! Ingest reads them (with the device's kind and its building's gas PCS coefficient)
//! through [`Registry::meter_context_blocking`] on every batch, so a change is seen at
//! once. This module must never store a setting that is not a finite positive number.
//!
//! It also keeps the **index segments** ingest detects ([`MeterSegment`]): when a meter
//! is swapped for one with a *higher* index, the readings of the new meter are stored
//! minus an offset, so that the jump is not consumption; a segment whose earlier
//! readings wait in quarantine (`out_of_range`) is marked for replay until ingest has
//! replayed them. The `meter_segments` table is created on first use (it is not in the
//! versioned migrations of `db.rs` yet); it must never be written by anything but
//! ingest's normalisation.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{DEVICE_COLS, Device, Registry, ReplayableMessage, device_from_row, parse_id};
use crate::db::DbError;
use crate::ids::DeviceId;
use crate::quantity::Quantity;
use crate::time::Timestamp;

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

/// From `since` on, the stored value of a meter's `quantity` is the published (for a
/// meter with a rollover, unwrapped) value minus `offset`. Segments of one quantity
/// are cumulative: the latest one at or before an instant applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeterSegment {
    /// The published quantity (an index, or `pulses`).
    pub quantity: Quantity,
    /// First instant of the segment (the new meter's first reading).
    pub since: Timestamp,
    /// Subtracted from the published value.
    pub offset: f64,
}

impl Registry {
    /// A device's index segments, oldest first (blocking).
    pub fn meter_segments_blocking(&self, device: &DeviceId) -> Result<Vec<MeterSegment>, DbError> {
        let d = device.clone();
        self.db().call_blocking(move |c| {
            let mut st = c.prepare_cached(
                "SELECT quantity, since, index_offset FROM meter_segments
                 WHERE device_id = ?1 ORDER BY since, id",
            )?;
            let rows = st.query_map([d.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (q, since, offset) = row?;
                // A quantity this vigie does not know is not one it could normalise.
                if let Ok(quantity) = q.parse::<Quantity>() {
                    out.push(MeterSegment {
                        quantity,
                        since: Timestamp(since),
                        offset,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Records a segment (a segment already recorded at that instant is kept). With
    /// `replay`, the device's `out_of_range` quarantine is to be replayed
    /// ([`Registry::pending_segment_replays_blocking`]) (blocking).
    pub fn add_meter_segment_blocking(
        &self,
        device: &DeviceId,
        segment: &MeterSegment,
        replay: bool,
    ) -> Result<(), DbError> {
        if !segment.offset.is_finite() {
            return Err(DbError::Sqlite(rusqlite::Error::ToSqlConversionFailure(
                format!("segment offset {} is not a finite number", segment.offset).into(),
            )));
        }
        let (d, s) = (device.clone(), *segment);
        self.db().call_blocking(move |c| {
            c.execute(
                "INSERT INTO meter_segments (device_id, quantity, since, index_offset, replay_pending)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (device_id, quantity, since) DO UPDATE SET
                   replay_pending = MAX(replay_pending, excluded.replay_pending)",
                params![d.as_str(), s.quantity.name(), s.since.0, s.offset, replay],
            )?;
            Ok(())
        })
    }

    /// Segments whose device's `out_of_range` quarantine waits for a replay: (segment
    /// row id, device) (blocking).
    pub fn pending_segment_replays_blocking(&self) -> Result<Vec<(i64, DeviceId)>, DbError> {
        self.db().call_blocking(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, device_id FROM meter_segments WHERE replay_pending = 1 ORDER BY id",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, parse_id(r, 1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Up to `limit` of a device's `out_of_range` quarantine rows with an id above
    /// `after_id`, by id, with their detail (blocking).
    pub fn out_of_range_quarantined_blocking(
        &self,
        device: &DeviceId,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(ReplayableMessage, String)>, DbError> {
        let d = device.clone();
        self.db().call_blocking(move |c| {
            let mut st = c.prepare_cached(
                "SELECT q.id, q.received_at, q.last_received_at, q.topic, q.device_id, d.format,
                        q.payload, q.detail
                 FROM quarantine q JOIN devices d ON d.id = q.device_id
                 WHERE q.device_id = ?1 AND q.reason = 'out_of_range' AND q.id > ?2
                 ORDER BY q.id LIMIT ?3",
            )?;
            let rows = st.query_map(params![d.as_str(), after_id, limit as i64], |r| {
                Ok((
                    ReplayableMessage {
                        id: r.get(0)?,
                        received_at: Timestamp(r.get(1)?),
                        last_received_at: Timestamp(r.get(2)?),
                        topic: r.get(3)?,
                        device_id: parse_id(r, 4)?,
                        format: r.get(5)?,
                        payload: r.get(6)?,
                    },
                    r.get(7)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Marks segments as replayed (blocking).
    pub fn segments_replayed_blocking(&self, ids: &[i64]) -> Result<(), DbError> {
        let ids = ids.to_vec();
        self.db().call_blocking(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx
                    .prepare_cached("UPDATE meter_segments SET replay_pending = 0 WHERE id = ?1")?;
                for id in &ids {
                    st.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}
