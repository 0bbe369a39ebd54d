//! Payload decoders: from an MQTT topic and untrusted bytes to readings and problems.
//!
//! A [`Decoder`] knows one payload format: vigie's native JSON, Zigbee2MQTT, Tasmota,
//! The Things Stack uplinks and Telegraf (line protocol and JSON), one file each; the
//! ecosystem formats map device keys to quantities through [`Mapping`] tables built
//! from the configuration ([`Decoders::from_config`]). It does two
//! things: [`Decoder::route`] recognises its topics and names the device, and
//! [`Decoder::decode`] turns a payload into [`Reading`]s plus [`Problem`]s. A problem
//! with one value never costs the other values of the message. Decoders are pure: they
//! touch neither the registry nor the store, so they can be property-tested alone.
//!
//! A decoder must never panic, whatever the bytes, and must never drop anything
//! silently: what it cannot use becomes a [`Problem`] with a [`QuarantineReason`].

mod formats;
mod lineproto;
mod mapping;
mod native;
mod stamp;
mod tasmota;
mod telegraf;
#[cfg(test)]
mod test_support;
mod ttn;
mod zigbee2mqtt;

use std::fmt;
use std::time::Duration;

pub use formats::format_topics;
pub use mapping::{Mapping, MappingError};
pub use native::NativeDecoder;
pub use tasmota::TasmotaDecoder;
pub use telegraf::TelegrafDecoder;
pub use ttn::TtnDecoder;
use vigie_core::registry::QuarantineReason;
use vigie_core::{DeviceId, Quantity, Timestamp};
pub use zigbee2mqtt::Zigbee2MqttDecoder;

/// What a message on a recognised topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Measurements.
    Telemetry,
    /// The device's availability (`online` / `offline`, usually retained and the last will).
    Status,
}

/// Where a topic leads: which device, and what kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The device named by the topic.
    pub device: DeviceId,
    /// What the message carries.
    pub kind: MessageKind,
}

/// What a decoder needs besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext {
    /// When ingest received the message: the timestamp of readings that carry none.
    pub received_at: Timestamp,
    /// Readings stamped later than `received_at + max_future_skew` are refused.
    pub max_future_skew: Duration,
}

impl DecodeContext {
    /// The latest acceptable reading timestamp.
    pub fn latest_acceptable(&self) -> Timestamp {
        let skew = i64::try_from(self.max_future_skew.as_millis()).unwrap_or(i64::MAX);
        self.received_at.plus_millis(skew)
    }
}

/// One decoded value, in the quantity's own unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// When it was measured.
    pub ts: Timestamp,
    /// What it measures.
    pub quantity: Quantity,
    /// The value (finite, within the quantity's physical range).
    pub value: f64,
}

/// Something in a message that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The reason, as counted and shown.
    pub reason: QuarantineReason,
    /// A human detail (`"co2" is not a known quantity`).
    pub detail: String,
}

impl Problem {
    /// A problem with a reason and a detail.
    pub fn new(reason: QuarantineReason, detail: impl Into<String>) -> Problem {
        Problem {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// Everything one message yielded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Usable readings.
    pub readings: Vec<Reading>,
    /// What could not be used.
    pub problems: Vec<Problem>,
    /// For status messages: `Some(true)` online, `Some(false)` offline.
    pub online: Option<bool>,
    /// The device the payload names when it is not the route's (Telegraf's `device`
    /// tag under a per-host topic): readings, problems and status are that device's.
    pub device: Option<DeviceId>,
}

impl Decoded {
    /// A message that yielded only one problem.
    pub fn problem(reason: QuarantineReason, detail: impl Into<String>) -> Decoded {
        Decoded {
            problems: vec![Problem::new(reason, detail)],
            ..Decoded::default()
        }
    }
}

/// One payload format.
pub trait Decoder: Send + Sync + fmt::Debug + 'static {
    /// Short name, as stored in a device's `format` (`native`).
    fn format(&self) -> &'static str;

    /// `None` if the topic is not this format's; otherwise the route, or a
    /// [`QuarantineReason::BadTopic`] problem when the topic is this format's but
    /// unusable (an invalid device id, an unknown suffix).
    fn route(&self, topic: &str) -> Option<Result<Route, Problem>>;

    /// Decodes one payload received on `route`. Never panics.
    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded;
}

/// The decoders ingest tries, in order; the first that recognises a topic wins.
#[derive(Debug)]
pub struct Decoders {
    list: Vec<Box<dyn Decoder>>,
}

impl Decoders {
    /// No decoder at all (every topic is a [`QuarantineReason::BadTopic`]).
    pub fn empty() -> Decoders {
        Decoders { list: Vec::new() }
    }

    /// The native decoder only, under `prefix` (normally `vigie`).
    pub fn native(prefix: &str) -> Decoders {
        Decoders::empty().with(NativeDecoder::new(prefix))
    }

    /// Adds a decoder, tried after the ones already present.
    pub fn with(mut self, decoder: impl Decoder) -> Decoders {
        self.list.push(Box::new(decoder));
        self
    }

    /// The decoder of `topic` and its route, or a `BadTopic` problem.
    pub fn route(&self, topic: &str) -> Result<(&dyn Decoder, Route), Problem> {
        for d in &self.list {
            match d.route(topic) {
                Some(Ok(route)) => return Ok((d.as_ref(), route)),
                Some(Err(problem)) => return Err(problem),
                None => {}
            }
        }
        Err(Problem::new(
            QuarantineReason::BadTopic,
            format!(
                "topic {:?} matches no known pattern",
                truncate_chars(topic, 120)
            ),
        ))
    }
}

/// A `bad_topic` problem naming the topic (cut to 120 characters), why it is refused
/// and, when given, the topic shape the decoder expects.
pub(crate) fn bad_topic(topic: &str, why: &str, expected: Option<&str>) -> Problem {
    let topic = truncate_chars(topic, 120);
    Problem::new(
        QuarantineReason::BadTopic,
        match expected {
            Some(e) => format!("topic {topic:?}: {why}; expected {e}"),
            None => format!("topic {topic:?}: {why}"),
        },
    )
}

/// At most `n` characters of `s`, with `…` when cut (for details shown to people).
pub(crate) fn truncate_chars(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_no_decoder_knows_is_a_bad_topic() {
        let d = Decoders::native("vigie");
        let err = d.route("zigbee2mqtt/kitchen").unwrap_err();
        assert_eq!(err.reason, QuarantineReason::BadTopic);
        assert!(err.detail.contains("zigbee2mqtt/kitchen"), "{err}");
    }

    #[test]
    fn the_native_decoder_routes_its_topics() {
        let d = Decoders::native("vigie");
        let (dec, route) = d.route("vigie/elec-01/telemetry").unwrap();
        assert_eq!(dec.format(), "native");
        assert_eq!(route.device.as_str(), "elec-01");
        assert_eq!(route.kind, MessageKind::Telemetry);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate_chars("abcdef", 3), "abc…");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("ééé", 2), "éé…");
    }
}
