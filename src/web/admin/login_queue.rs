//! Who may wait for an admin password check, and how refusals are logged under a flood.
//!
//! Argon2id is slow on purpose and checks run one at a time, so guesses from many addresses
//! (each under its own throttle) would queue up in front of the admin. So:
//! - browsers without a device mark share at most `MAX_QUEUED_CHECKS` places; the next get 503
//!   at once, before anything is written;
//! - marked browsers (see `session::DEVICE_COOKIE`) do not take those places: a stolen mark is
//!   held to its own throttle bucket instead;
//! - a bucket over its failure limit is remembered for a minute, so its next attempts get 429
//!   from memory without a place or a database write;
//! - attempts still in their check count as failures until they end, so parallel guesses cannot
//!   outrun the throttle; an attempt that finds the bucket full only because of those waits for
//!   them (`Checking`, at most as many per bucket as it may fail) instead of being refused,
//!   without a place: right passwords sent at once all get in;
//! - refusals are counted and logged at most once a second: a flood sends thousands a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most admin logins waiting for or in their password check; more get 503. At about 20-30 ms a
/// check, a wait of well under a second.
pub(super) const MAX_QUEUED_CHECKS: usize = 16;
/// Longest a login waits for the checks of its bucket that hold the limit (then 503).
pub(super) const MAX_WAIT_FOR_CHECKS: Duration = Duration::from_secs(10);
/// Buckets remembered as over their limit; past this, new ones are left to the database.
const MAX_REMEMBERED: usize = 10_000;
/// How long a bucket over its limit is refused from memory (the throttle's window).
const OVER_LIMIT_SECONDS: i64 = 60;

/// The login queue's state, one per app (see `AppState`).
#[derive(Default)]
pub struct LoginQueue {
    /// Unmarked logins waiting for or in their password check.
    waiting: Arc<AtomicUsize>,
    /// Throttle buckets over their limit, and until when (Unix seconds).
    over_limit: Mutex<HashMap<String, i64>>,
    /// Attempts per bucket counted as failed while their password is still being checked.
    checking: Arc<Mutex<HashMap<String, Checks>>>,
    /// Refusals since the last log line, and the second of that line.
    busy: AtomicUsize,
    throttled: AtomicUsize,
    waited: AtomicUsize,
    logged_at: AtomicI64,
}

/// A place in the queue, given back when the login ends or its client leaves.
pub(super) struct QueuePlace(Option<Arc<AtomicUsize>>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if let Some(waiting) = &self.0 {
            waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A bucket's attempts in their check, and how many have ended while any was running.
#[derive(Default)]
struct Checks {
    running: usize,
    ended: u64,
}

/// An attempt counted in its bucket's `checking` until dropped (when its check has ended).
pub(super) struct Checking {
    bucket: String,
    checking: Arc<Mutex<HashMap<String, Checks>>>,
}

impl Checking {
    /// How many other attempts of the bucket are in their check, and how many have ended since
    /// this one began: between two readings, the checks that ran at any moment in between are
    /// those running at the second plus the difference in the ended ones.
    pub(super) fn others(&self) -> (usize, u64) {
        self.checking.lock().map_or((0, 0), |map| {
            map.get(&self.bucket)
                .map_or((0, 0), |c| (c.running.saturating_sub(1), c.ended))
        })
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        if let Ok(mut map) = self.checking.lock() {
            if let Some(checks) = map.get_mut(&self.bucket) {
                checks.running -= 1;
                checks.ended += 1;
                // Kept while this guard lives, so a bucket's `ended` does not restart under it.
                if checks.running == 0 {
                    map.remove(&self.bucket);
                }
            }
        }
    }
}

/// Why a login was refused before its password was checked.
#[derive(Clone, Copy)]
pub(super) enum Refused {
    /// The queue was full.
    Busy,
    /// Its bucket is over the failure limit.
    Throttled,
    /// It waited `MAX_WAIT_FOR_CHECKS` for its bucket's checks (or the database) in vain.
    Waited,
}

impl LoginQueue {
    /// A place: a marked browser always gets one of its own; others share the limited ones.
    pub(super) fn take(&self, marked: bool) -> Option<QueuePlace> {
        if marked {
            return Some(QueuePlace(None));
        }
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_QUEUED_CHECKS).then_some(n + 1)
            })
            .ok()
            .map(|_| QueuePlace(Some(Arc::clone(&self.waiting))))
    }

    /// Counts an attempt of `bucket` as in its check until the guard is dropped, unless `most`
    /// are already (`None`). Taken before its failure is counted in the database, so that others
    /// never see a counted failure that is not also counted here (they would take it for a
    /// decided one).
    pub(super) fn checking(&self, bucket: &str, most: i64) -> Option<Checking> {
        let mut map = self.checking.lock().ok()?;
        let checks = map.entry(bucket.to_string()).or_default();
        if i64::try_from(checks.running).unwrap_or(i64::MAX) >= most {
            return None;
        }
        checks.running += 1;
        Some(Checking {
            bucket: bucket.to_string(),
            checking: Arc::clone(&self.checking),
        })
    }

    /// True when `bucket` went over its limit less than a minute ago.
    pub(super) fn is_over_limit(&self, bucket: &str, now: i64) -> bool {
        self.over_limit
            .lock()
            .is_ok_and(|map| map.get(bucket).is_some_and(|&until| still_over(until, now)))
    }

    /// Remembers that `bucket` is over its limit, for a minute; false when it already was (a
    /// parallel attempt got there first), so that it is logged once.
    pub(super) fn remember_over_limit(&self, bucket: &str, now: i64) -> bool {
        let Ok(mut map) = self.over_limit.lock() else {
            return true;
        };
        if map.get(bucket).is_some_and(|&until| still_over(until, now)) {
            return false;
        }
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, until| still_over(*until, now));
        }
        if map.len() < MAX_REMEMBERED {
            map.insert(bucket.to_string(), now + OVER_LIMIT_SECONDS);
        }
        true
    }

    /// Counts a refusal and logs the counts at most once a second.
    pub(super) fn log_refusal(&self, why: Refused, now: i64) {
        match why {
            Refused::Busy => self.busy.fetch_add(1, Ordering::AcqRel),
            Refused::Throttled => self.throttled.fetch_add(1, Ordering::AcqRel),
            Refused::Waited => self.waited.fetch_add(1, Ordering::AcqRel),
        };
        let last = self.logged_at.load(Ordering::Acquire);
        if now > last
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let busy = self.busy.swap(0, Ordering::AcqRel);
            let throttled = self.throttled.swap(0, Ordering::AcqRel);
            let waited = self.waited.swap(0, Ordering::AcqRel);
            log::warn!(
                "admin logins refused since the last such line: {busy} with {MAX_QUEUED_CHECKS} \
                 password checks queued (503), {throttled} over their failure limit (429), \
                 {waited} after waiting {} s for their address's checks or the database (503)",
                MAX_WAIT_FOR_CHECKS.as_secs()
            );
        }
    }
}

/// Whether a bucket remembered over its limit `until` still is at `now`. An end further away
/// than a minute was set by a clock that has since been set back: it is over.
fn still_over(until: i64, now: i64) -> bool {
    until > now && until <= now + OVER_LIMIT_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_browsers_take_no_shared_place() {
        let queue = LoginQueue::default();
        let marked: Vec<_> = (0..100)
            .map(|_| queue.take(true).expect("a place"))
            .collect();
        let places: Vec<_> = (0..MAX_QUEUED_CHECKS)
            .map(|_| queue.take(false).expect("a shared place"))
            .collect();
        assert!(queue.take(false).is_none());
        assert!(queue.take(true).is_some(), "a marked browser still gets in");
        drop(marked);
        assert!(
            queue.take(false).is_none(),
            "marked places were never shared ones"
        );
        drop(places);
        assert!(queue.take(false).is_some(), "places come back");
    }

    #[test]
    fn attempts_in_their_check_are_counted_per_bucket_until_dropped() {
        let queue = LoginQueue::default();
        let first = queue.checking("192.0.2.1", 2).expect("room");
        assert_eq!(first.others(), (0, 0));
        let second = queue.checking("192.0.2.1", 2).expect("room");
        assert!(queue.checking("192.0.2.1", 2).is_none(), "at most 2");
        let elsewhere = queue.checking("192.0.2.2", 2).expect("another bucket");
        assert_eq!(first.others(), (1, 0));
        assert_eq!(elsewhere.others(), (0, 0));
        drop(second);
        assert_eq!(first.others(), (0, 1), "one ended while the first ran");
        assert!(queue.checking("192.0.2.1", 2).is_some(), "room again");
        drop(first);
        drop(elsewhere);
        assert!(
            queue.checking.lock().unwrap().is_empty(),
            "no bucket is kept"
        );
    }

    #[test]
    fn buckets_over_their_limit_are_remembered_for_a_minute() {
        let queue = LoginQueue::default();
        assert!(!queue.is_over_limit("192.0.2.1", 1000));
        assert!(queue.remember_over_limit("192.0.2.1", 1000));
        assert!(!queue.remember_over_limit("192.0.2.1", 1001), "once");
        assert!(queue.is_over_limit("192.0.2.1", 1059));
        assert!(!queue.is_over_limit("192.0.2.1", 1060));
        assert!(!queue.is_over_limit("192.0.2.2", 1000));
        // Bounded: expired entries make room, live ones are kept.
        for i in 0..MAX_REMEMBERED + 5 {
            queue.remember_over_limit(&format!("b{i}"), 2000);
        }
        assert!(queue.over_limit.lock().unwrap().len() <= MAX_REMEMBERED);
        queue.remember_over_limit("late", 3000);
        assert!(queue.is_over_limit("late", 3001));
        // Remembered by a clock an hour ahead that was then set right: over at once.
        queue.remember_over_limit("ahead", 3000 + 3600);
        assert!(!queue.is_over_limit("ahead", 3001));
        assert!(
            queue.remember_over_limit("ahead", 3001),
            "remembered afresh"
        );
        assert!(queue.is_over_limit("ahead", 3002));
    }
}
