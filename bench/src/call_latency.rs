//! `call-latency`: where one call's time goes. One producer calls, one after
//! another, `--n` deferred enqueues, `info`s, cancels of ids that hold
//! nothing and cancels that remove a job; a side connection (fred's defaults)
//! sends as many PINGs, the floor of a round trip through the client and the
//! kernel. For each: the median and p99 of the caller's time, and the Redis
//! time per call of the scripts it ran (`INFO commandstats`, FCALL and
//! EVALSHA, before and after), in microseconds.

use std::future::Future;
use std::time::Instant;

use fred::interfaces::ClientLike;
use scheduler::{CancelOutcome, Error};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{bench_job, emit, instant, now_ms, producer, side_connection};

fn config_error(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

/// Calls and microseconds of the scripts Redis ran so far.
async fn script_usec(side: &fred::clients::Client) -> Result<(f64, f64), Error> {
    let stats: String = side
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .map_err(config_error)?;
    let mut total = (0.0, 0.0);
    for line in stats.lines() {
        let Some(rest) = line
            .strip_prefix("cmdstat_fcall:")
            .or_else(|| line.strip_prefix("cmdstat_evalsha:"))
        else {
            continue;
        };
        for field in rest.split(',') {
            match field.split_once('=') {
                Some(("calls", v)) => total.0 += v.parse::<f64>().unwrap_or(0.0),
                Some(("usec", v)) => total.1 += v.parse::<f64>().unwrap_or(0.0),
                _ => {}
            }
        }
    }
    Ok(total)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs `call(i)` for i in 0..n, one after another; its summary.
async fn phase<F, Fut>(side: &fred::clients::Client, n: usize, mut call: F) -> Result<Value, Error>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let before = script_usec(side).await?;
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        call(i).await?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let after = script_usec(side).await?;
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    let calls = after.0 - before.0;
    let redis = if calls > 0.0 {
        json!(round1((after.1 - before.1) / calls))
    } else {
        Value::Null
    };
    Ok(json!({
        "median_us": round1(at(0.5)),
        "p99_us": round1(at(0.99)),
        "redis_us_per_script": redis,
    }))
}

pub(crate) async fn call_latency(a: &Args) -> Result<(), Error> {
    let s = producer(&a.url).await?;
    let side = side_connection(&a.url).await?;
    let n = (a.num("n") as usize).max(1);
    let at = instant(now_ms() + 3_600_000.0);
    let ping = || {
        phase(&side, n, |_| async {
            let _: String = side.ping(None).await.map_err(config_error)?;
            Ok(())
        })
    };
    let ping_first = ping().await?;
    let s = &s;
    let enqueue = phase(&side, n, |i| async move {
        let id = format!("l{i}");
        bench_job::defer_to(s, &id, at, "count".into(), 0.0, String::new()).await?;
        Ok(())
    })
    .await?;
    let info = phase(&side, n, |i| async move {
        s.info(&format!("l{i}")).await.map(drop)
    })
    .await?;
    let missing = phase(&side, n, |i| async move {
        bench_job::cancel(s, &format!("missing{i}")).await.map(drop)
    })
    .await?;
    let cancel = phase(&side, n, |i| async move {
        match bench_job::cancel(s, &format!("l{i}")).await? {
            CancelOutcome::Removed { .. } => Ok(()),
            other => Err(Error::Config(format!("l{i}: {other:?}"))),
        }
    })
    .await?;
    let ping_last = ping().await?;
    s.close().await;
    emit(json!({
        "n": n,
        "ping_first": ping_first,
        "enqueue_deferred": enqueue,
        "info": info,
        "cancel_missing": missing,
        "cancel": cancel,
        "ping_last": ping_last,
    }));
    Ok(())
}
