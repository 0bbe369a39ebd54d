//! Configuration: plain serde structures with defaults, and typed values.
//!
//! Only the binary reads files and the environment; libraries receive these structs.
//! Every field has a default so that an empty file is a valid configuration (embedded
//! broker, embedded store, outbox folder). Unknown keys are refused so that a typo is
//! an error, not a silently ignored setting. This module must never read the disk.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole configuration of a vigie process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where data lives.
    pub storage: StorageConfig,
    /// The web server.
    pub http: HttpConfig,
    /// The MQTT broker and client.
    pub mqtt: MqttConfig,
    /// Ingest batching and validation.
    pub ingest: IngestConfig,
    /// The simulator that `vigie run` starts on an empty data dir.
    pub simulator: SimulatorConfig,
    /// Remote time-series backend (InfluxDB v2 write API).
    pub tsdb: TsdbConfig,
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding `vigie.db` (registry and embedded time series).
    pub data_dir: PathBuf,
    /// Days of raw samples kept by the embedded store; older raw samples are deleted
    /// once a day while hourly and daily rollups are kept for ever. 0 = keep raw for ever.
    pub raw_retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            raw_retention_days: 0,
        }
    }
}

/// Web server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the dashboard and API listen on.
    pub addr: Addr,
    /// Lifetime of a login session.
    pub session_ttl: HumanDuration,
    /// Mark the session cookie `Secure` (browsers then send it over HTTPS only). Turn
    /// on when vigie is served behind an HTTPS reverse proxy.
    pub secure_cookies: bool,
    /// Failed logins allowed for one user name or one client address before further
    /// attempts are refused for `login_lockout` (brute-force protection).
    pub login_max_failures: u32,
    /// How long logins stay refused after `login_max_failures` failures.
    pub login_lockout: HumanDuration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: Addr(SocketAddr::from(([127, 0, 0, 1], 8080))),
            session_ttl: HumanDuration(Duration::from_secs(12 * 3600)),
            secure_cookies: false,
            login_max_failures: 5,
            login_lockout: HumanDuration(Duration::from_secs(5 * 60)),
        }
    }
}

/// MQTT settings (`Debug` hides the password).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// External broker URL (`mqtt://host:port`, or `mqtts://host:port` for TLS); empty =
    /// start the embedded broker.
    pub url: String,
    /// PEM file of the certificate authorities trusted for `mqtts://` (empty = the
    /// bundled Mozilla roots).
    pub ca_file: String,
    /// Where the embedded broker listens.
    pub listen: Addr,
    /// Client id of the ingest session (stable, so the broker keeps the session).
    pub client_id: String,
    /// Username for the external broker (empty = none).
    pub username: String,
    /// Password for the external broker (never logged).
    pub password: String,
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Shared-subscription group (`$share/<group>/…`) so that several ingest
    /// processes split the load; empty = a plain subscription. Each process then needs
    /// its own `client_id`.
    pub shared_group: String,
    /// The embedded broker refuses clients without a valid username and password
    /// (device credentials from the registry; ingest's own is generated at start).
    pub device_auth: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            ca_file: String::new(),
            listen: Addr(SocketAddr::from(([127, 0, 0, 1], 1883))),
            client_id: "vigie-ingest".into(),
            username: String::new(),
            password: String::new(),
            max_payload_bytes: 1 << 20,
            shared_group: String::new(),
            device_auth: false,
        }
    }
}

/// What `Debug` shows of a secret: whether it is set, never its value.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("listen", &self.listen)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("shared_group", &self.shared_group)
            .field("device_auth", &self.device_auth)
            .finish()
    }
}

/// Ingest settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Most messages per committed batch; also the MQTT in-flight window.
    pub batch_max_messages: usize,
    /// How long a batch waits for more messages before it is committed.
    pub batch_linger: HumanDuration,
    /// Samples stamped further in the future than this are refused.
    pub max_future_skew: HumanDuration,
    /// Device ecosystems decoded besides vigie's native JSON (`[ingest.formats.*]`).
    pub formats: FormatsConfig,
    /// Device key → quantity tables, added to the built-in ones (`[ingest.mapping.*]`).
    pub mapping: MappingConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max_messages: 1000,
            batch_linger: HumanDuration(Duration::from_millis(20)),
            max_future_skew: HumanDuration(Duration::from_secs(300)),
            formats: FormatsConfig::default(),
            mapping: MappingConfig::default(),
        }
    }
}

/// Which device ecosystems ingest decodes, and under which topics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatsConfig {
    /// Zigbee2MQTT: `<base_topic>/<friendly_name>`.
    pub zigbee2mqtt: Zigbee2MqttFormat,
    /// Tasmota: `<prefix>/<topic>/SENSOR`, `STATE`, `LWT`.
    pub tasmota: TasmotaFormat,
    /// The Things Stack v3 uplinks: `v3/<app>@<tenant>/devices/<device>/up`.
    pub ttn: TtnFormat,
    /// Telegraf's MQTT output, line protocol or JSON.
    pub telegraf: TelegrafFormat,
}

/// Zigbee2MQTT settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Zigbee2MqttFormat {
    /// Whether ingest subscribes to and decodes this format.
    pub enabled: bool,
    /// Zigbee2MQTT's `mqtt.base_topic`.
    pub base_topic: String,
}

impl Default for Zigbee2MqttFormat {
    fn default() -> Self {
        Zigbee2MqttFormat {
            enabled: false,
            base_topic: "zigbee2mqtt".into(),
        }
    }
}

/// Tasmota settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasmotaFormat {
    /// Whether ingest subscribes to and decodes this format.
    pub enabled: bool,
    /// Tasmota's telemetry prefix (`Prefix3`, `tele` by default).
    pub prefix: String,
}

impl Default for TasmotaFormat {
    fn default() -> Self {
        TasmotaFormat {
            enabled: false,
            prefix: "tele".into(),
        }
    }
}

/// The Things Stack settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtnFormat {
    /// Whether ingest subscribes to and decodes this format.
    pub enabled: bool,
    /// First topic level of the stack's MQTT server (`v3`).
    pub prefix: String,
}

impl Default for TtnFormat {
    fn default() -> Self {
        TtnFormat {
            enabled: false,
            prefix: "v3".into(),
        }
    }
}

/// Telegraf settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegrafFormat {
    /// Whether ingest subscribes to and decodes this format.
    pub enabled: bool,
    /// First topic level of Telegraf's MQTT output (`topic_prefix`); ingest
    /// subscribes to `<topic_prefix>/#`.
    pub topic_prefix: String,
    /// Tags naming the device, tried in order (the first present wins).
    pub device_tags: Vec<String>,
    /// Line-protocol timestamp precision: `ns`, `us`, `ms` or `s`.
    pub precision: String,
    /// JSON timestamp unit (`json_timestamp_units`): `ns`, `us`, `ms` or `s`.
    pub json_timestamp_units: String,
}

impl Default for TelegrafFormat {
    fn default() -> Self {
        TelegrafFormat {
            enabled: false,
            topic_prefix: "telegraf".into(),
            device_tags: vec!["device".into(), "host".into()],
            precision: "ns".into(),
            json_timestamp_units: "s".into(),
        }
    }
}

/// Device key → quantity tables, per format and per device; they add to (and
/// override) ingest's built-in tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingConfig {
    /// Zigbee2MQTT payload keys (`temperature`, `co2`, `update.*`).
    pub zigbee2mqtt: BTreeMap<String, MappingEntry>,
    /// Tasmota `Sensor.Field` or `Field` keys (`ENERGY.Total`, `Temperature`).
    pub tasmota: BTreeMap<String, MappingEntry>,
    /// The Things Stack `decoded_payload` keys (nested keys joined with `.`).
    pub ttn: BTreeMap<String, MappingEntry>,
    /// Telegraf `measurement.field` or `field` keys.
    pub telegraf: BTreeMap<String, MappingEntry>,
    /// Per device id: keys of that device's format, checked before the format's table.
    pub devices: BTreeMap<String, BTreeMap<String, MappingEntry>>,
}

/// Where one device key goes: `"co2_ppm"`, `"ignore"`, or
/// `{ quantity = "gas_m3", scale = 0.01, offset = 0.0 }` (value × scale + offset).
#[derive(Debug, Clone, PartialEq)]
pub struct MappingEntry {
    /// A quantity name, or `ignore`.
    pub quantity: String,
    /// Multiplies the device's value.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

impl MappingEntry {
    /// The text that marks a key as deliberately ignored.
    pub const IGNORE: &'static str = "ignore";
}

impl<'de> Deserialize<'de> for MappingEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            quantity: String,
            #[serde(default = "one")]
            scale: f64,
            #[serde(default)]
            offset: f64,
        }
        fn one() -> f64 {
            1.0
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MappingEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a quantity name such as \"co2_ppm\", \"ignore\", or a table { quantity = \"gas_m3\", scale = 0.01 }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MappingEntry, E> {
                Ok(MappingEntry {
                    quantity: s.to_string(),
                    scale: 1.0,
                    offset: 0.0,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MappingEntry, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(MappingEntry {
                    quantity: t.quantity,
                    scale: t.scale,
                    offset: t.offset,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Simulator settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Number of simulated buildings.
    pub buildings: usize,
    /// Seed of the random generator, so runs repeat.
    pub seed: u64,
    /// Days of history published on first start.
    pub backfill_days: u32,
    /// Interval between two live readings of one device.
    pub interval: HumanDuration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            buildings: 3,
            seed: 42,
            backfill_days: 365,
            interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// Remote time-series backend settings; an empty `url` means the embedded store
/// (`Debug` hides the token).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbConfig {
    /// Base URL of the InfluxDB v2 compatible server.
    pub url: String,
    /// API token (never logged).
    pub token: String,
    /// Organisation (ignored by VictoriaMetrics).
    pub org: String,
    /// Bucket (ignored by VictoriaMetrics).
    pub bucket: String,
    /// Query dialect: `flux` or `prometheus`.
    pub dialect: String,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        TsdbConfig {
            url: String::new(),
            token: String::new(),
            org: String::new(),
            bucket: String::new(),
            dialect: "prometheus".into(),
        }
    }
}

impl std::fmt::Debug for TsdbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsdbConfig")
            .field("url", &self.url)
            .field("token", &redacted(&self.token))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("dialect", &self.dialect)
            .finish()
    }
}

/// A socket address that deserialises with a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr(pub SocketAddr);

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<SocketAddr>()
            .map(Addr)
            .map_err(|_| format!("found {s:?}, expected an address like 127.0.0.1:8080"))
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A duration written for humans: `250ms`, `10s`, `5m`, `2h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("found {s:?}, expected a duration like 250ms, 10s, 5m, 2h or 30d");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let ms = match unit {
            "ms" => n,
            "s" => n.checked_mul(1000).ok_or_else(err)?,
            "m" => n.checked_mul(60_000).ok_or_else(err)?,
            "h" => n.checked_mul(3_600_000).ok_or_else(err)?,
            "d" => n.checked_mul(86_400_000).ok_or_else(err)?,
            _ => return Err(err()),
        };
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_mqtt_password_nor_the_tsdb_token() {
        let mut config = Config::default();
        config.mqtt.username = "ingest".into();
        config.mqtt.password = "mqtt-secret-4711".into();
        config.tsdb.token = "tsdb-secret-0815".into();
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("mqtt-secret-4711"), "{shown}");
        assert!(!shown.contains("tsdb-secret-0815"), "{shown}");
        assert!(
            shown.contains("ingest"),
            "other fields stay visible: {shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(format!("{:?}", Config::default()).contains("<empty>"));
    }

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(
            "250ms".parse(),
            Ok(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!("5m".parse(), Ok(HumanDuration(Duration::from_secs(300))));
        assert_eq!(
            "30d".parse(),
            Ok(HumanDuration(Duration::from_secs(30 * 86400)))
        );
    }

    #[test]
    fn a_bad_duration_says_what_was_found_and_what_is_expected() {
        let err = "ten seconds".parse::<HumanDuration>().unwrap_err();
        assert!(
            err.contains("\"ten seconds\"") && err.contains("expected a duration"),
            "{err}"
        );
        assert!("10".parse::<HumanDuration>().is_err());
        assert!("10y".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn a_bad_address_says_what_was_found() {
        let err = "localhost".parse::<Addr>().unwrap_err();
        assert!(
            err.contains("\"localhost\"") && err.contains("127.0.0.1:8080"),
            "{err}"
        );
    }
}
