//! The simulated fleet: member structures, their buildings and the devices installed
//! in them, as the registry records them.
//!
//! The fleet is plain data built from a fixed list of building templates (real-looking
//! French public buildings); the binary provisions it in the registry before the
//! simulator publishes, so that ingest knows every device. This module never talks to
//! the network and never draws a random number that changes an identifier: the same
//! `buildings` count always gives the same ids, whatever the seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigie_core::db::DbError;
use vigie_core::ids::InvalidId;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry};
use vigie_core::{BuildingId, DeviceId, MemberId};

use crate::formats::SimFormat;

/// The default number of simulated buildings.
pub const DEFAULT_BUILDINGS: usize = 3;

/// Gas conversion coefficient of the simulated buildings (kWh PCS per m³).
pub const GAS_PCS_KWH_PER_M3: f64 = 11.2;

/// Members, buildings and devices of a simulated fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Member structures owning the buildings.
    pub members: Vec<Member>,
    /// Buildings, each owned by one of `members`.
    pub buildings: Vec<Building>,
    /// Devices, each installed in one of `buildings`.
    pub devices: Vec<Device>,
}

impl Fleet {
    /// The building a device is installed in.
    pub fn building_of(&self, device: &Device) -> Option<&Building> {
        let id = device.building_id.as_ref()?;
        self.buildings.iter().find(|b| &b.id == id)
    }

    /// The devices installed in a building.
    pub fn devices_of<'a>(&'a self, building: &'a BuildingId) -> impl Iterator<Item = &'a Device> {
        self.devices
            .iter()
            .filter(move |d| d.building_id.as_ref() == Some(building))
    }

    /// The same fleet with every device's registry `format` set to `format`.
    pub fn with_format(mut self, format: SimFormat) -> Fleet {
        for d in &mut self.devices {
            d.format = format.as_str().to_string();
        }
        self
    }

    /// Creates or updates every member, building and device in the registry, and the
    /// pulse factor of every meter whose format publishes pulses
    /// ([`SimFormat::pulse_factor`]; its other meter settings are kept).
    pub async fn provision(&self, registry: &Registry) -> Result<(), DbError> {
        for m in &self.members {
            registry.upsert_member(m).await?;
        }
        for b in &self.buildings {
            registry.upsert_building(b).await?;
        }
        for d in &self.devices {
            registry.upsert_device(d).await?;
            let factor = d
                .format
                .parse::<SimFormat>()
                .ok()
                .and_then(|f| f.pulse_factor(d.kind));
            if let Some(factor) = factor {
                let mut settings = registry.meter_settings(&d.id).await?;
                if settings.pulse_factor != Some(factor) {
                    settings.pulse_factor = Some(factor);
                    registry.set_meter_settings(&d.id, &settings).await?;
                }
            }
        }
        Ok(())
    }
}

struct MemberTemplate {
    slug: &'static str,
    name: &'static str,
    town: &'static str,
    postcode: &'static str,
}

const MEMBERS: [MemberTemplate; 2] = [
    MemberTemplate {
        slug: "commune-saint-aubin",
        name: "Commune de Saint-Aubin",
        town: "Saint-Aubin",
        postcode: "35250",
    },
    MemberTemplate {
        slug: "commune-plouvenez",
        name: "Commune de Plouvenez",
        town: "Plouvenez",
        postcode: "29410",
    },
];

struct BuildingTemplate {
    slug: &'static str,
    name: &'static str,
    /// Index into [`MEMBERS`].
    member: usize,
    usage: &'static str,
    floor_area_m2: f64,
    street: &'static str,
    rooms: &'static [&'static str],
}

const BUILDINGS: [BuildingTemplate; 10] = [
    BuildingTemplate {
        slug: "mairie-saint-aubin",
        name: "Mairie de Saint-Aubin",
        member: 0,
        usage: "bureaux",
        floor_area_m2: 620.0,
        street: "2 place de l'Église",
        rooms: &["Salle du conseil", "Accueil", "Bureau du maire"],
    },
    BuildingTemplate {
        slug: "ecole-jules-ferry",
        name: "École élémentaire Jules-Ferry",
        member: 1,
        usage: "enseignement",
        floor_area_m2: 1450.0,
        street: "12 rue des Écoles",
        rooms: &["Classe de CP", "Classe de CE2", "Cantine", "Bibliothèque"],
    },
    BuildingTemplate {
        slug: "gymnase-colette-besson",
        name: "Gymnase municipal Colette-Besson",
        member: 0,
        usage: "sport",
        floor_area_m2: 1800.0,
        street: "5 allée du Stade",
        rooms: &["Grande salle", "Vestiaires"],
    },
    BuildingTemplate {
        slug: "mairie-plouvenez",
        name: "Mairie de Plouvenez",
        member: 1,
        usage: "bureaux",
        floor_area_m2: 480.0,
        street: "1 place du Général-de-Gaulle",
        rooms: &["Salle des mariages", "Accueil", "Secrétariat"],
    },
    BuildingTemplate {
        slug: "ecole-marie-curie",
        name: "École maternelle Marie-Curie",
        member: 0,
        usage: "enseignement",
        floor_area_m2: 900.0,
        street: "8 rue des Tilleuls",
        rooms: &["Classe des petits", "Salle de motricité", "Dortoir"],
    },
    BuildingTemplate {
        slug: "salle-sports-alain-mimoun",
        name: "Salle des sports Alain-Mimoun",
        member: 1,
        usage: "sport",
        floor_area_m2: 1200.0,
        street: "rue du Moulin",
        rooms: &["Salle omnisports", "Salle de danse", "Vestiaires"],
    },
    BuildingTemplate {
        slug: "mairie-annexe-kerleo",
        name: "Mairie annexe de Kerléo",
        member: 1,
        usage: "bureaux",
        floor_area_m2: 300.0,
        street: "3 route de Kerléo",
        rooms: &["Accueil", "Salle de réunion"],
    },
    BuildingTemplate {
        slug: "groupe-scolaire-jean-jaures",
        name: "Groupe scolaire Jean-Jaurès",
        member: 0,
        usage: "enseignement",
        floor_area_m2: 2100.0,
        street: "24 avenue Jean-Jaurès",
        rooms: &[
            "Classe de CM1",
            "Classe de CM2",
            "Restaurant scolaire",
            "Salle polyvalente",
        ],
    },
    BuildingTemplate {
        slug: "complexe-sportif-perec",
        name: "Complexe sportif Marie-José-Pérec",
        member: 1,
        usage: "sport",
        floor_area_m2: 2400.0,
        street: "chemin de la Vallée",
        rooms: &["Salle principale", "Dojo", "Vestiaires"],
    },
    BuildingTemplate {
        slug: "mediatheque-simone-veil",
        name: "Médiathèque Simone-Veil",
        member: 0,
        usage: "bureaux",
        floor_area_m2: 750.0,
        street: "10 rue de la République",
        rooms: &["Salle de lecture", "Espace jeunesse", "Accueil"],
    },
];

/// Turns a French label into an identifier slug: ASCII `a-z0-9` and single dashes.
pub fn slugify(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars().flat_map(char::to_lowercase) {
        let mapped = match c {
            'à' | 'â' | 'ä' | 'á' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'î' | 'ï' | 'í' => Some('i'),
            'ô' | 'ö' | 'ó' => Some('o'),
            'ù' | 'û' | 'ü' | 'ú' => Some('u'),
            'ç' => Some('c'),
            'ÿ' => Some('y'),
            'œ' => {
                out.push('o');
                Some('e')
            }
            'æ' => {
                out.push('a');
                Some('e')
            }
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        };
        match mapped {
            Some(c) => out.push(c),
            None if !out.is_empty() && !out.ends_with('-') => out.push('-'),
            None => {}
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// A demo fleet of `buildings` buildings owned by two communes.
///
/// The first three are a town hall, a school and a gymnasium over two communes; past
/// the ten templates the list starts again with a numeric suffix (`… 2`, `-2`). The
/// seed varies floor areas by ±10 % only; ids and names depend on `buildings` alone.
pub fn demo_fleet(buildings: usize, seed: u64) -> Fleet {
    // Every id below is built from constant ASCII slugs and numbers, so it is valid.
    build_fleet(buildings, seed).unwrap_or_else(|_| Fleet {
        members: Vec::new(),
        buildings: Vec::new(),
        devices: Vec::new(),
    })
}

fn build_fleet(count: usize, seed: u64) -> Result<Fleet, InvalidId> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF1EE_7000);
    let mut buildings = Vec::with_capacity(count);
    let mut devices = Vec::new();
    let mut used_members = [false; MEMBERS.len()];
    for i in 0..count {
        let t = &BUILDINGS[i % BUILDINGS.len()];
        let round = i / BUILDINGS.len();
        let (slug, name) = if round == 0 {
            (t.slug.to_string(), t.name.to_string())
        } else {
            (
                format!("{}-{}", t.slug, round + 1),
                format!("{} {}", t.name, round + 1),
            )
        };
        let member = &MEMBERS[t.member];
        used_members[t.member] = true;
        let building_id = BuildingId::new(slug.clone())?;
        let area = (t.floor_area_m2 * rng.random_range(0.9..1.1)).round();
        buildings.push(Building {
            id: building_id.clone(),
            member_id: MemberId::new(member.slug)?,
            name,
            address: format!("{}, {} {}", t.street, member.postcode, member.town),
            floor_area_m2: Some(area),
            usage: t.usage.to_string(),
            gas_pcs_kwh_per_m3: GAS_PCS_KWH_PER_M3,
        });
        let device = |suffix: &str, kind: DeviceKind, label: String| -> Result<Device, InvalidId> {
            let mut d = Device::new(
                DeviceId::new(format!("{slug}-{suffix}"))?,
                Some(building_id.clone()),
                kind,
            );
            d.label = label;
            Ok(d)
        };
        devices.push(device(
            "elec",
            DeviceKind::ElectricityMeter,
            "Compteur Linky".into(),
        )?);
        devices.push(device(
            "gas",
            DeviceKind::GasMeter,
            "Compteur Gazpar".into(),
        )?);
        devices.push(device(
            "water",
            DeviceKind::WaterMeter,
            "Compteur d'eau général".into(),
        )?);
        for room in t.rooms {
            let mut d = device(
                &format!("aq-{}", slugify(room)),
                DeviceKind::AirQuality,
                format!("Capteur CO₂ {room}"),
            )?;
            d.room = (*room).to_string();
            devices.push(d);
        }
        devices.push(device(
            "outdoor",
            DeviceKind::OutdoorThermometer,
            "Sonde extérieure".into(),
        )?);
    }
    let members = MEMBERS
        .iter()
        .zip(used_members)
        .filter(|(_, used)| *used)
        .map(|(m, _)| {
            Ok(Member {
                id: MemberId::new(m.slug)?,
                name: m.name.to_string(),
                kind: "commune".to_string(),
            })
        })
        .collect::<Result<Vec<_>, InvalidId>>()?;
    Ok(Fleet {
        members,
        buildings,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn slugs_are_ascii_lowercase_with_single_dashes() {
        assert_eq!(slugify("Salle du conseil"), "salle-du-conseil");
        assert_eq!(
            slugify("École élémentaire Jules-Ferry"),
            "ecole-elementaire-jules-ferry"
        );
        assert_eq!(slugify("  Cœur d'îlot -- "), "coeur-d-ilot");
    }

    #[test]
    fn default_fleet_has_three_buildings_over_two_members() {
        let fleet = demo_fleet(DEFAULT_BUILDINGS, 42);
        assert_eq!(fleet.buildings.len(), 3);
        let owners: HashSet<_> = fleet.buildings.iter().map(|b| &b.member_id).collect();
        assert!(owners.len() >= 2, "{owners:?}");
        let usages: HashSet<_> = fleet.buildings.iter().map(|b| b.usage.as_str()).collect();
        assert_eq!(usages, HashSet::from(["bureaux", "enseignement", "sport"]));
        for b in &fleet.buildings {
            assert!(fleet.members.iter().any(|m| m.id == b.member_id));
        }
    }

    #[test]
    fn every_building_has_meters_sensors_per_room_and_a_thermometer() {
        let fleet = demo_fleet(3, 1);
        for b in &fleet.buildings {
            let kinds: Vec<_> = fleet.devices_of(&b.id).map(|d| d.kind).collect();
            for k in [
                DeviceKind::ElectricityMeter,
                DeviceKind::GasMeter,
                DeviceKind::WaterMeter,
                DeviceKind::OutdoorThermometer,
            ] {
                assert_eq!(
                    kinds.iter().filter(|x| **x == k).count(),
                    1,
                    "{k:?} in {}",
                    b.id
                );
            }
            let rooms: Vec<_> = fleet
                .devices_of(&b.id)
                .filter(|d| d.kind == DeviceKind::AirQuality)
                .collect();
            assert!((2..=4).contains(&rooms.len()), "{}", b.id);
            assert!(rooms.iter().all(|d| !d.room.is_empty()));
        }
        assert!(
            fleet
                .devices
                .iter()
                .any(|d| d.id.as_str() == "mairie-saint-aubin-aq-salle-du-conseil")
        );
    }

    #[test]
    fn large_fleets_have_unique_slug_ids() {
        let fleet = demo_fleet(35, 7);
        assert_eq!(fleet.buildings.len(), 35);
        let b_ids: HashSet<_> = fleet.buildings.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(b_ids.len(), 35);
        let names: HashSet<_> = fleet.buildings.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names.len(), 35);
        let d_ids: HashSet<_> = fleet.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(d_ids.len(), fleet.devices.len());
        for id in b_ids.iter().chain(d_ids.iter()) {
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{id}"
            );
            assert!(id.len() <= 64);
        }
    }

    #[test]
    fn ids_do_not_depend_on_the_seed() {
        let a = demo_fleet(12, 1);
        let b = demo_fleet(12, 2);
        let ids = |f: &Fleet| f.devices.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
    }
}
