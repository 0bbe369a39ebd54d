//! The registry: members, buildings, devices and their series, users, quarantine.
//!
//! Every read that returns buildings or devices takes a [`Scope`], so that a caller
//! can only ever see what its user may see; there is no unscoped listing for the web
//! layer to misuse. The registry never stores a secret in clear: passwords are argon2
//! PHC strings, API and session tokens are stored as SHA-256 digests.

mod meter;
mod model;
mod pending;
mod quarantine;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rusqlite::{OptionalExtension, Row, params};

pub use meter::{MeterContext, MeterSegment, MeterSettings, default_max_flow_per_hour};
pub use model::*;
pub use pending::{
    AssignOutcome, Assignment, PENDING_PAYLOAD_BYTES, PendingDevice, ReplayableMessage, Sighting,
};
pub use quarantine::{QuarantineEntry, QuarantineReason, QuarantinedMessage};
pub use users::{
    ApiToken, AuthError, IssuedToken, LAST_USED_RESOLUTION_MS, NewSession, TokenId, random_password,
};

use crate::db::{Db, DbError};
use crate::ids::{BuildingId, DeviceId, MemberId, SeriesId};
use crate::quantity::{Energy, Quantity};
use crate::time::Timestamp;

/// The registry over a [`Db`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    db: Db,
    series_cache: Arc<RwLock<HashMap<(DeviceId, Quantity), SeriesId>>>,
}

fn building_from_row(r: &Row<'_>) -> rusqlite::Result<Building> {
    Ok(Building {
        id: parse_id(r, 0)?,
        member_id: parse_id(r, 1)?,
        name: r.get(2)?,
        address: r.get(3)?,
        floor_area_m2: r.get(4)?,
        usage: r.get(5)?,
        gas_pcs_kwh_per_m3: r.get(6)?,
    })
}

const BUILDING_COLS: &str =
    "id, member_id, name, address, floor_area_m2, usage, gas_pcs_kwh_per_m3";
const DEVICE_COLS: &str =
    "d.id, d.building_id, d.kind, d.format, d.room, d.label, d.last_seen, d.online";

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    let building: Option<String> = r.get(1)?;
    Ok(Device {
        id: parse_id(r, 0)?,
        building_id: building
            .map(|b| b.parse().map_err(|e| conversion(1, e)))
            .transpose()?,
        kind: DeviceKind::parse(&r.get::<_, String>(2)?),
        format: r.get(3)?,
        room: r.get(4)?,
        label: r.get(5)?,
        last_seen: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        online: r.get::<_, Option<bool>>(7)?,
    })
}

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

fn parse_id<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(idx)?
        .parse()
        .map_err(|e| conversion(idx, e))
}

fn series_from_row(r: &Row<'_>) -> rusqlite::Result<SeriesInfo> {
    let quantity: Quantity = parse_id(r, 2)?;
    Ok(SeriesInfo {
        id: SeriesId(r.get(0)?),
        device_id: parse_id(r, 1)?,
        quantity,
        unit: quantity.unit(),
        kind: quantity.kind(),
    })
}

/// `(clause, param)` restricting `member_col` to the scope.
fn scope_clause(scope: &Scope, member_col: &str) -> (String, Option<String>) {
    match scope {
        Scope::All => ("1 = 1".into(), None),
        Scope::Member(m) => (format!("{member_col} = ?1"), Some(m.to_string())),
        Scope::Nothing => ("0 = 1".into(), None),
    }
}

impl Registry {
    /// The registry stored in `db`.
    pub fn new(db: Db) -> Registry {
        Registry {
            db,
            series_cache: Arc::default(),
        }
    }

    /// The underlying database handle.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates or updates a member.
    pub async fn upsert_member(&self, m: &Member) -> Result<(), DbError> {
        let m = m.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO members (id, name, kind, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind",
                    params![m.id.as_str(), m.name, m.kind, Timestamp::now().0],
                )?;
                Ok(())
            })
            .await
    }

    /// Members visible in `scope`, by name.
    pub async fn members(&self, scope: &Scope) -> Result<Vec<Member>, DbError> {
        let (clause, p) = scope_clause(scope, "id");
        self.db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT id, name, kind FROM members WHERE {clause} ORDER BY name"
                ))?;
                let rows = st.query_map(rusqlite::params_from_iter(p.iter()), |r| {
                    Ok(Member {
                        id: parse_id(r, 0)?,
                        name: r.get(1)?,
                        kind: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Creates or updates a building.
    pub async fn upsert_building(&self, b: &Building) -> Result<(), DbError> {
        let b = b.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO buildings (id, member_id, name, address, floor_area_m2, usage, gas_pcs_kwh_per_m3)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET member_id = excluded.member_id, name = excluded.name,
                       address = excluded.address, floor_area_m2 = excluded.floor_area_m2,
                       usage = excluded.usage, gas_pcs_kwh_per_m3 = excluded.gas_pcs_kwh_per_m3",
                    params![
                        b.id.as_str(),
                        b.member_id.as_str(),
                        b.name,
                        b.address,
                        b.floor_area_m2,
                        b.usage,
                        b.gas_pcs_kwh_per_m3
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Buildings visible in `scope`, by name.
    pub async fn buildings(&self, scope: &Scope) -> Result<Vec<Building>, DbError> {
        let (clause, p) = scope_clause(scope, "member_id");
        self.db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {BUILDING_COLS} FROM buildings WHERE {clause} ORDER BY name, id"
                ))?;
                let rows = st.query_map(rusqlite::params_from_iter(p.iter()), building_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// One building, if it exists and is visible in `scope`.
    pub async fn building(
        &self,
        scope: &Scope,
        id: &BuildingId,
    ) -> Result<Option<Building>, DbError> {
        let id = id.clone();
        let b = self
            .db
            .call(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {BUILDING_COLS} FROM buildings WHERE id = ?1"),
                    [id.as_str()],
                    building_from_row,
                )
                .optional()?)
            })
            .await?;
        Ok(b.filter(|b| scope.allows(&b.member_id)))
    }

    /// Creates or updates a device (keeps its `last_seen` and `online`).
    pub async fn upsert_device(&self, d: &Device) -> Result<(), DbError> {
        let d = d.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO devices (id, building_id, kind, format, room, label, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET building_id = excluded.building_id, kind = excluded.kind,
                       format = excluded.format, room = excluded.room, label = excluded.label",
                    params![
                        d.id.as_str(),
                        d.building_id.as_ref().map(|b| b.as_str()),
                        d.kind.as_str(),
                        d.format,
                        d.room,
                        d.label,
                        Timestamp::now().0
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Devices installed in buildings visible in `scope` (pending devices excluded).
    pub async fn devices(&self, scope: &Scope) -> Result<Vec<Device>, DbError> {
        let (clause, p) = scope_clause(scope, "b.member_id");
        self.db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {DEVICE_COLS} FROM devices d JOIN buildings b ON b.id = d.building_id
                     WHERE {clause} ORDER BY d.building_id, d.id"
                ))?;
                let rows = st.query_map(rusqlite::params_from_iter(p.iter()), device_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Devices of one building (the caller checked the building is visible).
    pub async fn devices_of_building(&self, building: &BuildingId) -> Result<Vec<Device>, DbError> {
        let b = building.clone();
        self.db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {DEVICE_COLS} FROM devices d WHERE d.building_id = ?1 ORDER BY d.room, d.id"
                ))?;
                let rows = st.query_map([b.as_str()], device_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// One device, if it is installed in a building visible in `scope`.
    pub async fn device(&self, scope: &Scope, id: &DeviceId) -> Result<Option<Device>, DbError> {
        let id = id.clone();
        let found = self
            .db
            .call(move |c| {
                Ok(c.query_row(
                    &format!(
                        "SELECT {DEVICE_COLS}, b.member_id FROM devices d
                         LEFT JOIN buildings b ON b.id = d.building_id WHERE d.id = ?1"
                    ),
                    [id.as_str()],
                    |r| Ok((device_from_row(r)?, r.get::<_, Option<String>>(8)?)),
                )
                .optional()?)
            })
            .await?;
        Ok(found.and_then(|(d, member)| match (scope, member) {
            (Scope::All, _) => Some(d),
            (s, Some(m)) if MemberId::new(m.as_str()).is_ok_and(|m| s.allows(&m)) => Some(d),
            _ => None,
        }))
    }

    /// Looks a device up for ingest, whatever its building: `None` if unknown.
    pub fn device_for_ingest_blocking(&self, id: &DeviceId) -> Result<Option<Device>, DbError> {
        let id = id.clone();
        self.db.call_blocking(move |c| {
            Ok(c.query_row(
                &format!("SELECT {DEVICE_COLS} FROM devices d WHERE d.id = ?1"),
                [id.as_str()],
                device_from_row,
            )
            .optional()?)
        })
    }

    /// Records when devices were last heard from (keeps the latest instant).
    pub fn touch_devices_blocking(&self, seen: &[(DeviceId, Timestamp)]) -> Result<(), DbError> {
        if seen.is_empty() {
            return Ok(());
        }
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            self.touch_devices_in(&tx, seen)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records when devices were last heard from (keeps the latest instant) within the
    /// caller's transaction on `c`, a connection to this registry's file.
    pub fn touch_devices_in(
        &self,
        c: &rusqlite::Connection,
        seen: &[(DeviceId, Timestamp)],
    ) -> Result<(), DbError> {
        let mut st = c.prepare_cached(
            "UPDATE devices SET last_seen = MAX(COALESCE(last_seen, 0), ?2) WHERE id = ?1",
        )?;
        for (d, ts) in seen {
            st.execute(params![d.as_str(), ts.0])?;
        }
        Ok(())
    }

    /// Records a device's `online`/`offline` status.
    pub fn set_device_online_blocking(&self, id: &DeviceId, online: bool) -> Result<bool, DbError> {
        self.db
            .call_blocking(|c| self.set_device_online_in(c, id, online))
    }

    /// Records a device's `online`/`offline` status within the caller's transaction on
    /// `c`, a connection to this registry's file; `false` if the device is unknown.
    pub fn set_device_online_in(
        &self,
        c: &rusqlite::Connection,
        id: &DeviceId,
        online: bool,
    ) -> Result<bool, DbError> {
        Ok(
            c.prepare_cached("UPDATE devices SET online = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), online])?
                > 0,
        )
    }

    /// The series of `(device, quantity)`, created on first use. Cached.
    pub fn series_id_blocking(
        &self,
        device: &DeviceId,
        quantity: Quantity,
    ) -> Result<SeriesId, DbError> {
        let key = (device.clone(), quantity);
        if let Some(id) = self
            .series_cache
            .read()
            .ok()
            .and_then(|m| m.get(&key).copied())
        {
            return Ok(id);
        }
        let d = device.clone();
        let id = self.db.call_blocking(move |c| {
            c.execute(
                "INSERT INTO series (device_id, quantity, unit, kind) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id, quantity) DO NOTHING",
                params![
                    d.as_str(),
                    quantity.name(),
                    quantity.unit().symbol(),
                    quantity.kind().as_str()
                ],
            )?;
            Ok(c.query_row(
                "SELECT id FROM series WHERE device_id = ?1 AND quantity = ?2",
                params![d.as_str(), quantity.name()],
                |r| r.get::<_, i64>(0),
            )?)
        })?;
        if let Ok(mut m) = self.series_cache.write() {
            m.insert(key, SeriesId(id));
        }
        Ok(SeriesId(id))
    }

    /// Async form of [`Registry::series_id_blocking`].
    pub async fn series_id(
        &self,
        device: &DeviceId,
        quantity: Quantity,
    ) -> Result<SeriesId, DbError> {
        let r = self.clone();
        let d = device.clone();
        tokio::task::spawn_blocking(move || r.series_id_blocking(&d, quantity))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// The series of one device.
    pub async fn series_of_device(&self, device: &DeviceId) -> Result<Vec<SeriesInfo>, DbError> {
        let d = device.clone();
        self.db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT id, device_id, quantity FROM series WHERE device_id = ?1 ORDER BY quantity",
                )?;
                let rows = st.query_map([d.as_str()], series_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// The series of a building measuring `quantity` (all its devices).
    pub async fn series_of_building(
        &self,
        building: &BuildingId,
        quantity: Quantity,
    ) -> Result<Vec<SeriesInfo>, DbError> {
        let b = building.clone();
        self.db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT s.id, s.device_id, s.quantity FROM series s JOIN devices d ON d.id = s.device_id
                     WHERE d.building_id = ?1 AND s.quantity = ?2 ORDER BY s.id",
                )?;
                let rows = st.query_map(params![b.as_str(), quantity.name()], series_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// The meter series of a building for one energy.
    pub async fn energy_series(
        &self,
        building: &BuildingId,
        energy: Energy,
    ) -> Result<Vec<SeriesInfo>, DbError> {
        self.series_of_building(building, energy.index_quantity())
            .await
    }

    /// Every series, with the device's building and member: what a remote store needs
    /// to tag samples.
    pub async fn series_labels(&self) -> Result<Vec<SeriesLabels>, DbError> {
        self.db
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT s.id, s.device_id, s.quantity, d.building_id, b.member_id
                     FROM series s JOIN devices d ON d.id = s.device_id
                     LEFT JOIN buildings b ON b.id = d.building_id ORDER BY s.id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(SeriesLabels {
                        series: series_from_row(r)?,
                        building_id: r.get(3)?,
                        member_id: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}

/// A series with the labels a remote store attaches to it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLabels {
    /// The series.
    pub series: SeriesInfo,
    /// Building of its device, if installed.
    pub building_id: Option<String>,
    /// Member owning that building.
    pub member_id: Option<String>,
}

#[cfg(test)]
mod tests;
