//! Timestamp checks shared by the ecosystem decoders.
//!
//! Every decoded instant must lie between 2000-01-01 and 9999-12-31 (earlier means a
//! unit mistake or an unsynchronised clock) and no later than reception plus the
//! allowed skew. Tasmota's `Time` is local wall-clock time without an offset: it is read
//! in Europe/Paris, DST gaps and repeated hours included, without ever panicking. This
//! module must never shift a valid instant.

use chrono::{LocalResult, NaiveDateTime, TimeZone};
use vigie_core::Timestamp;
use vigie_core::registry::QuarantineReason;
use vigie_core::time::PARIS;

use super::{DecodeContext, Problem, truncate_chars};

/// 2000-01-01T00:00:00Z.
pub(crate) const EARLIEST_MS: i64 = 946_684_800_000;
/// 9999-12-31T23:59:59.999Z.
pub(crate) const LATEST_MS: i64 = 253_402_300_799_999;

/// `ts` if plausible and not too far in the future; `what` names its source.
pub(crate) fn accept(ts: Timestamp, ctx: &DecodeContext, what: &str) -> Result<Timestamp, Problem> {
    if ts.0 < EARLIEST_MS || ts.0 > LATEST_MS {
        return Err(Problem::new(
            QuarantineReason::BadTimestamp,
            format!("{what} {ts} is outside 2000–9999 (clock not set, or wrong unit?)"),
        ));
    }
    if ts > ctx.latest_acceptable() {
        return Err(Problem::new(
            QuarantineReason::FutureTimestamp,
            format!(
                "{what} {ts} is more than {}s after reception ({})",
                ctx.max_future_skew.as_secs(),
                ctx.received_at
            ),
        ));
    }
    Ok(ts)
}

/// An epoch count in `unit_ns` nanoseconds per unit, as milliseconds (floor), or
/// `None` when it does not fit.
pub(crate) fn epoch_to_ms(count: i128, unit_ns: i128) -> Option<Timestamp> {
    let ns = count.checked_mul(unit_ns)?;
    let ms = ns.div_euclid(1_000_000);
    i64::try_from(ms).ok().map(Timestamp)
}

/// Reads Tasmota's `Time`: RFC 3339 with an offset (`SetOption52 1`) as is, otherwise
/// `YYYY-MM-DDTHH:MM:SS[.fff]` as Europe/Paris wall-clock time. In the hour repeated
/// when summer time ends, the earlier instant (summer time) is taken; a time in the
/// hour skipped when summer time starts is read with the winter offset (+01:00), as a
/// clock that has not jumped yet would mean it.
pub(crate) fn paris_local(s: &str) -> Result<Timestamp, String> {
    if let Ok(ts) = Timestamp::parse_rfc3339(s) {
        return Ok(ts);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|e| {
            format!(
                "Time {:?} is not YYYY-MM-DDTHH:MM:SS ({e})",
                truncate_chars(s, 40)
            )
        })?;
    let utc = match PARIS.from_local_datetime(&naive) {
        LocalResult::Single(dt) => dt.naive_utc(),
        LocalResult::Ambiguous(first, _) => first.naive_utc(),
        LocalResult::None => naive - chrono::Duration::hours(1),
    };
    Ok(Timestamp(utc.and_utc().timestamp_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn paris_local_time_follows_winter_and_summer_offsets() {
        assert_eq!(
            paris_local("2026-01-15T12:00:00"),
            Ok(at("2026-01-15T11:00:00Z"))
        );
        assert_eq!(
            paris_local("2026-07-15T12:00:00"),
            Ok(at("2026-07-15T10:00:00Z"))
        );
        assert_eq!(
            paris_local("2026-07-15T12:00:00+02:00"),
            Ok(at("2026-07-15T10:00:00Z"))
        );
    }

    #[test]
    fn dst_gaps_and_repeated_hours_resolve_without_panic() {
        // 2026-03-29: 02:00 → 03:00 (02:30 does not exist); read with +01:00.
        assert_eq!(
            paris_local("2026-03-29T02:30:00"),
            Ok(at("2026-03-29T01:30:00Z"))
        );
        // 2026-10-25: 02:30 happens twice; the first (summer, +02:00) is taken.
        assert_eq!(
            paris_local("2026-10-25T02:30:00"),
            Ok(at("2026-10-25T00:30:00Z"))
        );
        assert!(paris_local("yesterday").unwrap_err().contains("yesterday"));
        assert!(paris_local("2026-02-30T00:00:00").is_err());
    }

    #[test]
    fn epoch_counts_convert_without_overflow() {
        assert_eq!(
            epoch_to_ms(1_764_411_300, 1_000_000_000),
            Some(Timestamp(1_764_411_300_000))
        );
        assert_eq!(
            epoch_to_ms(1_764_411_300_123_456_789, 1),
            Some(Timestamp(1_764_411_300_123))
        );
        assert_eq!(epoch_to_ms(i128::MAX, 1_000), None);
    }
}
