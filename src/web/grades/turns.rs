//! One grade call to the LMS at a time per session: a double click waits for the first call and
//! then goes, and a burst of requests from one session is refused rather than turned into a burst
//! of calls signed with the consumer's secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rocket::tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

use crate::error::LtiError;

/// Calls of one session that may wait behind the one in flight.
const WAITING_PER_SESSION: usize = 2;

/// The sessions with a grade call in flight, each with a lock its calls take in turn.
#[derive(Default)]
pub(super) struct Turns(Mutex<HashMap<String, Arc<TurnLock<()>>>>);

/// A session's turn to call the LMS; dropping it lets the session's next call go.
pub struct Turn<'a> {
    turns: &'a Turns,
    session_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<TurnLock<()>>>> {
        // The map stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the session's turn, or refuses when enough of its calls already wait. Says
    /// whether it had to wait behind another call.
    pub(super) async fn take(&self, session_id: &str) -> Result<(Turn<'_>, bool), LtiError> {
        let lock = {
            let mut map = self.map();
            // Locks only the map holds are of sessions whose last waiting call was given up.
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
            let lock = map.entry(session_id.to_string()).or_default().clone();
            // The map's reference, ours, and one for each call in flight or waiting.
            if Arc::strong_count(&lock) - 2 > WAITING_PER_SESSION {
                return Err(LtiError::GradeCallsQueued);
            }
            lock
        };
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (lock.lock_owned().await, true),
        };
        let turn = Turn {
            turns: self,
            session_id: session_id.to_string(),
            guard: Some(guard),
        };
        Ok((turn, waited))
    }

    /// How many sessions have a call in flight or waiting (for tests).
    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.map().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let lock = OwnedMutexGuard::mutex(&guard).clone();
        drop(guard);
        let mut map = self.turns.map();
        // Only the map's reference and this one left: no call of the session waits.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&self.session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::futures::FutureExt;

    #[rocket::async_test]
    async fn calls_of_one_session_take_turns_and_a_burst_is_refused() {
        let turns = Turns::default();
        let (first, waited) = turns.take("s1").await.unwrap();
        assert!(!waited);
        // Another session is not held up.
        assert!(turns.take("s2").now_or_never().is_some());
        // Two more calls of s1 wait their turn (polled once, they are queued)...
        let mut second = Box::pin(turns.take("s1"));
        let mut third = Box::pin(turns.take("s1"));
        assert!((&mut second).now_or_never().is_none());
        assert!((&mut third).now_or_never().is_none());
        // ...and the next is refused at once.
        assert!(matches!(
            turns.take("s1").now_or_never(),
            Some(Err(LtiError::GradeCallsQueued))
        ));
        // When the first is done, the second goes, and room for one more waiting call is back.
        drop(first);
        let (second, waited) = (&mut second).now_or_never().unwrap().unwrap();
        assert!(waited);
        let mut fourth = Box::pin(turns.take("s1"));
        assert!((&mut fourth).now_or_never().is_none());
        // The last call done while given-up ones still wait leaves an entry behind...
        drop(second);
        drop(third);
        drop(fourth);
        assert_eq!(turns.sessions(), 1);
        // ...which the next turn of any session clears.
        let other = turns.take("s2").await.unwrap();
        assert_eq!(turns.sessions(), 1);
        drop(other);
        assert_eq!(turns.sessions(), 0);
    }
}
