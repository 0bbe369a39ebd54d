//! What every decoder's unit tests share: one receive instant, the default future skew,
//! and one way to route a topic and decode a payload through a decoder. Test-only:
//! never compiled into vigie, and must never hide a routing failure (it panics).

use std::time::Duration;

use vigie_core::Timestamp;

use super::{DecodeContext, Decoded, Decoder};

/// The instant the tests' messages are received: 2026-11-29T10:15:30Z.
pub(super) fn ctx() -> DecodeContext {
    DecodeContext {
        received_at: Timestamp::parse_rfc3339("2026-11-29T10:15:30Z").expect("a valid instant"),
        max_future_skew: Duration::from_secs(300),
    }
}

/// Routes `topic` through `decoder` (which must accept it) and decodes `payload`.
pub(super) fn decode_via(decoder: &dyn Decoder, topic: &str, payload: &str) -> Decoded {
    let route = decoder
        .route(topic)
        .unwrap_or_else(|| panic!("{topic}: not this decoder's topic"))
        .unwrap_or_else(|p| panic!("{topic}: refused: {p:?}"));
    decoder.decode(&route, payload.as_bytes(), &ctx())
}
