//! The ticks of a cron expression read on the wall clock of a time zone, with
//! the daylight-saving rule of [`Schedule`](super::Schedule).
//!
//! Two kinds of expression, told apart by the hour field:
//!
//! - **Every hour** (the hour field matches all 24 hours, as `*` does): the
//!   ticks follow real time, as croner computes them natively. A wall-clock
//!   time that does not exist has no tick; one that happens twice has two.
//! - **Named hours** (anything else): every matching wall-clock time gives
//!   exactly one tick. A time that happens twice runs at its first occurrence;
//!   a time that does not exist runs at the first instant after the clock
//!   jumps, and several such times make one tick. Computed here on the naive
//!   wall clock, each matching time mapped to its one instant; the mapping
//!   never goes back in time, so a search on the wall clock is a search in
//!   time. croner agrees for a single time of day (`30 2 * * *`), but treats
//!   `0,30 2 * * *` or `*/15 2 * * *` as interval jobs: no run at all on the
//!   day the clock goes forward, two runs each on the day it goes back.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed cron expression and how it treats daylight saving time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronRule {
    cron: Cron,
    every_hour: bool,
}

/// The longest stretch of wall clock a zone skips: Samoa skipped a whole day in
/// 2011. Bounds the search for the end of a gap.
const LONGEST_GAP_MINUTES: i64 = 48 * 60;

impl CronRule {
    pub(crate) fn new(cron: Cron) -> Self {
        let every_hour = (0..24).all(|hour| cron.pattern.hour_match(hour).unwrap_or(false));
        CronRule { cron, every_hour }
    }

    /// The first tick strictly after `t`.
    pub(crate) fn next_after(&self, zone: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks fall on whole seconds: after `t` is after its whole second.
        let t = whole_second(t)?;
        if self.every_hour {
            return self
                .cron
                .find_next_occurrence(&t.with_timezone(&zone), false)
                .ok()
                .map(|tick| tick.with_timezone(&Utc));
        }
        let mut wall = t.with_timezone(&zone).naive_local();
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let tick = first_instant(zone, wall)?;
            // Only when `t` is in the second pass of a repeated hour do the
            // next matching wall-clock times lie before it.
            if tick > t {
                return Some(tick);
            }
        }
    }

    /// The last tick at or before `t`.
    pub(crate) fn at_or_before(&self, zone: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = whole_second(t)?;
        if self.every_hour {
            return self
                .cron
                .find_previous_occurrence(&t.with_timezone(&zone), true)
                .ok()
                .map(|tick| tick.with_timezone(&Utc));
        }
        let here = t.with_timezone(&zone).naive_local();
        // In the second pass of a repeated hour, the first pass of the wall-clock
        // times after `here` already happened: start from the end of the repeat.
        let mut wall = match zone.from_local_datetime(&here) {
            LocalResult::Ambiguous(a, b) if t == a.max(b).with_timezone(&Utc) => {
                here.checked_add_signed(b.signed_duration_since(a).abs())?
            }
            _ => here,
        };
        let mut inclusive = true;
        loop {
            wall = self.cron.find_previous_occurrence(&wall, inclusive).ok()?;
            inclusive = false;
            let tick = first_instant(zone, wall)?;
            if tick <= t {
                return Some(tick);
            }
        }
    }
}

/// `t` without its fraction of a second (ticks are whole seconds).
fn whole_second(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    t.with_nanosecond(0)
}

/// The one instant of a wall-clock time under the named-hours rule: itself;
/// the first of two; or, inside a gap, the first instant after the gap.
pub(crate) fn first_instant(zone: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => end_of_gap(zone, wall),
    }
}

/// The first instant after the gap that `wall` falls in: minute by minute to the
/// first wall-clock time that exists, then second by second within that minute
/// (a transition is not always on a whole minute).
fn end_of_gap(zone: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |at: NaiveDateTime| match zone.from_local_datetime(&at) {
        LocalResult::Single(x) => Some(x),
        LocalResult::Ambiguous(a, b) => Some(a.min(b)),
        LocalResult::None => None,
    };
    let after = (1..=LONGEST_GAP_MINUTES)
        .filter_map(|minutes| wall.checked_add_signed(Duration::minutes(minutes)))
        .find(|at| exists(*at).is_some())?;
    (0..60)
        .rev()
        .filter_map(|seconds| after.checked_sub_signed(Duration::seconds(seconds)))
        .filter(|at| *at > wall)
        .find_map(exists)
        .map(|at| at.with_timezone(&Utc))
}
