//! `abort-latency`: how long from a `cancel` call until the running job's
//! future is dropped (the core issue's target: p99 under 100 ms on an idle
//! machine). Not part of the peer protocol.
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 abort-latency --n 200
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use scheduler::{CancelOutcome, Error, Scheduler};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::{emit, percentile};

/// Where the held job reports that it started and (from a drop guard) that it
/// was dropped. A process global rather than a `Dep`, so that the `worker`
/// subcommand (same binary, every task checked at start-up) needs nothing for it.
static EVENTS: OnceLock<mpsc::UnboundedSender<(String, bool, Instant)>> = OnceLock::new();

/// Sends the drop time when the job's future is dropped.
struct DropGuard {
    id: String,
    events: mpsc::UnboundedSender<(String, bool, Instant)>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.events.send((self.id.clone(), false, Instant::now()));
    }
}

/// A job that runs until it is aborted.
#[scheduler::task(timeout = "1h")]
async fn held_job(id: String) {
    let Some(events) = EVENTS.get() else { return };
    let _guard = DropGuard {
        id: id.clone(),
        events: events.clone(),
    };
    let _ = events.send((id, true, Instant::now()));
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

pub(crate) async fn abort_latency(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    EVENTS
        .set(tx)
        .map_err(|_| Error::Config("abort-latency runs once per process".into()))?;
    let namespace = format!("abort-latency-{}", std::process::id());
    let scheduler = Scheduler::builder(a.url.as_str())
        .namespace(&namespace)
        // Every task in the binary is checked at start-up, the bench job too.
        .provide_arc(Arc::new(crate::Stats::new(0, None)))
        .start()
        .await?;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("held-{i}");
        held_job::enqueue(&scheduler, &id, id.clone()).await?;
        // Started?
        loop {
            match rx.recv().await {
                Some((ref got, true, _)) if *got == id => break,
                Some(_) => continue,
                None => return Err(Error::Closed),
            }
        }
        let t0 = Instant::now();
        let outcome = held_job::cancel(&scheduler, &id).await?;
        if !matches!(outcome, CancelOutcome::AbortSignalled { .. }) {
            return Err(Error::Config(format!(
                "unexpected cancel outcome {outcome:?}"
            )));
        }
        let dropped = loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((ref got, false, at))) if *got == id => break at,
                Ok(Some(_)) => continue,
                _ => return Err(Error::Config(format!("{id} was not dropped within 10 s"))),
            }
        };
        latencies.push(dropped.duration_since(t0).as_secs_f64() * 1000.0);
    }
    scheduler.close().await;
    latencies.sort_by(f64::total_cmp);
    emit(json!({
        "abort_latency_ms": {
            "n": n,
            "p50": percentile(&latencies, 50.0),
            "p99": percentile(&latencies, 99.0),
            "max": latencies.last().copied().unwrap_or(0.0),
        }
    }));
    Ok(())
}
