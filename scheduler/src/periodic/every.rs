//! Fixed-period ticks, aligned to the Unix epoch so that every process computes
//! the same instants without talking to the others.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A period in whole milliseconds; its ticks are the multiples of it since
/// 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Every {
    period_ms: i64,
}

impl Every {
    /// A period of at least one millisecond, in whole milliseconds.
    pub(crate) fn new(period: Duration) -> Result<Self, String> {
        if period.is_zero() {
            return Err("the period is zero; give at least one millisecond".to_string());
        }
        if period < Duration::from_millis(1) {
            return Err("the period is shorter than one millisecond".to_string());
        }
        if period.subsec_nanos() % 1_000_000 != 0 {
            return Err("the period is not a whole number of milliseconds".to_string());
        }
        let period_ms = i64::try_from(period.as_millis())
            .map_err(|_| "the period is too long to compute with".to_string())?;
        Ok(Every { period_ms })
    }

    /// The period in milliseconds.
    pub(crate) fn millis(&self) -> i64 {
        self.period_ms
    }

    /// The period for people: `every 30s`, `every 1500ms`, `every 2h`.
    pub(crate) fn describe(&self) -> String {
        let ms = self.period_ms;
        let (count, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
            .into_iter()
            .find(|(size, _)| ms % size == 0)
            .map_or((ms, "ms"), |(size, unit)| (ms / size, unit));
        format!("every {count}{unit}")
    }

    /// The first multiple of the period strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // `timestamp_millis` rounds down, so the next multiple is after `t` too.
        let index = t.timestamp_millis().div_euclid(self.period_ms);
        self.tick(index.checked_add(1)?)
    }

    /// The last multiple of the period at or before `t`.
    pub(crate) fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.tick(t.timestamp_millis().div_euclid(self.period_ms))
    }

    fn tick(&self, index: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(index.checked_mul(self.period_ms)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a valid RFC 3339 time")
    }

    #[test]
    fn ticks_are_multiples_of_the_period_since_the_epoch() {
        let every = Every::new(Duration::from_secs(7 * 60)).expect("valid");
        // 2026-01-01T00:00:00Z is 29_453_760 minutes after the epoch, a multiple of 7.
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T00:07:00Z"))
        );
        assert_eq!(
            every.next_after(at("2025-12-31T23:59:59.999Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            every.at_or_before(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            every.at_or_before(at("2026-01-01T00:06:59.999Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
        // Before the epoch too.
        assert_eq!(
            every.at_or_before(at("1969-12-31T23:59:00Z")),
            Some(at("1969-12-31T23:53:00Z"))
        );
    }

    #[test]
    fn a_fraction_of_a_millisecond_still_moves_to_the_next_tick() {
        let every = Every::new(Duration::from_secs(1)).expect("valid");
        let just_after = at("2026-01-01T00:00:00.000500Z");
        assert_eq!(
            every.next_after(just_after),
            Some(at("2026-01-01T00:00:01Z"))
        );
        assert_eq!(
            every.at_or_before(just_after),
            Some(at("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn periods_that_cannot_be_aligned_are_refused() {
        assert!(Every::new(Duration::ZERO).is_err());
        assert!(Every::new(Duration::from_micros(999)).is_err());
        assert!(Every::new(Duration::from_micros(1_500)).is_err());
        assert!(Every::new(Duration::MAX).is_err());
        assert!(Every::new(Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn describes_in_the_largest_whole_unit() {
        let text = |ms| {
            Every::new(Duration::from_millis(ms))
                .expect("valid")
                .describe()
        };
        assert_eq!(text(7_200_000), "every 2h");
        assert_eq!(text(90_000), "every 90s");
        assert_eq!(text(300_000), "every 5m");
        assert_eq!(text(1_500), "every 1500ms");
    }

    #[test]
    fn the_end_of_time_has_no_next_tick() {
        let every = Every::new(Duration::from_secs(3600)).expect("valid");
        assert_eq!(every.next_after(DateTime::<Utc>::MAX_UTC), None);
    }
}
