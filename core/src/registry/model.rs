//! The registry's records: members, buildings, devices, series, users.
//!
//! Plain data with serde, as the API returns it; no behaviour beyond small accessors.

use serde::{Deserialize, Serialize};

use crate::ids::{BuildingId, DeviceId, MemberId, SeriesId, UserId};
use crate::quantity::{Quantity, SeriesKind, Unit};
use crate::time::Timestamp;

/// A member structure of the agency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Identifier (`commune-saint-martin`).
    pub id: MemberId,
    /// Display name (`Commune de Saint-Martin`).
    pub name: String,
    /// `commune`, `intercommunalite`, `ccas`, `association`…
    pub kind: String,
}

/// A building owned by a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Building {
    /// Identifier.
    pub id: BuildingId,
    /// Owning member.
    pub member_id: MemberId,
    /// Display name (`Mairie`).
    pub name: String,
    /// Postal address.
    pub address: String,
    /// Heated floor area, m².
    pub floor_area_m2: Option<f64>,
    /// Usage category (`bureaux`, `enseignement`, `sport`…).
    pub usage: String,
    /// Gas conversion coefficient (PCS), kWh per m³.
    pub gas_pcs_kwh_per_m3: f64,
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Electricity meter.
    ElectricityMeter,
    /// Gas meter.
    GasMeter,
    /// Water meter.
    WaterMeter,
    /// Indoor air-quality sensor (CO2, temperature, humidity).
    AirQuality,
    /// Outdoor thermometer.
    OutdoorThermometer,
    /// Server agent.
    ServerAgent,
    /// Anything else.
    Other,
}

impl DeviceKind {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::ElectricityMeter => "electricity_meter",
            DeviceKind::GasMeter => "gas_meter",
            DeviceKind::WaterMeter => "water_meter",
            DeviceKind::AirQuality => "air_quality",
            DeviceKind::OutdoorThermometer => "outdoor_thermometer",
            DeviceKind::ServerAgent => "server_agent",
            DeviceKind::Other => "other",
        }
    }
    /// Parses the stable text form; unknown text is `Other`.
    pub fn parse(s: &str) -> DeviceKind {
        match s {
            "electricity_meter" => DeviceKind::ElectricityMeter,
            "gas_meter" => DeviceKind::GasMeter,
            "water_meter" => DeviceKind::WaterMeter,
            "air_quality" => DeviceKind::AirQuality,
            "outdoor_thermometer" => DeviceKind::OutdoorThermometer,
            "server_agent" => DeviceKind::ServerAgent,
            _ => DeviceKind::Other,
        }
    }
    /// French label.
    pub fn label_fr(self) -> &'static str {
        match self {
            DeviceKind::ElectricityMeter => "Compteur électrique",
            DeviceKind::GasMeter => "Compteur de gaz",
            DeviceKind::WaterMeter => "Compteur d'eau",
            DeviceKind::AirQuality => "Capteur qualité d'air",
            DeviceKind::OutdoorThermometer => "Thermomètre extérieur",
            DeviceKind::ServerAgent => "Agent serveur",
            DeviceKind::Other => "Autre",
        }
    }
}

/// A device known to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Identifier, also its MQTT topic level.
    pub id: DeviceId,
    /// The building it is installed in (`None` while pending).
    pub building_id: Option<BuildingId>,
    /// What it is.
    pub kind: DeviceKind,
    /// Payload format (`native`, …).
    pub format: String,
    /// Room it measures (air-quality sensors), empty otherwise.
    pub room: String,
    /// Free label.
    pub label: String,
    /// Last time a message from it was ingested.
    pub last_seen: Option<Timestamp>,
    /// Last status published (`online`/`offline`), if any.
    pub online: Option<bool>,
}

impl Device {
    /// A new device record with no history.
    pub fn new(id: DeviceId, building_id: Option<BuildingId>, kind: DeviceKind) -> Device {
        Device {
            id,
            building_id,
            kind,
            format: "native".into(),
            room: String::new(),
            label: String::new(),
            last_seen: None,
            online: None,
        }
    }
}

/// A stored series: one quantity of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    /// Identifier in the store.
    pub id: SeriesId,
    /// The device.
    pub device_id: DeviceId,
    /// What it measures.
    pub quantity: Quantity,
    /// Unit of its values.
    pub unit: Unit,
    /// Counter or gauge.
    pub kind: SeriesKind,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users.
    Admin,
    /// All members' buildings and devices; provisioning; alerts.
    Technician,
    /// Energy manager of one member: that member's buildings only.
    Manager,
    /// Read-only, one member's buildings only.
    Viewer,
}

impl Role {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Manager => "manager",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "technician" => Ok(Role::Technician),
            "manager" => Ok(Role::Manager),
            "viewer" => Ok(Role::Viewer),
            _ => Err(format!(
                "unknown role {s:?}: expected admin, technician, manager or viewer"
            )),
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The member a manager or viewer belongs to.
    pub member_id: Option<MemberId>,
}

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every member (agency staff).
    All,
    /// One member's objects only.
    Member(MemberId),
    /// Nothing (a manager without a member).
    Nothing,
}

impl User {
    /// The scope of every query this user makes.
    pub fn scope(&self) -> Scope {
        match (self.role, &self.member_id) {
            (Role::Admin | Role::Technician, _) => Scope::All,
            (_, Some(m)) => Scope::Member(m.clone()),
            (_, None) => Scope::Nothing,
        }
    }
}

impl Scope {
    /// Whether an object owned by `member` is visible.
    pub fn allows(&self, member: &MemberId) -> bool {
        match self {
            Scope::All => true,
            Scope::Member(m) => m == member,
            Scope::Nothing => false,
        }
    }
}
