//! The pure part of meter normalisation: places one series' readings among its stored
//! points and decides each one's fate (stored value, duplicate, refusal), detecting
//! rollovers and meter swaps to a higher index. No I/O: the caller brings the stored
//! points, the known index segments and the suspects left by earlier batches (kept in
//! memory, or rebuilt from the refused readings read back from quarantine by
//! [`recovered_suspects`]).
//!
//! **Swap to a higher index.** A reading after the series' last point whose step from
//! it is impossible for the meter is refused (`out_of_range`) and remembered as a
//! *suspect*. When [`SWAP_CONFIRMATIONS`] suspects in a row are consistent with each
//! other (each step between them plausible and not negative) while each is still
//! impossible against the last stored point, they are the first readings of a new
//! meter: a [`Segment`] starts at the first one, whose offset makes the jump a zero
//! step; those readings are accepted (the ones refused in earlier batches are replayed
//! from quarantine by the caller). Once time makes the jump look possible, a reading
//! still joins the chain when it continues it and is far above the old meter's pace
//! ([`PACE_FACTOR`]). A single spike followed by readings on the old trend leaves no
//! chain: it stays refused, the trend goes on. A later step down (reset) of a
//! meter stored with an offset opens a segment that stores its readings as published
//! again, so the stored index never goes negative. This module must never accept
//! a jump as a swap on a single reading, nor turn a jump into consumption.

use vigie_core::Timestamp;
use vigie_core::registry::QuarantineReason;
use vigie_core::store::Point;

use super::CounterJob;
use crate::decode::Problem;

/// Shortest interval a flow is computed over (index resolution makes shorter ones noisy).
const MIN_FLOW_INTERVAL_MS: i64 = 60_000;
/// Consistent impossible readings in a row that make a meter swap (the jump and two
/// more readings of the new meter).
pub(crate) const SWAP_CONFIRMATIONS: usize = 3;
/// Suspects kept per series (the oldest are forgotten).
const MAX_SUSPECTS: usize = 16;
/// A reading plausible after the last stored point continues a jump only if its step
/// is this many times what the old meter's pace predicts (a reading on the old trend
/// after a mis-stamped or spiking one is not a new meter).
const PACE_FACTOR: f64 = 10.0;

/// From `since` on, stored value = published (unwrapped) value − `offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Segment {
    pub(crate) since: Timestamp,
    pub(crate) offset: f64,
}

/// A reading refused as an impossible jump after the series' last point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Suspect {
    pub(crate) ts: Timestamp,
    /// Its would-be stored value (with the offset in force when it was refused).
    pub(crate) value: f64,
    /// Its index among the jobs of this call; `None` for an earlier batch's (in
    /// quarantine).
    pub(crate) job: Option<usize>,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Stored with this (unwrapped) value.
    Accepted(f64),
    /// A sample already exists at this instant (its value is kept; writing it again is
    /// a counted no-op).
    Duplicate(f64),
    /// Refused.
    Rejected(Problem),
}

/// The result of [`normalise_series`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesRun {
    /// One per job, in the jobs' order.
    pub(crate) outcomes: Vec<Outcome>,
    /// The stored points with the accepted ones.
    pub(crate) timeline: Vec<Point>,
    /// Segments detected, and whether readings of the new meter wait in quarantine.
    pub(crate) new_segments: Vec<(Segment, bool)>,
    /// Suspects left for the next batch (all with `job: None`).
    pub(crate) suspects: Vec<Suspect>,
}

/// The offset in force at `ts` (segments sorted by `since`).
pub(crate) fn offset_at(segments: &[Segment], ts: Timestamp) -> f64 {
    segments
        .iter()
        .rev()
        .find(|s| s.since <= ts)
        .map_or(0.0, |s| s.offset)
}

/// Places each job (sorted by time) among the stored points `context` (sorted) and
/// decides its fate, with the series' `segments` (sorted) and earlier `suspects`.
pub(crate) fn normalise_series(
    context: &[Point],
    segments: &[Segment],
    suspects: Vec<Suspect>,
    jobs: &[&CounterJob],
) -> SeriesRun {
    let mut run = SeriesRun {
        outcomes: Vec::with_capacity(jobs.len()),
        timeline: context.to_vec(),
        new_segments: Vec::new(),
        suspects,
    };
    let mut segments = segments.to_vec();
    for (k, job) in jobs.iter().enumerate() {
        let outcome = place(&mut run, &mut segments, k, job);
        run.outcomes.push(outcome);
    }
    run.suspects.iter_mut().for_each(|s| s.job = None);
    let excess = run.suspects.len().saturating_sub(MAX_SUSPECTS);
    run.suspects.drain(..excess);
    run
}

/// Decides the fate of job number `k`.
fn place(run: &mut SeriesRun, segments: &mut Vec<Segment>, k: usize, job: &CounterJob) -> Outcome {
    let i = match run.timeline.binary_search_by_key(&job.ts, |p| p.ts) {
        Ok(i) => return Outcome::Duplicate(run.timeline[i].value),
        Err(i) => i,
    };
    let prev = i.checked_sub(1).map(|j| run.timeline[j]);
    let next = run.timeline.get(i).copied();
    if let Some(m) = job.rollover
        && job.raw >= m
    {
        return Outcome::Rejected(Problem::new(
            QuarantineReason::OutOfRange,
            format!(
                "{} {} = {} at {} is not below the meter's index rollover {m}; not stored",
                job.device, job.quantity, job.raw, job.ts
            ),
        ));
    }
    // A wrapped step is a rollover only if the meter could have made it.
    let max_raw_step = |a: Timestamp, b: Timestamp| {
        job.max_flow_per_hour.map_or(f64::INFINITY, |max| {
            max * (b.0 - a.0).max(MIN_FLOW_INTERVAL_MS) as f64 / 3_600_000.0 / job.factor()
        })
    };
    let limit_prev = prev.map_or(f64::INFINITY, |p| max_raw_step(p.ts, job.ts));
    let limit_next = next.map_or(f64::INFINITY, |n| max_raw_step(job.ts, n.ts));
    // Unwrap in the frame of the published values: neighbours plus this segment's offset.
    let offset = offset_at(segments, job.ts);
    let shifted = |p: Point| Point {
        ts: p.ts,
        value: p.value + offset,
    };
    let c = unwrap(
        prev.map(shifted),
        next.map(shifted),
        job.raw,
        job.rollover,
        limit_prev,
        limit_next,
    );
    let point = Point {
        ts: job.ts,
        value: c - offset,
    };
    if let Some(p) = prev
        && let Some(problem) = too_fast(job, p, point)
    {
        // Only a jump after the last stored point may open a new segment.
        if next.is_some() {
            return Outcome::Rejected(problem);
        }
        return match swap(run, segments, k, job, p, point) {
            Some(value) => Outcome::Accepted(value),
            None => Outcome::Rejected(problem),
        };
    }
    if let Some(problem) = next.and_then(|n| too_fast(job, point, n)) {
        return Outcome::Rejected(problem);
    }
    // Plausible from the last stored point, but continuing readings refused as a jump
    // (the longer the wait, the more a jump looks possible) and far above the old
    // meter's recent pace: part of their chain.
    if let Some(p) = prev
        && next.is_none()
        && point.value - p.value > PACE_FACTOR * old_pace(&run.timeline[..i], job.ts)
        && let Some(last) = run
            .suspects
            .iter()
            .rev()
            .find(|s| s.ts > p.ts && s.ts < job.ts)
        && consistent(
            job,
            *last,
            Suspect {
                ts: job.ts,
                value: point.value,
                job: None,
            },
        )
    {
        let problem = Problem::new(
            QuarantineReason::OutOfRange,
            format!(
                "{} {} = {} at {} continues the impossible jump at {} (a meter swap?); \
                 not stored until {SWAP_CONFIRMATIONS} consistent readings confirm it",
                job.device, job.quantity, job.raw, job.ts, last.ts
            ),
        );
        return match swap(run, segments, k, job, p, point) {
            Some(value) => Outcome::Accepted(value),
            None => Outcome::Rejected(problem),
        };
    }
    let mut point = point;
    if let Some(p) = prev
        && next.is_none()
        && offset != 0.0
        && point.value < p.value
    {
        // A reset or a swap downwards of a meter stored with an offset: a new segment
        // that stores the reading as published again (or, if the reading is above the
        // last stored value, a zero step), never a positive step.
        let segment = Segment {
            since: job.ts,
            offset: (c - p.value).max(0.0),
        };
        let pos = segments.partition_point(|s| s.since <= segment.since);
        segments.insert(pos, segment);
        run.new_segments.push((segment, false));
        point.value = c - segment.offset;
    }
    run.timeline.insert(i, point);
    // A reading on the trend after a jump: the jump was a spike.
    run.suspects.retain(|s| s.ts > job.ts);
    Outcome::Accepted(point.value)
}

/// The suspects that readings refused earlier (read back from quarantine: `(ts, raw)`
/// of `template`'s device and quantity) would have left: those after the last stored
/// point of `context` (sorted), valued as [`place`] values a reading there, with
/// `segments` (sorted). Readings at or before the last stored point, or not below the
/// rollover, are no suspects.
pub(crate) fn recovered_suspects(
    context: &[Point],
    segments: &[Segment],
    template: &CounterJob,
    readings: &[(Timestamp, f64)],
) -> Vec<Suspect> {
    let Some(&prev) = context.last() else {
        return Vec::new();
    };
    let mut out: Vec<Suspect> = readings
        .iter()
        .filter(|(ts, raw)| *ts > prev.ts && template.rollover.is_none_or(|m| *raw < m))
        .map(|&(ts, raw)| {
            let limit_prev = template.max_flow_per_hour.map_or(f64::INFINITY, |max| {
                max * (ts.0 - prev.ts.0).max(MIN_FLOW_INTERVAL_MS) as f64
                    / 3_600_000.0
                    / template.factor()
            });
            let offset = offset_at(segments, ts);
            let shifted = Point {
                ts: prev.ts,
                value: prev.value + offset,
            };
            let c = unwrap(
                Some(shifted),
                None,
                raw,
                template.rollover,
                limit_prev,
                f64::INFINITY,
            );
            Suspect {
                ts,
                value: c - offset,
                job: None,
            }
        })
        .collect();
    out.sort_by(|a, b| a.ts.cmp(&b.ts).then(a.value.total_cmp(&b.value)));
    out.dedup_by_key(|s| s.ts);
    out
}

/// What the meter's last two stored points (`before` ends with them) predict it
/// counts from the last one to `ts`; 0 without two points.
fn old_pace(before: &[Point], ts: Timestamp) -> f64 {
    match before {
        [.., a, b] => {
            let rate = (b.value - a.value).max(0.0) / (b.ts.0 - a.ts.0).max(1) as f64;
            rate * (ts.0 - b.ts.0) as f64
        }
        _ => 0.0,
    }
}

/// Records `point` (an impossible jump after the last stored point `prev`) as a
/// suspect; if it completes a chain of [`SWAP_CONFIRMATIONS`], opens a segment at the
/// chain's first reading, accepts the chain's readings of this call and returns the
/// value `point` is stored with.
fn swap(
    run: &mut SeriesRun,
    segments: &mut Vec<Segment>,
    k: usize,
    job: &CounterJob,
    prev: Point,
    point: Point,
) -> Option<f64> {
    let suspects = &mut run.suspects;
    suspects.retain(|s| s.ts > prev.ts && s.ts != point.ts);
    suspects.push(Suspect {
        ts: point.ts,
        value: point.value,
        job: Some(k),
    });
    suspects.sort_by_key(|s| s.ts);
    // The longest run of consistent readings ending with the newest one, from the
    // first of them that is impossible against the last stored point (the jump).
    let mut start = suspects.len() - 1;
    while start > 0 && consistent(job, suspects[start - 1], suspects[start]) {
        start -= 1;
    }
    let impossible = |s: &Suspect| {
        too_fast(
            job,
            prev,
            Point {
                ts: s.ts,
                value: s.value,
            },
        )
        .is_some()
    };
    start += suspects[start..].iter().position(impossible)?;
    let newest = suspects.last().map(|s| s.ts);
    if suspects.len() - start < SWAP_CONFIRMATIONS || newest != Some(point.ts) {
        return None;
    }
    let chain: Vec<Suspect> = suspects.drain(start..).collect();
    suspects.clear();
    let first = chain[0];
    let jump = first.value - prev.value;
    let segment = Segment {
        since: first.ts,
        offset: offset_at(segments, first.ts) + jump,
    };
    let pos = segments.partition_point(|s| s.since <= segment.since);
    segments.insert(pos, segment);
    run.new_segments
        .push((segment, chain.iter().any(|s| s.job.is_none())));
    // Readings of this call join the timeline; earlier ones are in quarantine.
    for s in &chain {
        let p = Point {
            ts: s.ts,
            value: s.value - jump,
        };
        if let Some(j) = s.job
            && j < run.outcomes.len()
        {
            run.outcomes[j] = Outcome::Accepted(p.value);
        }
        if s.job.is_some()
            && let Err(i) = run.timeline.binary_search_by_key(&p.ts, |q| q.ts)
        {
            run.timeline.insert(i, p);
        }
    }
    Some(point.value - jump)
}

/// Whether `b` can follow `a` on one meter: a step neither negative nor too fast.
fn consistent(job: &CounterJob, a: Suspect, b: Suspect) -> bool {
    let step = b.value - a.value;
    let pa = Point {
        ts: a.ts,
        value: a.value,
    };
    let pb = Point {
        ts: b.ts,
        value: b.value,
    };
    b.ts > a.ts && step >= 0.0 && too_fast(job, pa, pb).is_none()
}

/// The unwrapped value of `raw` between its neighbours (see the module doc of
/// `normalise`); a wrapped step larger than `limit_prev` (from the previous point) or
/// `limit_next` (to the next one) is not a rollover.
fn unwrap(
    prev: Option<Point>,
    next: Option<Point>,
    raw: f64,
    rollover: Option<f64>,
    limit_prev: f64,
    limit_next: f64,
) -> f64 {
    let Some(m) = rollover else { return raw };
    match (prev, next) {
        (Some(p), _) => {
            let k = (p.value / m).floor().max(0.0);
            let c = k * m + raw;
            if c >= p.value {
                // Slightly below a previous rollover (a glitch or a reset near the top):
                // the smaller move wins.
                if c - p.value > m / 2.0 && c - m >= 0.0 {
                    c - m
                } else {
                    c
                }
            } else {
                let wrapped = c + m - p.value;
                if wrapped <= m / 2.0 && wrapped <= limit_prev {
                    c + m
                } else {
                    c
                }
            }
        }
        (None, Some(n)) => {
            let k = (n.value / m).floor().max(0.0);
            let c = k * m + raw;
            let wrapped = n.value - (c - m);
            if c > n.value && k >= 1.0 && wrapped <= m / 2.0 && wrapped <= limit_next {
                c - m
            } else {
                c
            }
        }
        (None, None) => raw,
    }
}

/// A problem if the step from `a` to `b` is positive and faster than the meter allows.
fn too_fast(job: &CounterJob, a: Point, b: Point) -> Option<Problem> {
    let max = job.max_flow_per_hour?;
    let step = (b.value - a.value) * job.factor();
    let dt_ms = (b.ts.0 - a.ts.0).max(MIN_FLOW_INTERVAL_MS);
    let limit = max * dt_ms as f64 / 3_600_000.0;
    if step <= limit {
        return None;
    }
    let unit = job.index_quantity().unit();
    let flow = step * 3_600_000.0 / dt_ms as f64;
    Some(Problem::new(
        QuarantineReason::OutOfRange,
        format!(
            "{} {} = {} at {}: a step of {} {unit} between {} and {} ({}) implies {} {unit}/h, \
             above the meter's maximum of {max} {unit}/h; not stored",
            job.device,
            job.quantity,
            job.raw,
            job.ts,
            round3(step),
            a.ts,
            b.ts,
            human_interval(b.ts.0 - a.ts.0),
            round3(flow),
        ),
    ))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn human_interval(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}
