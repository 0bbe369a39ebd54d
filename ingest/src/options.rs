//! Ingest options: which broker, which session, which topics, how batches are cut.
//!
//! Built from `vigie_core::config::{MqttConfig, IngestConfig}` plus the broker's host
//! and port ([`parse_mqtt_url`] reads `mqtt://host:port`). Defaults that the config
//! does not expose (reconnect backoff, batch idle gap) are fields with sensible values
//! that tests may tighten. This module must never log or print the password.

use std::fmt;
use std::time::Duration;

use vigie_core::config::{FormatsConfig, IngestConfig, MappingConfig, MqttConfig};
use vigie_core::payload::TOPIC_PREFIX;

use crate::error::IngestError;

/// The default MQTT port.
pub const DEFAULT_MQTT_PORT: u16 = 1883;

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
            .finish()
    }
}

impl IngestOptions {
    /// Options for the broker at `host:port`, from the configuration.
    pub fn from_config(
        mqtt: &MqttConfig,
        ingest: &IngestConfig,
        host: String,
        port: u16,
    ) -> IngestOptions {
        let credentials =
            (!mqtt.username.is_empty()).then(|| (mqtt.username.clone(), mqtt.password.clone()));
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
        }
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

/// Reads `mqtt://host:port` (also `tcp://`; the port defaults to 1883) into host and
/// port. Credentials in the URL are refused: they belong in `mqtt.username` and
/// `mqtt.password`, where they are not logged.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), IngestError> {
    let shown = || {
        // Never echo a password: cut at '@' when there is one.
        match url.rsplit_once('@') {
            Some((_, host)) => format!("mqtt://…@{host}"),
            None => url.to_string(),
        }
    };
    let bad = |reason: &str| IngestError::BadUrl {
        url: shown(),
        reason: reason.to_string(),
    };
    let rest = url
        .trim()
        .strip_prefix("mqtt://")
        .or_else(|| url.trim().strip_prefix("tcp://"))
        .ok_or_else(|| {
            if url.contains("://") {
                bad("unsupported scheme (TLS is not supported yet)")
            } else {
                bad("missing the mqtt:// scheme")
            }
        })?;
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
        None => DEFAULT_MQTT_PORT,
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
            ("mqtts://h:8883", "unsupported"),
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
    fn a_password_in_a_url_is_refused_and_never_echoed() {
        let e = parse_mqtt_url("mqtt://user:s3cret@h:1883")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("mqtt.password"), "{e}");
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
        assert_eq!(o.batch_max_messages, 500);
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
