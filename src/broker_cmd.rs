//! `vigie device credentials DEVICE` and `vigie broker mosquitto-config DIR`: MQTT
//! credentials on the data dir's registry, and the files that let mosquitto enforce
//! them per topic.
//!
//! A device's password is printed once, to stdout, and stored only as a hash. The
//! mosquitto files hold hashes only, except `ingest.env`, which holds ingest's new
//! password in clear for `vigie ingest`'s environment and is written mode 0600. This
//! module must never print a password it did not just generate.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use vigie_core::DeviceId;
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::payload::TOPIC_PREFIX;
use vigie_core::registry::Registry;
use vigie_ingest::auth;

#[derive(Subcommand)]
pub(crate) enum DeviceCommand {
    /// Give a device a new MQTT password (username = device id); prints it once.
    Credentials {
        /// The device id.
        device: DeviceId,
    },
}

#[derive(Subcommand)]
pub(crate) enum BrokerCommand {
    /// Write mosquitto's password file, ACL file and a config snippet into DIR, and
    /// ingest's new credential into DIR/ingest.env (mode 0600).
    MosquittoConfig {
        /// Directory to write `passwd`, `acl`, `vigie.conf` and `ingest.env` into.
        dir: PathBuf,
    },
}

pub(crate) fn run_device(config: &Config, cmd: DeviceCommand) -> Result<()> {
    let registry = Registry::new(Db::open_dir(&config.storage.data_dir)?);
    match cmd {
        DeviceCommand::Credentials { device } => {
            let password = auth::issue_device_password_blocking(&registry, &device)
                .with_context(|| format!("cannot give device {device} a password"))?;
            println!("{password}");
            eprintln!(
                "device {device}: MQTT username {device:?}, new password above (shown once; \
                 the previous one no longer works on the embedded broker; run \
                 `vigie broker mosquitto-config DIR` again for mosquitto)"
            );
            Ok(())
        }
    }
}

pub(crate) fn run_broker(config: &Config, cmd: BrokerCommand) -> Result<()> {
    match cmd {
        BrokerCommand::MosquittoConfig { dir } => mosquitto_config(config, &dir),
    }
}

fn mosquitto_config(config: &Config, dir: &Path) -> Result<()> {
    let db = Db::open_dir(&config.storage.data_dir)?;
    let devices = auth::device_password_hashes_blocking(&db)?;
    let ingest_password = auth::generate_password();
    let (passwd, acl) = auth::mosquitto_files(
        TOPIC_PREFIX,
        &devices,
        &auth::mosquitto_hash(&ingest_password),
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let abs = std::fs::canonicalize(dir)?;
    let conf = format!(
        "# Include from mosquitto.conf (or copy): devices authenticate with the passwords\n\
         # of `vigie device credentials`, and may publish only under vigie/<their id>/.\n\
         allow_anonymous false\n\
         password_file {}\n\
         acl_file {}\n\
         # Let ingest have a whole batch in flight (ingest.batch_max_messages): with\n\
         # mosquitto's default of 20, ingest commits 20 messages at a time.\n\
         max_inflight_messages {}\n\
         # Keep everything that waits for ingest while it is down (mosquitto's default,\n\
         # 1000 messages per session, drops the rest). Set `persistence true` and a\n\
         # `persistence_location` in mosquitto.conf so that it survives a restart.\n\
         max_queued_messages 0\n",
        abs.join("passwd").display(),
        abs.join("acl").display(),
        config.ingest.batch_max_messages.min(65_535)
    );
    let env = format!(
        "VIGIE_MQTT_USERNAME={}\nVIGIE_MQTT_PASSWORD={ingest_password}\n",
        auth::INGEST_USERNAME
    );
    write_private(&dir.join("passwd"), &passwd)?;
    write_private(&dir.join("acl"), &acl)?;
    write_private(&dir.join("vigie.conf"), &conf)?;
    write_private(&dir.join("ingest.env"), &env)?;
    eprintln!(
        "wrote {dir}/passwd ({} device(s) with credentials, plus {user}), {dir}/acl, \
         {dir}/vigie.conf and {dir}/ingest.env (ingest's new password: give it to \
         `vigie ingest` as VIGIE_MQTT_USERNAME/VIGIE_MQTT_PASSWORD). Reload mosquitto \
         (SIGHUP) to apply.",
        devices.len(),
        dir = dir.display(),
        user = auth::INGEST_USERNAME
    );
    Ok(())
}

/// Writes `text` to `path`, readable by its owner only (mosquitto refuses
/// world-readable password files in future versions and warns today).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.create(true).write(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        open.mode(0o600);
    }
    let mut f = open
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
