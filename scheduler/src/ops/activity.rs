//! A worker's own counts of what it did, per minute, added to the backend
//! every few seconds (by the gauge loop, see `metrics.rs`) so that every
//! process can read the namespace's last two hours
//! ([`Scheduler::activity`](crate::Scheduler::activity)).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::Utc;

use crate::api::activity::{lateness_bucket, ActivityMinute, LATENESS_BUCKETS};
use crate::clock::time_from_ms;

/// Counters of one minute, in [`FIELDS`] order.
pub(crate) type Tally = [u64; FIELD_COUNT];

/// Counters per minute: five outcomes, then one per lateness bucket.
pub(crate) const FIELD_COUNT: usize = 5 + LATENESS_BUCKETS;

/// The stored name of each counter (a field of the minute's hash on Redis).
pub(crate) const FIELDS: [&str; FIELD_COUNT] = [
    "started",
    "completed",
    "failed",
    "retried",
    "dead_lettered",
    "l0",
    "l1",
    "l2",
    "l3",
    "l4",
    "l5",
    "l6",
    "l7",
    "l8",
    "l9",
    "l10",
    "l11",
];

const STARTED: usize = 0;
const COMPLETED: usize = 1;
const FAILED: usize = 2;
const RETRIED: usize = 3;
const DEAD_LETTERED: usize = 4;
const LATENESS: usize = 5;

/// How long the backend keeps a minute's counts.
pub(crate) const KEEP_MINUTES: i64 = 120;

/// Minutes since the epoch of a time in milliseconds.
pub(crate) fn minute_of_ms(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// Adds `tally` to the counts of `minute` (what a Redis `HINCRBY` per field
/// does to the minute's hash).
pub(crate) fn add_tally(minutes: &mut BTreeMap<i64, Tally>, minute: i64, tally: &Tally) {
    let entry = minutes.entry(minute).or_insert([0; FIELD_COUNT]);
    for (sum, n) in entry.iter_mut().zip(tally) {
        *sum += n;
    }
}

/// What this process counted and has not added to the backend yet.
#[derive(Debug, Default)]
pub(crate) struct ActivityRecorder {
    minutes: Mutex<BTreeMap<i64, Tally>>,
}

impl ActivityRecorder {
    /// An attempt started at `started_us` (backend clock), `lateness_us` late.
    pub(crate) fn started(&self, started_us: i64, lateness_us: i64) {
        let minute = minute_of_ms(started_us.div_euclid(1000));
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        let tally = minutes.entry(minute).or_insert([0; FIELD_COUNT]);
        tally[STARTED] += 1;
        tally[LATENESS + lateness_bucket(lateness_us)] += 1;
    }

    /// A batch of outcomes was recorded with these codes (complete.lua's),
    /// counted in the current minute.
    pub(crate) fn ended<'a>(&self, codes: impl IntoIterator<Item = &'a str>) {
        let mut tally = [0; FIELD_COUNT];
        for code in codes {
            match code {
                "completed" => tally[COMPLETED] += 1,
                "retrying" => tally[RETRIED] += 1,
                "failed" => tally[FAILED] += 1,
                "dead_lettered" => {
                    tally[FAILED] += 1;
                    tally[DEAD_LETTERED] += 1;
                }
                _ => {}
            }
        }
        if tally.iter().all(|n| *n == 0) {
            return;
        }
        let minute = minute_of_ms(Utc::now().timestamp_millis());
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        add_tally(&mut minutes, minute, &tally);
    }

    /// Takes what was counted, to add it to the backend.
    pub(crate) fn take(&self) -> Vec<(i64, Tally)> {
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *minutes).into_iter().collect()
    }

    /// Puts back counts the backend did not take (Redis unreachable), except
    /// those older than the backend would keep.
    pub(crate) fn restore(&self, taken: Vec<(i64, Tally)>) {
        let oldest = minute_of_ms(Utc::now().timestamp_millis()) - KEEP_MINUTES;
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        for (minute, tally) in taken.iter().filter(|(m, _)| *m > oldest) {
            add_tally(&mut minutes, *minute, tally);
        }
    }
}

/// The public view of a stored minute.
pub(crate) fn activity_minute(minute: i64, tally: &Tally) -> ActivityMinute {
    let mut lateness = [0; LATENESS_BUCKETS];
    lateness.copy_from_slice(&tally[LATENESS..]);
    ActivityMinute {
        minute: time_from_ms(minute * 60_000),
        started: tally[STARTED],
        completed: tally[COMPLETED],
        failed: tally[FAILED],
        retried: tally[RETRIED],
        dead_lettered: tally[DEAD_LETTERED],
        lateness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_minute_and_restores_what_was_not_added() {
        let recorder = ActivityRecorder::default();
        let now_ms = Utc::now().timestamp_millis();
        recorder.started(now_ms * 1000, 3_000);
        recorder.started(now_ms * 1000, 40_000_000);
        recorder.ended(["dead_lettered", "stale"]);
        let taken = recorder.take();
        assert!(recorder.take().is_empty());
        let minutes: i64 = taken.iter().map(|(m, _)| *m).max().unwrap_or_default();
        assert!(minutes >= minute_of_ms(now_ms));
        let total = |field: usize| taken.iter().map(|(_, t)| t[field]).sum::<u64>();
        assert_eq!(
            (total(STARTED), total(FAILED), total(DEAD_LETTERED)),
            (2, 1, 1)
        );
        assert_eq!(total(COMPLETED), 0);
        assert_eq!((total(LATENESS + 2), total(LATENESS + 11)), (1, 1));

        let old = (minute_of_ms(now_ms) - KEEP_MINUTES - 1, [1; FIELD_COUNT]);
        recorder.restore(taken.into_iter().chain([old]).collect());
        let again = recorder.take();
        assert_eq!(again.iter().map(|(_, t)| t[STARTED]).sum::<u64>(), 2);
        let view = activity_minute(again[0].0, &again[0].1);
        assert_eq!(view.minute.timestamp() % 60, 0);
    }
}
