//! The daylight-saving rule of `Schedule`, on the 2026 transitions of
//! Europe/Paris (03-29 02:00 → 03:00, 10-25 03:00 → 02:00) and America/New_York
//! (03-08 02:00 → 03:00, 11-01 02:00 → 01:00), with the exact UTC instants.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::America::New_York;
use chrono_tz::Europe::Paris;
use chrono_tz::Tz;

use super::Schedule;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a valid RFC 3339 time")
}

fn cron(expression: &str, zone: Tz) -> Schedule {
    Schedule::cron(expression).expect(expression).tz(zone)
}

/// Every tick whose wall-clock date in `zone` is `date` (`YYYY-MM-DD`).
fn ticks_on(schedule: &Schedule, zone: Tz, date: &str) -> Vec<DateTime<Utc>> {
    let day: NaiveDate = date.parse().expect("a valid date");
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc() - Duration::days(1);
    std::iter::successors(schedule.next_after(start), |t| schedule.next_after(*t))
        .map_while(|t| (t.with_timezone(&zone).date_naive() <= day).then_some(t))
        .filter(|t| t.with_timezone(&zone).date_naive() == day)
        .collect()
}

#[test]
fn paris_daily_0230_runs_once_at_0300_when_the_clock_goes_forward() {
    let daily = cron("30 2 * * *", Paris);
    // 02:30 does not exist on 2026-03-29: the run is at 03:00 CEST, 01:00 UTC.
    assert_eq!(
        ticks_on(&daily, Paris, "2026-03-29"),
        [at("2026-03-29T01:00:00Z")]
    );
    // The days around it are ordinary: 02:30 CET, then 02:30 CEST.
    assert_eq!(
        ticks_on(&daily, Paris, "2026-03-28"),
        [at("2026-03-28T01:30:00Z")]
    );
    assert_eq!(
        ticks_on(&daily, Paris, "2026-03-30"),
        [at("2026-03-30T00:30:00Z")]
    );
}

#[test]
fn paris_daily_0230_runs_once_at_the_first_0230_when_the_clock_goes_back() {
    let daily = cron("30 2 * * *", Paris);
    // 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC (CET): only the first.
    assert_eq!(
        ticks_on(&daily, Paris, "2026-10-25"),
        [at("2026-10-25T00:30:00Z")]
    );
}

#[test]
fn new_york_daily_0230_runs_once_at_0300_when_the_clock_goes_forward() {
    let daily = cron("30 2 * * *", New_York);
    // 02:00 → 03:00 EDT on 2026-03-08: the run is at 03:00 EDT, 07:00 UTC.
    assert_eq!(
        ticks_on(&daily, New_York, "2026-03-08"),
        [at("2026-03-08T07:00:00Z")]
    );
}

#[test]
fn new_york_daily_runs_once_when_the_clock_goes_back() {
    // New York repeats 01:00-01:59 (02:00 EDT → 01:00 EST), not 02:30.
    let daily_0230 = cron("30 2 * * *", New_York);
    assert_eq!(
        ticks_on(&daily_0230, New_York, "2026-11-01"),
        [at("2026-11-01T07:30:00Z")]
    );
    // 01:30 happens at 05:30 UTC (EDT) and at 06:30 UTC (EST): only the first.
    let daily_0130 = cron("30 1 * * *", New_York);
    assert_eq!(
        ticks_on(&daily_0130, New_York, "2026-11-01"),
        [at("2026-11-01T05:30:00Z")]
    );
}

#[test]
fn hourly_runs_on_both_occurrences_of_a_repeated_hour_and_skips_a_missing_one() {
    let hourly = cron("0 * * * *", Paris);
    let back = ticks_on(&hourly, Paris, "2026-10-25");
    assert_eq!(back.len(), 25, "{back:?}");
    // 02:00 CEST and 02:00 CET, one real hour apart.
    assert_eq!(
        back[2..4],
        [at("2026-10-25T00:00:00Z"), at("2026-10-25T01:00:00Z")]
    );
    let forward = ticks_on(&hourly, Paris, "2026-03-29");
    assert_eq!(forward.len(), 23, "{forward:?}");
    // 01:00 CET, then 03:00 CEST: one real hour apart, no 02:00.
    assert_eq!(
        forward[1..3],
        [at("2026-03-29T00:00:00Z"), at("2026-03-29T01:00:00Z")]
    );
    // Every tick of both days is exactly one real hour after the one before.
    for day in [&back, &forward] {
        assert!(day.windows(2).all(|w| w[1] - w[0] == Duration::hours(1)));
    }

    let hourly = cron("0 * * * *", New_York);
    let back = ticks_on(&hourly, New_York, "2026-11-01");
    assert_eq!(back.len(), 25, "{back:?}");
    assert_eq!(
        back[1..3],
        [at("2026-11-01T05:00:00Z"), at("2026-11-01T06:00:00Z")]
    );
    assert_eq!(ticks_on(&hourly, New_York, "2026-03-08").len(), 23);
}

#[test]
fn several_named_times_in_a_missing_hour_make_one_run() {
    let schedule = cron("0,30 2 * * *", Paris);
    assert_eq!(
        ticks_on(&schedule, Paris, "2026-03-29"),
        [at("2026-03-29T01:00:00Z")]
    );
    assert_eq!(
        ticks_on(&schedule, Paris, "2026-10-25"),
        [at("2026-10-25T00:00:00Z"), at("2026-10-25T00:30:00Z")]
    );
    // A named time that is also the first after the jump merges with it.
    let two_and_three = cron("0 2,3 * * *", Paris);
    assert_eq!(
        ticks_on(&two_and_three, Paris, "2026-03-29"),
        [at("2026-03-29T01:00:00Z")]
    );
}

/// Why `Schedule` wraps croner: for these expressions croner alone skips the
/// day the clock goes forward and runs twice on the day it goes back. If croner
/// changes this, the wrapper may no longer be needed.
#[test]
fn croner_alone_treats_several_named_times_as_an_interval_job() {
    let cron = croner::parser::CronParser::new()
        .parse("0,30 2 * * *")
        .expect("valid");
    let start = at("2026-03-28T12:00:00Z").with_timezone(&Paris);
    let on_day = |day: &str, start: DateTime<Tz>| -> Vec<DateTime<Utc>> {
        let day: NaiveDate = day.parse().expect("a valid date");
        cron.iter_after(start)
            .take_while(|t| t.date_naive() <= day)
            .filter(|t| t.date_naive() == day)
            .map(|t| t.with_timezone(&Utc))
            .collect()
    };
    assert!(on_day("2026-03-29", start).is_empty());
    let back = at("2026-10-24T12:00:00Z").with_timezone(&Paris);
    assert_eq!(on_day("2026-10-25", back).len(), 4);
    // For a single time of day croner agrees with the rule.
    let single = croner::parser::CronParser::new()
        .parse("30 2 * * *")
        .expect("valid");
    let next = single
        .find_next_occurrence(&start, false)
        .expect("a next time");
    assert_eq!(next.with_timezone(&Utc), at("2026-03-29T01:00:00Z"));
}

#[test]
fn from_inside_the_second_pass_of_a_repeated_hour() {
    // Named hours: every 15 minutes of 02:xx, first pass only.
    let schedule = cron("*/15 2 * * *", Paris);
    let in_second_pass = at("2026-10-25T01:15:00Z"); // 02:15 CET
    assert_eq!(
        schedule.next_after(in_second_pass),
        Some(at("2026-10-26T01:00:00Z"))
    );
    assert_eq!(
        schedule.at_or_before(in_second_pass),
        Some(at("2026-10-25T00:45:00Z"))
    );
    // Every hour: the second pass has its own ticks.
    let schedule = cron("*/15 * * * *", Paris);
    assert_eq!(
        schedule.next_after(in_second_pass),
        Some(at("2026-10-25T01:30:00Z"))
    );
    assert_eq!(schedule.at_or_before(in_second_pass), Some(in_second_pass));
}

#[test]
fn a_midnight_that_does_not_exist_runs_at_the_first_instant_of_the_day() {
    // Santiago moves from 00:00 -04 to 01:00 -03 on 2026-09-06.
    let santiago: Tz = "America/Santiago".parse().expect("a zone");
    let daily = cron("0 0 * * *", santiago);
    assert_eq!(
        ticks_on(&daily, santiago, "2026-09-06"),
        [at("2026-09-06T04:00:00Z")]
    );
}

#[test]
fn a_gap_that_ends_between_whole_minutes() {
    // Abidjan went from local mean time (-00:16:08) to GMT at 00:16:08 UTC on
    // 1912-01-01: the wall clock jumped from 00:00:00 to 00:16:08.
    let abidjan: Tz = "Africa/Abidjan".parse().expect("a zone");
    let daily = cron("0 0 * * *", abidjan);
    assert_eq!(
        daily.next_after(at("1911-12-31T12:00:00Z")),
        Some(at("1912-01-01T00:16:08Z"))
    );
}

/// `next_after`, `at_or_before` and `before` agree with each other around every
/// transition, for both kinds of expression, from ticks and from between ticks.
#[test]
fn the_searches_agree_around_every_transition() {
    let lord_howe: Tz = "Australia/Lord_Howe".parse().expect("a zone");
    let expressions = [
        "30 2 * * *",
        "30 1 * * *",
        "0,30 2 * * *",
        "*/15 2 * * *",
        "0 */2 * * *",
        "0 * * * *",
        "*/20 * * * *",
        "30 */5 * * * *",
    ];
    let windows = [
        (Paris, "2026-03-28T12:00:00Z"),
        (Paris, "2026-10-24T12:00:00Z"),
        (New_York, "2026-03-07T12:00:00Z"),
        (New_York, "2026-10-31T12:00:00Z"),
        // Half-hour shifts: 02:00 → 02:30 on 2026-10-04, 02:00 → 01:30 on 2026-04-05.
        (lord_howe, "2026-10-03T00:00:00Z"),
        (lord_howe, "2026-04-04T00:00:00Z"),
        (Tz::UTC, "2026-03-28T12:00:00Z"),
    ];
    for expression in expressions {
        for (zone, start) in windows {
            let schedule = cron(expression, zone);
            let ticks = schedule.upcoming(at(start), 400);
            let end = at(start) + Duration::days(2);
            let ticks: Vec<_> = ticks.into_iter().take_while(|t| *t < end).collect();
            assert!(ticks.len() > 1, "{expression} in {zone}");
            for pair in ticks.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let context = format!("{expression} in {zone}, {a} → {b}");
                assert!(a < b, "{context}");
                assert_eq!(schedule.next_after(a), Some(b), "{context}");
                assert_eq!(schedule.at_or_before(b), Some(b), "{context}");
                assert_eq!(schedule.before(b), Some(a), "{context}");
                let between = a + (b - a) / 2;
                assert_eq!(schedule.next_after(between), Some(b), "{context}");
                assert_eq!(schedule.at_or_before(between), Some(a), "{context}");
            }
        }
    }
}
