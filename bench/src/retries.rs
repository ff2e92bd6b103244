//! `retry-lateness`: issue 19's "retries are as punctual as first runs" (p99
//! at most 10 ms, none early). Not part of the peer protocol; run it on a
//! Redis of its own:
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 retry-lateness --n 500
//! ```
//!
//! One process, default worker settings. It enqueues `--n` jobs of
//! `fails_once` 10 ms apart: the first attempt fails asking for a retry in
//! 50 ms (`TaskError::retry_after`), the second succeeds. Between them, every
//! 10 ms, it enqueues a `runs_once` job due at once, so that most of them are
//! enqueued behind a retry that is due or nearly due (the wake-up of a job
//! enqueued behind an earlier one is the path that once failed, issue 14).
//! Lateness = the attempt's `Started` event time minus the time it was due
//! (`JobEventKind::Started::run_at`), both stamped by the scripts with Redis
//! `TIME` in whole milliseconds: a start is early when it is negative.
//! Reported per population: first attempts, retried attempts, and the jobs
//! enqueued behind.

use std::time::{Duration, Instant};

use scheduler::{Error, JobContext, JobEventKind, Scheduler, Task, TaskError, WorkerConfig};
use serde_json::json;

use crate::args::Args;
use crate::{emit, percentile};

/// The asked-for delay of the retry.
const BACKOFF: Duration = Duration::from_millis(50);

/// Fails its first attempt with a retry in [`BACKOFF`], then succeeds.
#[scheduler::task(max_attempts = 3)]
async fn fails_once(ctx: JobContext, i: u64) -> Result<(), TaskError> {
    let _ = i;
    if ctx.attempt() == 1 {
        return Err(TaskError::retry_after("first attempt fails", BACKOFF));
    }
    Ok(())
}

/// Runs once; enqueued between the retries.
#[scheduler::task]
async fn runs_once(i: u64) -> Result<(), String> {
    let _ = i;
    Ok(())
}

/// The lateness figures of one population, in ms.
fn summary(mut lateness: Vec<f64>) -> serde_json::Value {
    lateness.sort_by(f64::total_cmp);
    json!({
        "jobs": lateness.len(),
        "p50_ms": percentile(&lateness, 50.0),
        "p99_ms": percentile(&lateness, 99.0),
        "max_ms": lateness.last().copied().unwrap_or(0.0),
        "early": lateness.iter().filter(|l| **l < 0.0).count(),
    })
}

pub(crate) async fn retry_lateness(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(10);
    let s = Scheduler::builder(a.url.as_str())
        .worker(WorkerConfig {
            queues: scheduler::Queues::strict(["default"]),
            ..WorkerConfig::default()
        })
        // The default queue's bench job is served too: it needs its counter.
        .provide_arc(std::sync::Arc::new(crate::Stats::new(0, None)))
        .start()
        .await?;
    let mut events = s.events().await?;
    let run = chrono_tag();
    let producer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for i in 0..n as u64 {
                tick.tick().await;
                s.enqueue(fails_once::job(i).id(format!("rt-{run}-f{i}")))
                    .await?;
                tick.tick().await;
                s.enqueue(runs_once::job(i).id(format!("rt-{run}-b{i}")))
                    .await?;
            }
            Ok::<(), Error>(())
        })
    };
    let (mut first, mut retried, mut behind) = (Vec::new(), Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while (first.len() < n || retried.len() < n || behind.len() < n) && Instant::now() < deadline {
        let event = match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(missed))) => {
                return Err(Error::Config(format!("events missed: {missed:?}")))
            }
            _ => break,
        };
        let JobEventKind::Started { run_at } = event.kind else {
            continue;
        };
        let late = (event.at - run_at).num_milliseconds() as f64;
        if late > 10.0 {
            eprintln!(
                "outlier: {} attempt {} started {late} ms after {run_at}",
                event.job_id, event.attempt
            );
        }
        if event.task == fails_once::NAME {
            if event.attempt == 1 {
                first.push(late);
            } else {
                retried.push(late);
            }
        } else if event.task == runs_once::NAME {
            behind.push(late);
        }
    }
    match producer.await {
        Ok(result) => result?,
        Err(e) => return Err(Error::Config(format!("producer failed: {e}"))),
    }
    s.close().await;
    emit(json!({
        "retry_lateness": {
            "backoff_ms": BACKOFF.as_millis() as u64,
            "first_attempts": summary(first),
            "retried_attempts": summary(retried),
            "enqueued_behind": summary(behind),
            "clock": "the backend's (Redis TIME, ms) for both the start and the time it was due",
        }
    }));
    Ok(())
}

/// A tag that keeps one run's job ids apart from an earlier run's.
fn chrono_tag() -> i64 {
    scheduler::chrono::Utc::now().timestamp_millis()
}
