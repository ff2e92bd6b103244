//! What a namespace's workers did, minute by minute: attempts started and
//! their lateness, and how they ended, from
//! [`Scheduler::activity`](crate::Scheduler::activity) (the dashboard's
//! throughput and lateness chart).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Upper bounds, in milliseconds, of the lateness buckets of
/// [`ActivityMinute::lateness`]: bucket `i` counts the attempts that started
/// at most `LATENESS_BOUNDS_MS[i]` ms late (and more than the bound before
/// it); the last bucket, one past these bounds, counts the later ones.
pub const LATENESS_BOUNDS_MS: [u64; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 1_000, 5_000, 30_000];

/// Number of lateness buckets: one per bound, and one for the later starts.
pub const LATENESS_BUCKETS: usize = LATENESS_BOUNDS_MS.len() + 1;

/// One minute of a namespace's activity, as its workers counted it.
///
/// Each worker counts what it did and adds its counts to Redis every few
/// seconds (kept two hours): a worker that dies loses its last few seconds,
/// and in the rare case where an addition is cut off after Redis applied it
/// but before the answer arrived, the next addition may count it again. These
/// are numbers for a chart, not a ledger: the job records are the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityMinute {
    /// The minute's first instant (by the clock of the worker that counted).
    pub minute: DateTime<Utc>,
    /// Attempts started (claimed) in this minute, by the Redis clock.
    pub started: u64,
    /// Attempts that completed.
    pub completed: u64,
    /// Jobs that failed for good (dead-lettered, or superseded by a
    /// waiting replacement).
    pub failed: u64,
    /// Failed attempts planned again after their backoff.
    pub retried: u64,
    /// Jobs moved to the dead letters (a subset of `failed`).
    pub dead_lettered: u64,
    /// The started attempts by lateness (recorded start minus due time):
    /// see [`LATENESS_BOUNDS_MS`].
    pub lateness: [u64; LATENESS_BUCKETS],
}

impl ActivityMinute {
    /// The lateness that a share `q` (0 to 1) of this minute's attempts did
    /// not exceed, as the upper bound of the bucket it falls in (`None`
    /// when no attempt started, or when it falls in the last, unbounded
    /// bucket: later than 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::ActivityMinute;
    ///
    /// let mut minute = ActivityMinute::default();
    /// minute.lateness[0] = 98; // 98 attempts at most 1 ms late
    /// minute.lateness[3] = 2; // 2 attempts 5 to 10 ms late
    /// assert_eq!(minute.lateness_quantile(0.5), Some(Duration::from_millis(1)));
    /// assert_eq!(minute.lateness_quantile(0.99), Some(Duration::from_millis(10)));
    /// assert_eq!(ActivityMinute::default().lateness_quantile(0.5), None);
    /// ```
    pub fn lateness_quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.lateness.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the attempt at share q, from 1.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.lateness.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return LATENESS_BOUNDS_MS
                    .get(bucket)
                    .map(|ms| Duration::from_millis(*ms));
            }
        }
        None
    }
}

/// The bucket of a lateness of `us` microseconds.
pub(crate) fn lateness_bucket(us: i64) -> usize {
    LATENESS_BOUNDS_MS
        .iter()
        .position(|bound| us <= (*bound as i64) * 1000)
        .unwrap_or(LATENESS_BOUNDS_MS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_include_their_upper_bound() {
        assert_eq!(lateness_bucket(-5), 0);
        assert_eq!(lateness_bucket(1000), 0);
        assert_eq!(lateness_bucket(1001), 1);
        assert_eq!(lateness_bucket(30_000_000), 10);
        assert_eq!(lateness_bucket(30_000_001), 11);
    }

    #[test]
    fn a_quantile_in_the_unbounded_bucket_is_unknown() {
        let mut minute = ActivityMinute::default();
        minute.lateness[LATENESS_BUCKETS - 1] = 1;
        assert_eq!(minute.lateness_quantile(0.5), None);
        minute.lateness[2] = 3;
        assert_eq!(
            minute.lateness_quantile(0.75),
            Some(Duration::from_millis(5))
        );
        assert_eq!(minute.lateness_quantile(1.0), None);
    }
}
