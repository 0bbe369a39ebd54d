//! Ingest options: which broker, which session, which topics, how batches are cut.
//!
//! Built from `vigie_core::config::{MqttConfig, IngestConfig}` plus the broker's host
//! and port ([`parse_mqtt_url`] reads `mqtt://host:port` and `mqtts://host:port`).
//! Defaults that the config does not expose (reconnect backoff, batch idle gap) are
//! fields with sensible values that tests may tighten.
//!
//! TLS (`mqtts://`): [`IngestOptions::transport`] reads `mqtt.ca_file` (PEM) into a
//! rustls client configuration (ring provider, no OpenSSL), or trusts the bundled
//! Mozilla roots (webpki-roots) when no file is set. The server's certificate is always
//! verified, host name included. This module must never log or print the password,
//! and never turn certificate verification off.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use vigie_core::config::{FormatsConfig, IngestConfig, MappingConfig, MqttConfig};
use vigie_core::payload::TOPIC_PREFIX;

use crate::error::IngestError;

/// The default MQTT port.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// The default port of MQTT over TLS (`mqtts://`).
pub const DEFAULT_MQTTS_PORT: u16 = 8883;

/// TLS to the broker (`mqtts://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust (`mqtt.ca_file`); `None`
    /// trusts the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

/// Everything [`crate::run`] needs to know.
#[derive(Clone)]
pub struct IngestOptions {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; stable, so that the broker keeps the persistent session.
    pub client_id: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// Topic prefix of the native format (`vigie`).
    pub topic_prefix: String,
    /// Subscription filters, at QoS 1 (`vigie/+/telemetry`, `vigie/+/status`; a
    /// `$share/<group>/…` filter shares the load between ingest processes).
    pub topics: Vec<String>,
    /// Largest payload accepted; larger ones are quarantined as `too_large`.
    pub max_payload_bytes: usize,
    /// Most messages per committed batch (also the client's in-flight window).
    pub batch_max_messages: usize,
    /// Longest a batch waits after its first message before it is committed.
    pub batch_linger: Duration,
    /// A batch is also committed when no message arrived for this long: the broker
    /// has sent its whole in-flight window and waits for acks.
    pub batch_idle: Duration,
    /// Readings stamped further in the future than this are quarantined.
    pub max_future_skew: Duration,
    /// Device ecosystems decoded besides the native format (their topics are in
    /// `topics` when built by [`IngestOptions::from_config`]).
    pub formats: FormatsConfig,
    /// Device key → quantity tables of those formats.
    pub mapping: MappingConfig,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First delay before reconnecting, and before retrying a failed commit.
    pub retry_min: Duration,
    /// Longest delay between reconnection or commit attempts.
    pub retry_max: Duration,
    /// TLS to the broker (`mqtts://`); `None` = plain TCP.
    pub tls: Option<TlsOptions>,
}

impl fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("topic_prefix", &self.topic_prefix)
            .field("topics", &self.topics)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("batch_max_messages", &self.batch_max_messages)
            .field("batch_linger", &self.batch_linger)
            .field("batch_idle", &self.batch_idle)
            .field("max_future_skew", &self.max_future_skew)
            .field("formats", &self.formats)
            .field("mapping", &self.mapping)
            .field("keep_alive", &self.keep_alive)
            .field("retry_min", &self.retry_min)
            .field("retry_max", &self.retry_max)
            .field("tls", &self.tls)
            .finish()
    }
}

impl IngestOptions {
    /// Options for the broker at `host:port`, from the configuration. TLS is on when
    /// `mqtt.url` is `mqtts://…`, trusting `mqtt.ca_file` (or the bundled roots).
    pub fn from_config(
        mqtt: &MqttConfig,
        ingest: &IngestConfig,
        host: String,
        port: u16,
    ) -> IngestOptions {
        let credentials =
            (!mqtt.username.is_empty()).then(|| (mqtt.username.clone(), mqtt.password.clone()));
        let ca_file = mqtt.ca_file.trim();
        let tls = url_uses_tls(&mqtt.url).then(|| TlsOptions {
            ca_file: (!ca_file.is_empty()).then(|| PathBuf::from(ca_file)),
        });
        if tls.is_none() && !ca_file.is_empty() {
            tracing::warn!(
                "mqtt.ca_file {ca_file} is ignored: mqtt.url is not mqtts:// (TLS is off)"
            );
        }
        IngestOptions {
            host,
            port,
            client_id: mqtt.client_id.clone(),
            credentials,
            topic_prefix: TOPIC_PREFIX.to_string(),
            topics: shared_topics(
                &[
                    default_topics(TOPIC_PREFIX),
                    crate::decode::format_topics(&ingest.formats),
                ]
                .concat(),
                &mqtt.shared_group,
            ),
            max_payload_bytes: mqtt.max_payload_bytes,
            batch_max_messages: ingest.batch_max_messages,
            batch_linger: ingest.batch_linger.0,
            batch_idle: ingest.batch_linger.0.min(Duration::from_millis(2)),
            max_future_skew: ingest.max_future_skew.0,
            formats: ingest.formats.clone(),
            mapping: ingest.mapping.clone(),
            keep_alive: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            tls,
        }
    }

    /// The broker as a URL for logs: `mqtt://host:port` or `mqtts://host:port`.
    pub fn broker_url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The rumqttc transport: plain TCP, or TLS trusting `mqtt.ca_file` (read now, so
    /// that a missing or empty file stops start-up with an error naming it).
    pub fn transport(&self) -> Result<Transport, IngestError> {
        let Some(tls) = &self.tls else {
            return Ok(Transport::Tcp);
        };
        let roots = match &tls.ca_file {
            Some(path) => roots_from_pem_file(path)?,
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IngestError::Options {
                key: "mqtt.url",
                reason: format!("TLS set-up failed: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))))
    }

    /// Options with the configuration's defaults, for the broker at `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> IngestOptions {
        IngestOptions::from_config(
            &MqttConfig::default(),
            &IngestConfig::default(),
            host.into(),
            port,
        )
    }

    /// Checks the options can work; the error names the option.
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |key, reason: &str| {
            Err(IngestError::Options {
                key,
                reason: reason.to_string(),
            })
        };
        if self.client_id.trim().is_empty() {
            return bad(
                "mqtt.client_id",
                "empty; a persistent session needs a stable client id",
            );
        }
        if self.host.trim().is_empty() {
            return bad("mqtt.url", "empty broker host");
        }
        if self.topics.is_empty() {
            return bad("topics", "no subscription filter");
        }
        if let Some(t) = self.topics.iter().find(|t| !rumqttc::valid_filter(t)) {
            return bad("topics", &format!("{t:?} is not a valid MQTT topic filter"));
        }
        if self.batch_max_messages == 0 || self.batch_max_messages > usize::from(u16::MAX) {
            return bad("ingest.batch_max_messages", "expected 1 to 65535");
        }
        if self.max_payload_bytes == 0 {
            return bad("mqtt.max_payload_bytes", "expected more than 0");
        }
        if let Err(e) =
            crate::decode::Decoders::from_config(&self.topic_prefix, &self.formats, &self.mapping)
        {
            return bad("ingest.formats / ingest.mapping", &e.to_string());
        }
        if self.keep_alive < Duration::from_secs(1) {
            return bad("keep_alive", "expected at least 1s");
        }
        Ok(())
    }
}

/// The native subscription filters under `prefix`.
pub fn default_topics(prefix: &str) -> Vec<String> {
    vec![
        format!("{prefix}/+/telemetry"),
        format!("{prefix}/+/status"),
    ]
}

/// The filters as a shared subscription of `group` (`$share/<group>/<filter>`), so that
/// the broker gives each message to one process of the group; an empty group leaves
/// them unchanged.
pub fn shared_topics(filters: &[String], group: &str) -> Vec<String> {
    let group = group.trim();
    if group.is_empty() {
        return filters.to_vec();
    }
    filters
        .iter()
        .map(|f| format!("$share/{group}/{f}"))
        .collect()
}

/// The trust anchors in the PEM file `path` (`mqtt.ca_file`); the error names the file.
fn roots_from_pem_file(path: &std::path::Path) -> Result<rustls::RootCertStore, IngestError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| IngestError::CaFileRead {
        path: shown.clone(),
        source,
    })?;
    let bad = |reason: String| IngestError::CaFileContent {
        path: shown.clone(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("is not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    let found = certs.len();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(format!(
            "holds no usable X.509 certificate ({found} PEM certificate block(s) could not be parsed)"
        )));
    }
    Ok(roots)
}

/// Whether `url` asks for TLS (`mqtts://`).
pub fn url_uses_tls(url: &str) -> bool {
    url.trim().starts_with("mqtts://")
}

/// Reads `mqtt://host:port` (also `tcp://`; the port defaults to 1883) or
/// `mqtts://host:port` (TLS, the port defaults to 8883) into host and port;
/// [`url_uses_tls`] tells which. Credentials in the URL are refused: they belong in
/// `mqtt.username` and `mqtt.password`, where they are not logged.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), IngestError> {
    let shown = || {
        // Never echo a password: cut at '@' when there is one.
        match url.rsplit_once('@') {
            Some((before, host)) => {
                let scheme = before
                    .split_once("://")
                    .map(|(s, _)| s)
                    .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric()))
                    .unwrap_or("mqtt");
                format!("{scheme}://…@{host}")
            }
            None => url.to_string(),
        }
    };
    let bad = |reason: &str| IngestError::BadUrl {
        url: shown(),
        reason: reason.to_string(),
    };
    let trimmed = url.trim();
    let (rest, default_port) = if let Some(rest) = trimmed.strip_prefix("mqtts://") {
        (rest, DEFAULT_MQTTS_PORT)
    } else if let Some(rest) = trimmed
        .strip_prefix("mqtt://")
        .or_else(|| trimmed.strip_prefix("tcp://"))
    {
        (rest, DEFAULT_MQTT_PORT)
    } else if trimmed.contains("://") {
        return Err(bad("unsupported scheme (mqtt://, tcp:// or mqtts://)"));
    } else {
        return Err(bad("missing the mqtt:// or mqtts:// scheme"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') || authority.contains('#') {
        return Err(bad("a path or query is not allowed"));
    }
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not allowed; set mqtt.username and mqtt.password",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in IPv6 address"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after ]"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("port must be a number from 1 to 65535")),
            Ok(p) => p,
        },
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls_give_host_and_port() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://broker.example").unwrap(),
            ("broker.example".into(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("tcp://[::1]:1885/").unwrap(),
            ("::1".into(), 1885)
        );
    }

    #[test]
    fn a_bad_url_says_what_is_wrong_and_what_is_expected() {
        for (url, why) in [
            ("127.0.0.1:1883", "scheme"),
            ("ws://h:8000", "unsupported"),
            ("mqtt://h:port", "port"),
            ("mqtt://h:0", "port"),
            ("mqtt://:1883", "host"),
            ("mqtt://h:1883/x", "path"),
        ] {
            let e = parse_mqtt_url(url).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("mqtt://host:port"),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn mqtts_urls_default_to_port_8883_and_turn_tls_on() {
        assert_eq!(
            parse_mqtt_url("mqtts://broker.example").unwrap(),
            ("broker.example".into(), 8883)
        );
        assert_eq!(
            parse_mqtt_url("mqtts://[::1]:8884").unwrap(),
            ("::1".into(), 8884)
        );
        assert!(url_uses_tls("mqtts://broker.example"));
        assert!(!url_uses_tls("mqtt://broker.example"));
        let mqtt = MqttConfig {
            url: "mqtts://broker.example".into(),
            ca_file: "/etc/vigie/ca.pem".into(),
            ..MqttConfig::default()
        };
        let o = IngestOptions::from_config(
            &mqtt,
            &IngestConfig::default(),
            "broker.example".into(),
            8883,
        );
        assert_eq!(
            o.tls,
            Some(TlsOptions {
                ca_file: Some("/etc/vigie/ca.pem".into())
            })
        );
        assert_eq!(o.broker_url(), "mqtts://broker.example:8883");
    }

    #[test]
    fn a_plain_url_ignores_the_ca_file_and_uses_tcp() {
        let mqtt = MqttConfig {
            url: "mqtt://h:1883".into(),
            ca_file: "/etc/vigie/ca.pem".into(),
            ..MqttConfig::default()
        };
        let o = IngestOptions::from_config(&mqtt, &IngestConfig::default(), "h".into(), 1883);
        assert_eq!(o.tls, None);
        assert_eq!(o.broker_url(), "mqtt://h:1883");
        assert!(matches!(o.transport().unwrap(), Transport::Tcp));
    }

    fn tls_options(ca_file: Option<PathBuf>) -> IngestOptions {
        let mut o = IngestOptions::new("localhost", 8883);
        o.tls = Some(TlsOptions { ca_file });
        o
    }

    #[test]
    fn without_a_ca_file_tls_trusts_the_bundled_roots() {
        assert!(matches!(
            tls_options(None).transport().unwrap(),
            Transport::Tls(TlsConfiguration::Rustls(_))
        ));
    }

    #[test]
    fn a_ca_file_with_a_certificate_gives_a_tls_transport() {
        let ca = rcgen::generate_simple_self_signed(vec!["test CA".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert!(matches!(
            tls_options(Some(path)).transport().unwrap(),
            Transport::Tls(TlsConfiguration::Rustls(_))
        ));
    }

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let e = tls_options(Some("/nonexistent/ca.pem".into()))
            .transport()
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("cannot read mqtt.ca_file /nonexistent/ca.pem: No such file"),
            "{e}"
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content, why) in [
            ("empty.pem", "", "holds no PEM certificate"),
            (
                "text.pem",
                "not a certificate\n",
                "holds no PEM certificate",
            ),
            (
                "key.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "holds no PEM certificate",
            ),
            (
                "cut.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
                "is not valid PEM",
            ),
            (
                "junk.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "holds no usable X.509 certificate",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let e = tls_options(Some(path.clone()))
                .transport()
                .err()
                .unwrap()
                .to_string();
            let expected = format!("mqtt.ca_file {} {why}", path.display());
            assert!(e.starts_with(&expected), "{name}: {e}");
        }
    }

    #[test]
    fn a_password_in_a_url_is_refused_and_never_echoed() {
        let e = parse_mqtt_url("mqtt://user:s3cret@h:1883")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("mqtt.password"), "{e}");
        let e = parse_mqtt_url("mqtts://user:s3cret@h")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("mqtts://…@h"), "{e}");
    }

    #[test]
    fn options_from_config_follow_it_and_hide_the_password() {
        let mqtt = MqttConfig {
            username: "ingest".into(),
            password: "hunter2".into(),
            ..MqttConfig::default()
        };
        let o = IngestOptions::from_config(&mqtt, &IngestConfig::default(), "h".into(), 1);
        assert_eq!(o.topics, ["vigie/+/telemetry", "vigie/+/status"]);
        assert_eq!(o.batch_max_messages, 1000);
        assert!(o.validate().is_ok());
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn a_shared_group_turns_every_filter_into_a_shared_subscription() {
        let mqtt = MqttConfig {
            shared_group: "vigie".into(),
            ..MqttConfig::default()
        };
        let o = IngestOptions::from_config(&mqtt, &IngestConfig::default(), "h".into(), 1);
        assert_eq!(
            o.topics,
            [
                "$share/vigie/vigie/+/telemetry",
                "$share/vigie/vigie/+/status"
            ]
        );
        assert!(o.validate().is_ok());
    }

    #[test]
    fn an_empty_client_id_is_refused_by_name() {
        let mut o = IngestOptions::new("h", 1883);
        o.client_id = String::new();
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("mqtt.client_id"), "{e}");
    }

    #[test]
    fn an_invalid_topic_filter_is_refused_and_a_shared_one_accepted() {
        let mut o = IngestOptions::new("h", 1883);
        o.topics = vec!["vigie/#/telemetry".into()];
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("vigie/#/telemetry"), "{e}");
        o.topics = vec!["$share/vigie/vigie/+/telemetry".into()];
        assert!(o.validate().is_ok());
    }
}
