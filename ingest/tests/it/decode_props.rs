//! Decoders never panic, whatever the topic and the bytes.

use std::time::Duration;

use proptest::prelude::*;
use vigie_core::{DeviceId, Timestamp};
use vigie_ingest::{DecodeContext, Decoder, Decoders, MessageKind, NativeDecoder, Route};

fn ctx() -> DecodeContext {
    DecodeContext {
        received_at: Timestamp(1_764_411_300_000),
        max_future_skew: Duration::from_secs(300),
    }
}

fn decode_both_kinds(payload: &[u8]) {
    let d = NativeDecoder::default();
    for kind in [MessageKind::Telemetry, MessageKind::Status] {
        let route = Route {
            device: DeviceId::new("dev-1").unwrap(),
            kind,
        };
        let out = d.decode(&route, payload, &ctx());
        for r in &out.readings {
            assert!(r.quantity.check(r.value).is_ok(), "{r:?} out of range");
            assert!(r.ts <= ctx().latest_acceptable(), "{r:?} in the future");
        }
    }
}

/// JSON values shaped like telemetry, with plenty of wrong turns.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_0-9 :TZ.+-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("co2_ppm"),
            Just("electricity_kwh"),
            Just("humidity_pct"),
            Just("2026-11-29T10:15:00Z"),
            Just("online"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ts".to_string()),
                    Just("values".to_string()),
                    Just("co2_ppm".to_string()),
                    Just("temperature_c".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_both_kinds(&bytes);
    }

    #[test]
    fn json_ish_strings_never_panic(s in r#"[\[\]{}",:0-9a-z_.eE+\- \\]{0,200}"#) {
        decode_both_kinds(s.as_bytes());
    }

    #[test]
    fn telemetry_shaped_json_never_panics(v in json_value()) {
        decode_both_kinds(v.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_topics_are_routed_or_refused_without_panic(topic in "\\PC{0,60}", tail in "(telemetry|status|x)?") {
        let decoders = Decoders::native("vigie");
        let _ = decoders.route(&topic);
        let _ = decoders.route(&format!("vigie/{topic}/{tail}"));
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    decode_both_kinds(deep.as_bytes());
    let deep_obj = r#"{"values":"#.repeat(50_000);
    decode_both_kinds(deep_obj.as_bytes());
}
