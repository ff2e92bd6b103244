//! Where the in-memory backend reads the time: the system clock, or a manual
//! clock that tests move forward.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of "now" in milliseconds since the epoch (the in-memory backend's
/// equivalent of Redis `TIME`).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to.
///
/// ```
/// use scheduler::testing::ManualClock;
/// use scheduler::testing::Clock;
/// use std::time::Duration;
///
/// let clock = ManualClock::starting_at("2026-01-01T09:00:00Z".parse().unwrap());
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-01T09:01:30+00:00");
/// ```
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        ManualClock {
            ms: AtomicI64::new(start.timestamp_millis()),
        }
    }

    /// A clock showing the current system time (then frozen).
    pub fn now_frozen() -> Self {
        Self::starting_at(Utc::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock (never backwards: an earlier instant is ignored).
    pub fn advance_to(&self, to: DateTime<Utc>) {
        self.ms.fetch_max(to.timestamp_millis(), Ordering::SeqCst);
    }

    /// The time shown.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// The instant of a time stored as milliseconds since the epoch; one out of
/// chrono's range reads as the latest instant.
pub(crate) fn time_from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
