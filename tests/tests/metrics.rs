//! Metrics through the `metrics` facade: a few jobs (one late, one retried,
//! one failed for good, one cancelled, one duplicate, one replaced) give
//! exactly the counters, histogram counts and gauges they should, on both
//! backends. A binary of its own: it installs the process's global recorder.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use scheduler::{IfRunning, JobContext, Scheduler, TaskError, WorkerConfig};
use scheduler_tests::{conformance, wait_until, Fixture};

#[scheduler::task]
async fn metric_ok(n: u32) -> Result<(), String> {
    let _ = n;
    Ok(())
}

/// Fails its first attempt (retried after 10 ms), then succeeds.
#[scheduler::task]
async fn metric_flaky(ctx: JobContext) -> Result<(), TaskError> {
    if ctx.attempt() == 1 {
        return Err(TaskError::retry_after(
            "first attempt fails",
            Duration::from_millis(10),
        ));
    }
    Ok(())
}

/// Fails for good: dead-lettered.
#[scheduler::task]
async fn metric_doomed() -> Result<(), TaskError> {
    Err(TaskError::permanent("cannot be done"))
}

/// The process's recorder, installed once before any scheduler starts.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// One namespace's metrics: counters by (name, task), gauges by state,
/// histogram values by (name, task).
#[derive(Clone, Debug, Default)]
struct Seen {
    counters: HashMap<(String, String), u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<(String, String), Vec<f64>>,
}

/// Everything recorded so far, by namespace. A snapshot drains the counters
/// and histograms (and the two backends' tests run at once), so every
/// snapshot is added here and read from here.
fn seen(namespace: &str) -> Seen {
    static ALL: Mutex<Option<HashMap<String, Seen>>> = Mutex::new(None);
    let mut all = ALL.lock().unwrap();
    let all = all.get_or_insert_with(HashMap::new);
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_string())
        };
        let Some(ns) = label("namespace") else {
            continue;
        };
        let entry = all.entry(ns).or_default();
        let name = key.name().to_string();
        match value {
            DebugValue::Counter(n) => {
                assert_eq!(label("queue").as_deref(), Some("default"));
                *entry
                    .counters
                    .entry((name, label("task").unwrap()))
                    .or_default() += n;
            }
            DebugValue::Gauge(v) => {
                entry.gauges.insert(label("state").unwrap(), v.into_inner());
            }
            DebugValue::Histogram(values) => entry
                .histograms
                .entry((name, label("task").unwrap()))
                .or_default()
                .extend(values.into_iter().map(|v| v.into_inner())),
        }
    }
    all.get(namespace).cloned().unwrap_or_default()
}

async fn metrics_count_each_event_once(fixture: Fixture) {
    snapshotter();
    let url = fixture.url();
    let namespace = scheduler_tests::namespace("metrics");
    let producer = Scheduler::builder(url.as_str())
        .namespace(namespace.as_str())
        .producer_only()
        .start()
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    // Due now, but no worker runs for a second: it starts at least 1 s late.
    producer
        .enqueue(metric_ok::job(1).id("late"))
        .await
        .unwrap();
    producer
        .enqueue(metric_ok::job(2).id("cancel-me").after(hour))
        .await
        .unwrap();
    producer
        .enqueue(metric_ok::job(3).id("replace-me").after(hour))
        .await
        .unwrap();
    let duplicate = producer
        .enqueue(metric_ok::job(4).id("cancel-me"))
        .await
        .unwrap();
    assert!(!duplicate.is_enqueued());
    producer
        .replace(
            metric_ok::job(5).id("replace-me").after(hour * 2),
            IfRunning::Keep,
        )
        .await
        .unwrap();
    producer.cancel("cancel-me").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let worker = Scheduler::builder(url.as_str())
        .namespace(namespace.as_str())
        .worker(WorkerConfig::default())
        .start()
        .await
        .unwrap();
    worker
        .enqueue(metric_ok::job(6).id("on-time"))
        .await
        .unwrap();
    worker
        .enqueue(metric_flaky::job().id("flaky"))
        .await
        .unwrap();
    worker
        .enqueue(metric_doomed::job().id("doomed"))
        .await
        .unwrap();
    let finished = wait_until(Duration::from_secs(10), || {
        let c = &seen(&namespace).counters;
        c.get(&("scheduler_jobs_completed_total".into(), "metric_ok".into())) == Some(&2)
            && c.get(&(
                "scheduler_jobs_completed_total".into(),
                "metric_flaky".into(),
            )) == Some(&1)
            && c.get(&(
                "scheduler_jobs_dead_lettered_total".into(),
                "metric_doomed".into(),
            )) == Some(&1)
    })
    .await;
    assert!(finished, "{:?}", seen(&namespace).counters);
    let counts = worker.counts().await.unwrap();
    assert_eq!(
        (
            counts.deferred,
            counts.queued,
            counts.running,
            counts.dead_lettered
        ),
        (1, 0, 0, 1)
    );
    let seen = seen(&namespace);

    let counter = |name: &str, task: &str| {
        seen.counters
            .get(&(format!("scheduler_jobs_{name}_total"), task.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let expected = [
        // name, metric_ok, metric_flaky, metric_doomed
        ("enqueued", 4, 1, 1),
        ("duplicate", 1, 0, 0),
        ("replaced", 1, 0, 0),
        ("cancelled", 1, 0, 0),
        ("started", 2, 2, 1),
        ("completed", 2, 1, 0),
        ("retried", 0, 1, 0),
        ("failed", 0, 0, 1),
        ("dead_lettered", 0, 0, 1),
        ("released", 0, 0, 0),
    ];
    for (name, ok, flaky, doomed) in expected {
        assert_eq!(
            (
                counter(name, "metric_ok"),
                counter(name, "metric_flaky"),
                counter(name, "metric_doomed")
            ),
            (ok, flaky, doomed),
            "{name}"
        );
    }

    let histogram = |name: &str, task: &str| {
        seen.histograms
            .get(&(format!("scheduler_job_{name}_seconds"), task.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    for name in ["lateness", "queue_wait", "run"] {
        assert_eq!(histogram(name, "metric_ok").len(), 2, "{name}");
        assert_eq!(histogram(name, "metric_flaky").len(), 2, "{name}");
        assert_eq!(histogram(name, "metric_doomed").len(), 1, "{name}");
    }
    // "late" started at least the second its worker was missing late, by
    // the Redis clock; "on-time" within a second of its due time.
    let mut lateness = histogram("lateness", "metric_ok");
    lateness.sort_by(f64::total_cmp);
    assert!(lateness[0] >= 0.0 && lateness[0] < 1.0, "{lateness:?}");
    assert!(lateness[1] >= 1.0, "{lateness:?}");
    assert!(histogram("queue_wait", "metric_ok")
        .iter()
        .all(|w| *w >= 0.0));

    let gauge = |state: &str| seen.gauges.get(state).copied();
    assert_eq!(gauge("deferred"), Some(1.0));
    assert_eq!(gauge("queued"), Some(0.0));
    assert_eq!(gauge("running"), Some(0.0));
    assert_eq!(gauge("dead_lettered"), Some(1.0));

    worker.close().await;
    producer.close().await;
}

conformance!(metrics_count_each_event_once);
