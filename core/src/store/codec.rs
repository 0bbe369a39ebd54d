//! Compact encoding of a run of samples of one series (a chunk), lossless.
//!
//! Layout: count, first instant, value scheme, then per sample the delta-of-delta of
//! its instant (zigzag varint: one byte for regular steps) and its value. Values are
//! stored as decimal integers when every value of the chunk is exactly `q / 10^d` for
//! some `d <= 6` (what meters send as decimal text), delta-encoded as zigzag varints;
//! otherwise as the XOR with the previous value's bits, zero bytes trimmed at both
//! ends. Decoding returns bit-identical floats. This module must never round a value:
//! a value that does not survive the decimal round trip selects the XOR scheme.

use super::Point;
use crate::time::Timestamp;

/// A chunk that cannot be decoded (corrupt file).
#[derive(Debug, thiserror::Error)]
#[error("corrupt sample chunk: {0}")]
pub(crate) struct CorruptChunk(&'static str);

const XOR: u8 = 0xFF;
const MAX_DECIMALS: u8 = 6;

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CorruptChunk> {
        let b = *self.buf.get(self.pos).ok_or(CorruptChunk("truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    fn uvarint(&mut self) -> Result<u64, CorruptChunk> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CorruptChunk("varint too long"))
    }
    fn ivarint(&mut self) -> Result<i64, CorruptChunk> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }
}

fn pow10(d: u8) -> f64 {
    10f64.powi(i32::from(d))
}

/// The smallest number of decimals that represents every value exactly, if any.
fn decimals(points: &[Point]) -> Option<u8> {
    (0..=MAX_DECIMALS).find(|&d| {
        let f = pow10(d);
        points.iter().all(|p| {
            let q = (p.value * f).round();
            q.abs() < 9.0e15 && ((q as i64) as f64 / f).to_bits() == p.value.to_bits()
        })
    })
}

/// Encodes points sorted by strictly increasing instant.
pub(crate) fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 3 + 16);
    put_uvarint(&mut out, points.len() as u64);
    let Some(first) = points.first() else {
        return out;
    };
    put_ivarint(&mut out, first.ts.0);
    let mut prev_delta = 0i64;
    for w in points.windows(2) {
        let delta = w[1].ts.0 - w[0].ts.0;
        put_ivarint(&mut out, delta.wrapping_sub(prev_delta));
        prev_delta = delta;
    }
    match decimals(points) {
        Some(d) => {
            out.push(d);
            let f = pow10(d);
            let mut prev = 0i64;
            for p in points {
                let q = (p.value * f).round() as i64;
                put_ivarint(&mut out, q.wrapping_sub(prev));
                prev = q;
            }
        }
        None => {
            out.push(XOR);
            let mut prev = 0u64;
            for p in points {
                let x = p.value.to_bits() ^ prev;
                prev = p.value.to_bits();
                if x == 0 {
                    out.push(0);
                    continue;
                }
                let lead = (x.leading_zeros() / 8) as usize;
                let trail = (x.trailing_zeros() / 8) as usize;
                out.push(0x80 | ((lead as u8) << 3) | trail as u8);
                let bytes = x.to_be_bytes();
                out.extend_from_slice(&bytes[lead..8 - trail]);
            }
        }
    }
    out
}

/// Decodes a chunk made by [`encode`].
pub(crate) fn decode(buf: &[u8]) -> Result<Vec<Point>, CorruptChunk> {
    let mut r = Reader { buf, pos: 0 };
    let n = usize::try_from(r.uvarint()?).map_err(|_| CorruptChunk("count"))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if n > buf.len() {
        return Err(CorruptChunk("count larger than the chunk"));
    }
    let mut ts = Vec::with_capacity(n);
    let mut t = r.ivarint()?;
    ts.push(t);
    let mut delta = 0i64;
    for _ in 1..n {
        delta = delta.wrapping_add(r.ivarint()?);
        t = t.wrapping_add(delta);
        ts.push(t);
    }
    let scheme = r.byte()?;
    let mut out = Vec::with_capacity(n);
    if scheme == XOR {
        let mut prev = 0u64;
        for &t in &ts {
            let h = r.byte()?;
            if h != 0 {
                let lead = usize::from((h >> 3) & 0x7);
                let trail = usize::from(h & 0x7);
                if lead + trail >= 8 {
                    return Err(CorruptChunk("xor header"));
                }
                let mut bytes = [0u8; 8];
                for b in bytes.iter_mut().take(8 - trail).skip(lead) {
                    *b = r.byte()?;
                }
                prev ^= u64::from_be_bytes(bytes);
            }
            out.push(Point {
                ts: Timestamp(t),
                value: f64::from_bits(prev),
            });
        }
    } else if scheme <= MAX_DECIMALS {
        let f = pow10(scheme);
        let mut q = 0i64;
        for &t in &ts {
            q = q.wrapping_add(r.ivarint()?);
            out.push(Point {
                ts: Timestamp(t),
                value: q as f64 / f,
            });
        }
    } else {
        return Err(CorruptChunk("value scheme"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pts(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter()
            .map(|&(t, value)| Point {
                ts: Timestamp(t),
                value,
            })
            .collect()
    }

    #[test]
    fn a_regular_decimal_meter_takes_about_two_bytes_per_sample() {
        // An index in tenths of kWh, advancing 0 to 1.2 kWh every 10 minutes.
        let mut tenths = 1_234_567i64;
        let points: Vec<Point> = (0..144)
            .map(|i| {
                tenths += i * 7 % 13;
                Point {
                    ts: Timestamp(1_764_460_800_000 + i * 600_000),
                    value: tenths as f64 / 10.0,
                }
            })
            .collect();
        let buf = encode(&points);
        assert!(buf.len() < 144 * 3, "{} bytes", buf.len());
        assert_eq!(decode(&buf).expect("decode"), points);
    }

    #[test]
    fn values_without_a_short_decimal_form_survive_bit_for_bit() {
        let points = pts(&[
            (0, 0.1 + 0.2),
            (1, f64::MAX),
            (5, -0.0),
            (6, f64::MIN_POSITIVE),
            (7, 1e-300),
        ]);
        let back = decode(&encode(&points)).expect("decode");
        for (a, b) in points.iter().zip(&back) {
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!(a.ts, b.ts);
        }
    }

    #[test]
    fn a_truncated_chunk_is_an_error_not_a_panic() {
        let buf = encode(&pts(&[(0, 1.5), (10, 2.5), (20, 3.25)]));
        for len in 0..buf.len() {
            assert!(decode(&buf[..len]).is_err(), "prefix {len}");
        }
    }

    proptest! {
        #[test]
        fn any_sorted_points_round_trip(
            steps in prop::collection::vec((1i64..10_000_000, any::<f64>(), 0u8..3), 0..200),
            start in -1_000_000_000_000i64..4_000_000_000_000,
        ) {
            let mut t = start;
            let points: Vec<Point> = steps
                .iter()
                .map(|&(dt, v, kind)| {
                    t += dt;
                    let value = match kind { 0 => (v % 1e6 * 100.0).round() / 100.0, _ => v };
                    Point { ts: Timestamp(t), value }
                })
                .collect();
            let back = decode(&encode(&points)).expect("decode");
            prop_assert_eq!(back.len(), points.len());
            for (a, b) in points.iter().zip(&back) {
                prop_assert_eq!(a.ts, b.ts);
                prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
            }
        }
    }
}
