//! Login brute-force protection, as Grafana does it: after `max_failures` failed logins
//! for one user name, or from one client address, within `lockout` of each other,
//! further logins for that name or from that address are refused for `lockout` — even
//! with the right password, which is then not even checked.
//!
//! A successful login resets its user name's counter (not its address's: one address
//! may try many names). Failures older than `lockout` are forgotten, so an occasional
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
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
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

    /// Whether an attempt for `name` from `addr` must be refused now, and for how long.
    pub fn check(&self, name: &str, addr: Option<IpAddr>) -> Option<Locked> {
        if !self.enabled() {
            return None;
        }
        let now = self.clock.now();
        let entries = self.entries();
        let keys = [Some(user_key(name)), addr.map(Key::Addr)];
        keys.iter()
            .flatten()
            .filter_map(|k| entries.get(k)?.locked_until)
            .filter(|until| *until > now)
            .max()
            .map(|until| Locked {
                retry_after: until - now,
            })
    }

    /// Counts a failed attempt for `name` from `addr`; returns the lock it started, if
    /// this failure reached the limit for the name or the address.
    pub fn record_failure(&self, name: &str, addr: Option<IpAddr>) -> Option<Locked> {
        if !self.enabled() {
            return None;
        }
        let now = self.clock.now();
        let mut entries = self.entries();
        if entries.len() > PRUNE_ABOVE {
            self.prune(&mut entries, now);
        }
        let mut started = None;
        for key in [Some(user_key(name)), addr.map(Key::Addr)]
            .into_iter()
            .flatten()
        {
            let e = entries.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if self.expired(e, now) {
                *e = Entry {
                    failures: 0,
                    last_failure: now,
                    locked_until: None,
                };
            }
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

    /// A successful login: forgets `name`'s failures.
    pub fn record_success(&self, name: &str) {
        self.entries().remove(&user_key(name));
    }

    /// An entry whose lock is over and whose last failure is older than `lockout`.
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        e.locked_until.is_none_or(|u| u <= now)
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

    fn throttle() -> (Arc<ManualClock>, LoginThrottle) {
        let clock = Arc::new(ManualClock::new());
        let t = LoginThrottle::new(5, 5 * MIN, clock.clone());
        (clock, t)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn the_fifth_failure_locks_the_name_and_the_address_for_the_lockout() {
        let (clock, t) = throttle();
        for i in 1..=4 {
            assert_eq!(t.record_failure("alice", ip("10.0.0.1")), None, "{i}");
            assert_eq!(t.check("alice", ip("10.0.0.1")), None, "{i}");
        }
        assert!(t.record_failure("alice", ip("10.0.0.1")).is_some());
        let locked = t.check("alice", ip("10.0.0.9")).expect("name locked");
        assert_eq!(locked.minutes(), 5);
        assert!(t.check("bob", ip("10.0.0.1")).is_some(), "address locked");
        assert_eq!(t.check("bob", ip("10.0.0.2")), None);
        clock.advance(4 * MIN + Duration::from_secs(1));
        let locked = t.check("alice", None).expect("still locked");
        assert_eq!(locked.minutes(), 1);
        assert_eq!(locked.seconds(), 59);
        clock.advance(MIN);
        assert_eq!(t.check("alice", ip("10.0.0.1")), None);
        // After the lock, one new failure does not lock again at once.
        assert_eq!(t.record_failure("alice", ip("10.0.0.1")), None);
        assert_eq!(t.check("alice", ip("10.0.0.1")), None);
    }

    #[test]
    fn a_success_resets_the_names_counter_but_not_the_addresss() {
        let (_clock, t) = throttle();
        for _ in 0..4 {
            t.record_failure("alice", ip("10.0.0.1"));
        }
        t.record_success("alice");
        for _ in 0..4 {
            t.record_failure("alice", ip("10.0.0.2"));
        }
        assert_eq!(t.check("alice", None), None, "4 failures since success");
        t.record_failure("bob", ip("10.0.0.1"));
        assert!(
            t.check("carol", ip("10.0.0.1")).is_some(),
            "5 from 10.0.0.1"
        );
    }

    #[test]
    fn failures_further_apart_than_the_lockout_never_add_up() {
        let (clock, t) = throttle();
        for _ in 0..10 {
            assert_eq!(t.record_failure("alice", ip("10.0.0.1")), None);
            clock.advance(5 * MIN);
        }
        assert_eq!(t.check("alice", ip("10.0.0.1")), None);
    }

    #[test]
    fn expired_entries_are_pruned() {
        let (clock, t) = throttle();
        for i in 0..2000 {
            t.record_failure(&format!("user{i}"), None);
        }
        assert_eq!(t.tracked(), 2000);
        clock.advance(5 * MIN);
        t.record_failure("late", None);
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn zero_failures_allowed_means_no_protection() {
        let clock = Arc::new(ManualClock::new());
        let t = LoginThrottle::new(0, 5 * MIN, clock);
        for _ in 0..10 {
            assert_eq!(t.record_failure("alice", ip("10.0.0.1")), None);
        }
        assert_eq!(t.check("alice", ip("10.0.0.1")), None);
    }
}
