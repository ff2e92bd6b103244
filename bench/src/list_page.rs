//! `list-page`: how long one page of `Scheduler::list` takes behind many
//! deferred jobs (issue 18's target: with 1,000,000 deferred jobs, a page of
//! 50 in under 10 ms). Not part of the peer protocol; run it on a Redis of
//! its own.
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 list-page [--n 1000000] [--pages 200]
//! ```
//!
//! It enqueues `--n` deferred jobs (an hour ahead, one millisecond apart, in
//! batches of 10,000; not timed), then times, each as one `list` call seen
//! by the caller: the first page of 50, `--pages` pages of 50 following the
//! cursors, a page of 50 starting in the middle (a cursor made from the job
//! there: the cursor's form is internal, so this is white-box), a queued page
//! (none are due: it answers empty) and a page filtered by a task no job has
//! (it looks at 500 entries and answers empty, with a cursor).

use std::time::{Duration, Instant};

use scheduler::chrono::{TimeDelta, Utc};
use scheduler::{Error, JobQuery, ListState, Scheduler};
use serde_json::json;

use crate::args::Args;
use crate::{bench_job, emit, percentile, producer};

/// Milliseconds one `list` call takes, and its page.
async fn timed(s: &Scheduler, query: &JobQuery) -> Result<(f64, scheduler::JobPage), Error> {
    let started = Instant::now();
    let page = s.list(query).await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, page))
}

pub(crate) async fn list_page(a: &Args) -> Result<(), Error> {
    let n = a.num_or("n", 1_000_000.0) as usize;
    let pages = a.num_or("pages", 200.0) as usize;
    let s = producer(&a.url).await?;
    // Whole milliseconds, as run times are stored: the middle cursor below
    // names its job's exact score.
    let base = Utc::now() + TimeDelta::hours(1);
    let base = base - TimeDelta::nanoseconds(i64::from(base.timestamp_subsec_nanos() % 1_000_000));
    let id = |i: usize| format!("lp-{i:08}");
    let filled = Instant::now();
    for start in (0..n).step_by(10_000) {
        let requests = (start..n.min(start + 10_000)).map(|i| {
            bench_job::job("noop".into(), 0.0, String::new())
                .id(id(i))
                .at(base + TimeDelta::milliseconds(i as i64))
        });
        s.enqueue_many(requests).await?;
    }
    let fill_s = filled.elapsed().as_secs_f64();

    let first_query = JobQuery::new(ListState::Deferred).limit(50);
    let (first_ms, first) = timed(&s, &first_query).await?;
    let mut cursor = first.next.clone();
    let mut page_ms = Vec::with_capacity(pages);
    for _ in 0..pages {
        let Some(next) = cursor.take() else { break };
        let (ms, page) = timed(&s, &first_query.clone().after(next)).await?;
        page_ms.push(ms);
        cursor = page.next;
    }
    page_ms.sort_by(f64::total_cmp);
    let middle = n / 2;
    let middle_cursor = format!(
        "{}:{}",
        (base + TimeDelta::milliseconds(middle as i64)).timestamp_millis(),
        id(middle)
    );
    let (middle_ms, middle_page) = timed(&s, &first_query.clone().after(middle_cursor)).await?;
    let first_of_middle = middle_page.jobs.first().map(|j| j.job_id.clone());
    let (queued_ms, _) = timed(&s, &JobQuery::new(ListState::Queued).limit(50)).await?;
    let (miss_ms, miss) = timed(
        &s,
        &JobQuery::new(ListState::Deferred)
            .task("no-such-task")
            .limit(50),
    )
    .await?;
    emit(json!({
        "list_page": {
            "n": n,
            "fill_s": fill_s,
            "first_page_ms": first_ms,
            "first_page_jobs": first.jobs.len(),
            "pages": page_ms.len(),
            "page_ms_p50": percentile(&page_ms, 50.0),
            "page_ms_p99": percentile(&page_ms, 99.0),
            "page_ms_max": percentile(&page_ms, 100.0),
            "middle_page_ms": middle_ms,
            "middle_page_first": first_of_middle,
            "queued_page_ms": queued_ms,
            "task_miss_page_ms": miss_ms,
            "task_miss_has_next": miss.next.is_some(),
        }
    }));
    s.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
