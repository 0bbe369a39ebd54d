//! Login brute-force protection, as Grafana does it: after `max_failures` failed logins
//! for one user name, or from one client address (IPv6: its /64), within `lockout` of
//! each other, further logins for that name or from that address are refused for
//! `lockout` — even with the right password, which is then not even checked.
//!
//! An attempt counts from the moment it is admitted ([`LoginThrottle::begin`]), while
//! its password is still being checked, so a burst of parallel requests gets no more
//! tries than sequential ones. A successful login resets its user name's counter (not
//! its address's: one address may try many names). Failures older than `lockout` are forgotten, so an occasional
//! typo never adds up to a lockout. Expired entries are pruned as new failures come in,
//! and keys are truncated, so the memory an attacker can make it hold stays bounded by
//! what it can try within one lockout window.
//!
//! The state is **per process and in memory**: it is lost on restart, and with several
//! dashboard processes behind a load balancer each one counts for itself (an attacker
//! then gets `max_failures` attempts per process). Time comes from a [`Clock`], so tests
//! move it by hand instead of sleeping. This module must never see nor keep a password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where the throttle reads the time (monotonic).
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The longest part of a user name kept as a key (longer names share their prefix's
/// counter).
const MAX_NAME_CHARS: usize = 128;

/// Above this many entries, every new failure first prunes the expired ones.
const PRUNE_ABOVE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Settled failures within the window.
    failures: u32,
    /// Attempts admitted and not settled yet (their password is being checked).
    pending: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            pending: 0,
            last_failure: now,
            locked_until: None,
        }
    }
}

/// Why a login attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// How long until attempts are accepted again.
    pub retry_after: Duration,
}

impl Locked {
    /// The wait in whole minutes, rounded up (at least 1).
    pub fn minutes(&self) -> u64 {
        self.retry_after.as_secs().div_ceil(60).max(1)
    }

    /// The wait in whole seconds, rounded up (at least 1), for `Retry-After`.
    pub fn seconds(&self) -> u64 {
        let s = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            s + 1
        } else {
            s.max(1)
        }
    }
}

/// Failed-login counters per user name and per client address (see the module doc).
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("max_failures", &self.max_failures)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

fn user_key(name: &str) -> Key {
    Key::User(name.chars().take(MAX_NAME_CHARS).collect())
}

/// The address key of a client: an IPv4 address as is (also written IPv4-mapped), an
/// IPv6 address by its /64 network, since one host usually holds a whole /64 and could
/// otherwise change address at every attempt.
fn addr_key(addr: IpAddr) -> Key {
    match addr {
        IpAddr::V4(v4) => Key::Addr(IpAddr::V4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Addr(IpAddr::V4(v4)),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Addr(IpAddr::V6(network.into()))
            }
        },
    }
}

/// A login attempt admitted by [`LoginThrottle::begin`]. Until it is settled it counts
/// against the limit, so that attempts checked in parallel cannot overshoot it; one
/// dropped unsettled (the client went away mid-check) counts as a failure.
#[derive(Debug)]
#[must_use = "settle the attempt with failed(), succeeded() or abandoned()"]
pub struct Attempt {
    throttle: Arc<LoginThrottle>,
    keys: Vec<Key>,
    settled: bool,
}

impl Attempt {
    /// The password was wrong (or the user unknown): one more failure for the name and
    /// the address; returns the lock this failure started, if any.
    pub fn failed(mut self) -> Option<Locked> {
        self.settled = true;
        self.throttle.settle_failure(&self.keys)
    }

    /// The login succeeded: the user name's failures are forgotten (not the address's).
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut entries = self.throttle.entries();
        for key in &self.keys {
            match key {
                Key::User(_) => {
                    entries.remove(key);
                }
                Key::Addr(_) => {
                    if let Some(e) = entries.get_mut(key) {
                        e.pending = e.pending.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// The password could not be checked (internal error): the attempt counts for
    /// nothing.
    pub fn abandoned(mut self) {
        self.settled = true;
        let mut entries = self.throttle.entries();
        for key in &self.keys {
            if let Some(e) = entries.get_mut(key) {
                e.pending = e.pending.saturating_sub(1);
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle_failure(&self.keys);
        }
    }
}

impl LoginThrottle {
    /// A throttle locking for `lockout` after `max_failures` failures (0 = never lock).
    pub fn new(max_failures: u32, lockout: Duration, clock: Arc<dyn Clock>) -> LoginThrottle {
        LoginThrottle {
            max_failures,
            lockout,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A throttle with the same limits and no failures, reading time from `clock`.
    pub fn on_clock(&self, clock: Arc<dyn Clock>) -> LoginThrottle {
        LoginThrottle::new(self.max_failures, self.lockout, clock)
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // A poisoned lock only means another request panicked mid-update; the counters
        // are still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enabled(&self) -> bool {
        self.max_failures > 0 && !self.lockout.is_zero()
    }

    /// Admits an attempt for `name` from `addr`, or refuses it (and for how long) when
    /// the name or the address is locked out, or when the attempts already being
    /// checked would reach the limit.
    pub fn begin(self: &Arc<Self>, name: &str, addr: Option<IpAddr>) -> Result<Attempt, Locked> {
        let keys: Vec<Key> = [Some(user_key(name)), addr.map(addr_key)]
            .into_iter()
            .flatten()
            .collect();
        if !self.enabled() {
            return Ok(Attempt {
                throttle: Arc::clone(self),
                keys: Vec::new(),
                settled: true,
            });
        }
        let now = self.clock.now();
        let mut entries = self.entries();
        if entries.len() > PRUNE_ABOVE {
            self.prune(&mut entries, now);
        }
        let mut refused: Option<Duration> = None;
        for key in &keys {
            let Some(e) = entries.get_mut(key) else {
                continue;
            };
            if self.expired(e, now) {
                *e = Entry::new(now);
            }
            let wait = match e.locked_until {
                Some(until) if until > now => Some(until - now),
                _ if e.failures.saturating_add(e.pending) >= self.max_failures => {
                    Some(self.lockout)
                }
                _ => None,
            };
            refused = refused.max(wait);
        }
        if let Some(retry_after) = refused {
            return Err(Locked { retry_after });
        }
        for key in &keys {
            let e = entries
                .entry(key.clone())
                .or_insert_with(|| Entry::new(now));
            e.pending = e.pending.saturating_add(1);
        }
        Ok(Attempt {
            throttle: Arc::clone(self),
            keys,
            settled: false,
        })
    }

    fn settle_failure(&self, keys: &[Key]) -> Option<Locked> {
        let now = self.clock.now();
        let mut entries = self.entries();
        let mut started = None;
        for key in keys {
            let e = entries
                .entry(key.clone())
                .or_insert_with(|| Entry::new(now));
            e.pending = e.pending.saturating_sub(1);
            e.failures = e.failures.saturating_add(1);
            e.last_failure = now;
            if e.failures >= self.max_failures && e.locked_until.is_none_or(|u| u <= now) {
                e.locked_until = Some(now + self.lockout);
                started = Some(Locked {
                    retry_after: self.lockout,
                });
            }
        }
        started
    }

    /// An entry with no attempt in flight, whose lock is over and whose last failure
    /// is older than `lockout`.
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        e.pending == 0
            && e.locked_until.is_none_or(|u| u <= now)
            && now.saturating_duration_since(e.last_failure) >= self.lockout
    }

    fn prune(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        entries.retain(|_, e| !self.expired(e, now));
    }

    /// How many names and addresses are currently tracked (after pruning).
    pub fn tracked(&self) -> usize {
        let now = self.clock.now();
        let mut entries = self.entries();
        self.prune(&mut entries, now);
        entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn throttle() -> (Arc<ManualClock>, Arc<LoginThrottle>) {
        let clock = Arc::new(ManualClock::new());
        let t = Arc::new(LoginThrottle::new(5, 5 * MIN, clock.clone()));
        (clock, t)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    /// One wrong password: `Err` if refused before, else the lock it started.
    fn fail(t: &Arc<LoginThrottle>, name: &str, addr: &str) -> Result<Option<Locked>, Locked> {
        t.begin(name, ip(addr)).map(Attempt::failed)
    }

    fn refused(t: &Arc<LoginThrottle>, name: &str, addr: &str) -> Option<Locked> {
        t.begin(name, ip(addr)).map(Attempt::abandoned).err()
    }

    #[test]
    fn the_fifth_failure_locks_the_name_and_the_address_for_the_lockout() {
        let (clock, t) = throttle();
        for i in 1..=4 {
            assert_eq!(fail(&t, "alice", "10.0.0.1"), Ok(None), "{i}");
        }
        assert!(matches!(fail(&t, "alice", "10.0.0.1"), Ok(Some(_))));
        let locked = refused(&t, "alice", "10.0.0.9").expect("name locked");
        assert_eq!(locked.minutes(), 5);
        assert!(refused(&t, "bob", "10.0.0.1").is_some(), "address locked");
        assert_eq!(refused(&t, "bob", "10.0.0.2"), None);
        clock.advance(4 * MIN + Duration::from_secs(1));
        let locked = refused(&t, "alice", "10.0.0.3").expect("still locked");
        assert_eq!(locked.minutes(), 1);
        assert_eq!(locked.seconds(), 59);
        clock.advance(MIN);
        assert_eq!(refused(&t, "alice", "10.0.0.1"), None);
        // After the lock, one new failure does not lock again at once.
        assert_eq!(fail(&t, "alice", "10.0.0.1"), Ok(None));
        assert_eq!(refused(&t, "alice", "10.0.0.1"), None);
    }

    #[test]
    fn an_ipv6_host_cannot_escape_the_address_limit_by_changing_address_in_its_64() {
        let (_clock, t) = throttle();
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            fail(&t, name, &format!("2001:db8:1:2::{i}")).expect("admitted");
        }
        assert!(
            refused(&t, "f", "2001:db8:1:2:ffff::9").is_some(),
            "same /64, new address"
        );
        assert_eq!(
            refused(&t, "f", "2001:db8:1:3::1"),
            None,
            "another /64 is another client"
        );
        for name in ["a", "b", "c", "d", "e"] {
            fail(&t, name, "::ffff:192.0.2.7").expect("admitted");
        }
        assert!(
            refused(&t, "f", "192.0.2.7").is_some(),
            "IPv4-mapped is the IPv4 address"
        );
    }

    #[test]
    fn a_success_resets_the_names_counter_but_not_the_addresss() {
        let (_clock, t) = throttle();
        for _ in 0..4 {
            fail(&t, "alice", "10.0.0.1").expect("admitted");
        }
        t.begin("alice", ip("10.0.0.2"))
            .expect("admitted")
            .succeeded();
        for _ in 0..4 {
            fail(&t, "alice", "10.0.0.3").expect("admitted");
        }
        assert_eq!(refused(&t, "alice", "10.0.0.4"), None, "4 since success");
        fail(&t, "bob", "10.0.0.1").expect("admitted");
        assert!(
            refused(&t, "carol", "10.0.0.1").is_some(),
            "5 from 10.0.0.1"
        );
    }

    #[test]
    fn attempts_in_flight_count_so_parallel_ones_cannot_overshoot_the_limit() {
        let (_clock, t) = throttle();
        let in_flight: Vec<Attempt> = (0..5)
            .map(|_| t.begin("alice", ip("10.0.0.1")).expect("admitted"))
            .collect();
        assert!(
            refused(&t, "alice", "10.0.0.2").is_some(),
            "6th in parallel"
        );
        // A checked attempt that could not complete counts for nothing...
        let mut in_flight = in_flight.into_iter();
        in_flight.next().expect("one").abandoned();
        assert_eq!(refused(&t, "alice", "10.0.0.2"), None);
        // ...and one dropped unsettled (the client left) counts as a failure.
        for a in in_flight {
            drop(a);
        }
        assert_eq!(
            fail(&t, "alice", "10.0.0.2"),
            Ok(Some(Locked {
                retry_after: 5 * MIN
            }))
        );
    }

    #[test]
    fn failures_further_apart_than_the_lockout_never_add_up() {
        let (clock, t) = throttle();
        for _ in 0..10 {
            assert_eq!(fail(&t, "alice", "10.0.0.1"), Ok(None));
            clock.advance(5 * MIN);
        }
    }

    #[test]
    fn expired_entries_are_pruned() {
        let (clock, t) = throttle();
        for i in 0..2000 {
            t.begin(&format!("user{i}"), None)
                .expect("admitted")
                .failed();
        }
        assert_eq!(t.tracked(), 2000);
        clock.advance(5 * MIN);
        t.begin("late", None).expect("admitted").failed();
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn zero_failures_allowed_means_no_protection() {
        let clock = Arc::new(ManualClock::new());
        let t = Arc::new(LoginThrottle::new(0, 5 * MIN, clock));
        for _ in 0..10 {
            assert_eq!(fail(&t, "alice", "10.0.0.1"), Ok(None));
        }
        assert_eq!(t.tracked(), 0);
    }
}
