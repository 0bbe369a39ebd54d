//! Provisioning the fleet in the registry: what `vigie sim` registers before publishing,
//! including the pulse factors of meters whose format publishes pulses.

use vigie_core::db::Db;
use vigie_core::registry::{DeviceKind, MeterSettings, Registry};
use vigie_firmware_sim::{SimFormat, demo_fleet};

#[tokio::test]
async fn a_tasmota_fleet_registers_its_gas_and_water_pulse_factors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(Db::open_dir(dir.path()).expect("db"));
    let fleet = demo_fleet(2, 1).with_format(SimFormat::Tasmota);
    // A setting made by a technician before is kept.
    fleet.provision(&registry).await.expect("provision");
    let gas = fleet
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::GasMeter)
        .expect("a gas meter");
    let mut tuned = registry.meter_settings(&gas.id).await.expect("settings");
    tuned.max_flow_per_hour = Some(25.0);
    registry
        .set_meter_settings(&gas.id, &tuned)
        .await
        .expect("tune");
    fleet.provision(&registry).await.expect("provision again");

    for d in &fleet.devices {
        let s = registry.meter_settings(&d.id).await.expect("settings");
        let want = match d.kind {
            DeviceKind::GasMeter => Some(10.0),  // 0.01 m³ per pulse
            DeviceKind::WaterMeter => Some(1.0), // 1 litre per pulse
            _ => None,
        };
        assert_eq!(s.pulse_factor, want, "{}", d.id);
    }
    let s = registry.meter_settings(&gas.id).await.expect("settings");
    assert_eq!(s.max_flow_per_hour, Some(25.0));

    // Formats that publish the index itself need no pulse factor.
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(Db::open_dir(dir.path()).expect("db"));
    let native = demo_fleet(1, 1);
    native.provision(&registry).await.expect("provision");
    for d in &native.devices {
        let s = registry.meter_settings(&d.id).await.expect("settings");
        assert_eq!(s, MeterSettings::default(), "{}", d.id);
    }
}
