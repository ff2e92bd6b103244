//! The dashboard's charts, drawn on the server as SVG (no script, no
//! library): attempts per minute, lateness per minute, and the timeline of
//! upcoming jobs. Colours come from the style sheet's classes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::layout::relative;
use crate::{ActivityMinute, JobInfo, LATENESS_BOUNDS_MS, LATENESS_BUCKETS};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// The sum of `minutes`, as one minute (its time is the first's).
pub(crate) fn totals(minutes: &[ActivityMinute]) -> ActivityMinute {
    let mut sum = ActivityMinute::default();
    for m in minutes {
        sum.started += m.started;
        sum.completed += m.completed;
        sum.failed += m.failed;
        sum.retried += m.retried;
        sum.dead_lettered += m.dead_lettered;
        for (s, n) in sum.lateness.iter_mut().zip(m.lateness) {
            *s += n;
        }
    }
    sum
}

/// A lateness quantile as text.
pub(crate) fn lateness_label(quantile: Option<Duration>) -> String {
    match quantile {
        Some(d) if d >= Duration::from_secs(1) => format!("≤ {} s", d.as_secs()),
        Some(d) => format!("≤ {} ms", d.as_millis()),
        None => "—".to_string(),
    }
}

/// x of minute `i` of `n` (its left edge).
fn x_of(i: usize, n: usize) -> f64 {
    LEFT + (WIDTH - LEFT) * i as f64 / n.max(1) as f64
}

/// The time axis under a per-minute chart.
fn minute_axis(n: usize) -> Markup {
    let base = HEIGHT - BOTTOM;
    html! {
        line.axis x1=(LEFT) y1=(base) x2=(WIDTH) y2=(base) {}
        text.tick x=(LEFT) y=(HEIGHT - 6.0) { "-" (n) " min" }
        text.tick x=(x_of(n / 2, n)) y=(HEIGHT - 6.0) text-anchor="middle" { "-" (n - n / 2) " min" }
        text.tick x=(WIDTH) y=(HEIGHT - 6.0) text-anchor="end" { "now" }
    }
}

/// Stacked bars per minute: completed, retried, failed.
pub(crate) fn throughput_svg(minutes: &[ActivityMinute]) -> Markup {
    let n = minutes.len();
    let peak = minutes
        .iter()
        .map(|m| m.completed + m.retried + m.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - BOTTOM - TOP;
    let bar = ((WIDTH - LEFT) / n.max(1) as f64 - 1.0).max(1.0);
    let h = |count: u64| plot * count as f64 / peak as f64;
    html! {
        svg.chart.throughput viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label="Attempts per minute over the last hour" {
            text.tick x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" { (peak) }
            text.tick x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
            line.grid x1=(LEFT) y1=(TOP) x2=(WIDTH) y2=(TOP) {}
            @for (i, m) in minutes.iter().enumerate() {
                g.minute {
                    title { (m.minute.format("%H:%M")) " UTC: " (m.completed) " completed, " (m.retried) " retried, " (m.failed) " failed, " (m.started) " started" }
                    @for (class, y, height) in stack(m, &h) {
                        rect class=(class) x=(format!("{:.1}", x_of(i, n))) y=(format!("{y:.1}")) width=(format!("{bar:.1}")) height=(format!("{height:.1}")) {}
                    }
                }
            }
            (minute_axis(n))
        }
    }
}

/// One minute's bars, bottom up: (class, top, height) of each non-empty one.
fn stack(m: &ActivityMinute, h: &dyn Fn(u64) -> f64) -> Vec<(&'static str, f64, f64)> {
    let mut y = HEIGHT - BOTTOM;
    [
        ("completed", m.completed),
        ("retried", m.retried),
        ("failed", m.failed),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(class, count)| {
        let height = h(count);
        y -= height;
        (class, y, height)
    })
    .collect()
}

/// y of a lateness bucket (0 = at most 1 ms, at the bottom).
fn bucket_y(bucket: usize) -> f64 {
    let plot = HEIGHT - BOTTOM - TOP;
    HEIGHT - BOTTOM - plot * bucket as f64 / (LATENESS_BUCKETS - 1) as f64
}

/// The bucket a quantile fell in (its upper bound), the unbounded one for `None`.
fn bucket_of(quantile: Option<Duration>) -> usize {
    match quantile {
        Some(d) => LATENESS_BOUNDS_MS
            .iter()
            .position(|b| *b as u128 >= d.as_millis())
            .unwrap_or(LATENESS_BUCKETS - 1),
        None => LATENESS_BUCKETS - 1,
    }
}

/// Lateness p50 and p99 per minute, on the buckets' scale.
pub(crate) fn lateness_svg(minutes: &[ActivityMinute]) -> Markup {
    let n = minutes.len();
    let half = (WIDTH - LEFT) / n.max(1) as f64 / 2.0;
    let series = |q: f64| -> Vec<(f64, f64, usize, &ActivityMinute)> {
        minutes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.started > 0)
            .map(|(i, m)| {
                let bucket = bucket_of(m.lateness_quantile(q));
                (x_of(i, n) + half, bucket_y(bucket), bucket, m)
            })
            .collect()
    };
    let labels = [
        (0, "1 ms"),
        (3, "10 ms"),
        (6, "100 ms"),
        (8, "1 s"),
        (10, "30 s"),
    ];
    html! {
        svg.chart.lateness viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label="Lateness per minute over the last hour" {
            @for (bucket, label) in labels {
                line.grid x1=(LEFT) y1=(bucket_y(bucket)) x2=(WIDTH) y2=(bucket_y(bucket)) {}
                text.tick x=(LEFT - 6.0) y=(bucket_y(bucket) + 4.0) text-anchor="end" { (label) }
            }
            @for (class, q) in [("p99", 0.99), ("p50", 0.5)] {
                @let points = series(q);
                polyline class=(class) points=(points.iter().map(|(x, y, _, _)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ")) {}
                @for (x, y, bucket, m) in &points {
                    circle class=(class) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {
                        title { (m.minute.format("%H:%M")) " UTC " (class) ": " (lateness_label(LATENESS_BOUNDS_MS.get(*bucket).map(|ms| Duration::from_millis(*ms)))) }
                    }
                }
            }
            (minute_axis(n))
            text.legend.p50 x=(LEFT + 8.0) y=(TOP + 10.0) { "p50" }
            text.legend.p99 x=(LEFT + 44.0) y=(TOP + 10.0) { "p99" }
        }
    }
}

/// The upcoming jobs on a line from now to the last one's run time.
pub(crate) fn timeline_svg(
    jobs: &[JobInfo],
    now: DateTime<Utc>,
    link: impl Fn(&str) -> String,
) -> Markup {
    let times: Vec<DateTime<Utc>> = jobs.iter().filter_map(|j| j.run_at).collect();
    let last = times
        .iter()
        .max()
        .copied()
        .unwrap_or(now)
        .max(now + chrono::TimeDelta::minutes(1));
    let span = (last - now).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| {
        LEFT + (WIDTH - LEFT - 12.0) * ((t - now).num_milliseconds().max(0) as f64 / span)
    };
    let base = HEIGHT - BOTTOM;
    html! {
        svg.chart.timeline viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label="Upcoming jobs on a timeline" {
            line.axis x1=(LEFT) y1=(base) x2=(WIDTH) y2=(base) {}
            text.tick x=(LEFT) y=(HEIGHT - 6.0) { "now" }
            text.tick x=(WIDTH) y=(HEIGHT - 6.0) text-anchor="end" { (relative(last, now)) }
            @for (i, job) in jobs.iter().enumerate() {
                @if let Some(t) = job.run_at {
                    @let cx = x(t);
                    // Five lanes, so that jobs due together stay apart.
                    @let cy = base - 18.0 - 22.0 * (i % 5) as f64;
                    a.point href=(link(&job.job_id)) data-job=(job.job_id) {
                        line.stem x1=(format!("{cx:.1}")) y1=(base) x2=(format!("{cx:.1}")) y2=(format!("{cy:.1}")) {}
                        circle cx=(format!("{cx:.1}")) cy=(format!("{cy:.1}")) r="5" {}
                        // Left of the point near the right edge.
                        @let (lx, anchor) = if cx > WIDTH - 220.0 { (cx - 8.0, "end") } else { (cx + 8.0, "start") };
                        text.label x=(format!("{lx:.1}")) y=(format!("{:.1}", cy + 4.0)) text-anchor=(anchor) { (short(&job.job_id)) }
                        title { (job.job_id) " · " (job.task) " · " (t.format("%Y-%m-%d %H:%M:%S UTC")) " (" (relative(t, now)) ")" }
                    }
                }
            }
        }
    }
}

/// An id cut to fit beside its point on the timeline.
fn short(id: &str) -> String {
    if id.chars().count() <= 24 {
        return id.to_string();
    }
    let cut: String = id.chars().take(23).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_sit_on_their_bucket() {
        assert_eq!(bucket_of(Some(Duration::from_millis(1))), 0);
        assert_eq!(bucket_of(Some(Duration::from_millis(10))), 3);
        assert_eq!(bucket_of(None), LATENESS_BUCKETS - 1);
        assert!(bucket_y(0) > bucket_y(10));
        assert_eq!(lateness_label(Some(Duration::from_millis(5))), "≤ 5 ms");
        assert_eq!(lateness_label(Some(Duration::from_secs(5))), "≤ 5 s");
    }

    #[test]
    fn bars_stack_to_the_busiest_minute() {
        let busy = ActivityMinute {
            completed: 8,
            failed: 2,
            ..ActivityMinute::default()
        };
        let quiet = ActivityMinute::default();
        let svg = throughput_svg(&[quiet, busy]).into_string();
        // The busiest minute fills the plot: 10 at the top label.
        assert!(svg.contains(">10</text>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("8 completed"), "{svg}");
    }
}
