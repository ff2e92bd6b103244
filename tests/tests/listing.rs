//! `Scheduler::list`: pages of the jobs in each state, in the state's order,
//! with cursors; filters by task and outcome look at a bounded number of
//! entries per page; bad cursors and limits are typed errors.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::{
    Error, FinishedState, JobEventKind, JobInfo, JobQuery, JobRequest, JobResult, JobStatus,
    ListState, Rescheduled, Scheduler, When,
};
use scheduler_tests::setup::{fast_worker, producer, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{conformance, namespace, Fixture, Probe};
use serde_json::json;

const LONG: Duration = Duration::from_secs(20);

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

fn ids(jobs: &[JobInfo]) -> Vec<&str> {
    jobs.iter().map(|j| j.job_id.as_str()).collect()
}

/// Every job of the listing, following cursors; the pages' sizes.
async fn all_pages(s: &Scheduler, query: JobQuery) -> (Vec<JobInfo>, Vec<usize>) {
    let mut jobs = Vec::new();
    let mut sizes = Vec::new();
    let mut query = query;
    loop {
        let page = s.list(&query).await.unwrap();
        assert!(page.unreadable.is_empty(), "{page:?}");
        sizes.push(page.jobs.len());
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => query = query.clone().after(next),
            None => return (jobs, sizes),
        }
        assert!(sizes.len() < 100, "no end");
    }
}

conformance!(
    pending_jobs_are_listed_in_due_order_page_by_page,
    running_finished_and_dead_jobs_are_listed_with_what_an_operator_needs,
    bad_queries_are_typed_errors,
    reschedule_moves_a_pending_job_and_keeps_it,
    a_dead_letter_is_deleted_alone,
    activity_counts_what_the_workers_did_per_minute
);

async fn pending_jobs_are_listed_in_due_order_page_by_page(fx: Fixture) {
    let ns = namespace("list-pending");
    let s = producer(&fx.url(), &ns).await;
    let now = Utc::now();
    // Deferred, enqueued out of order; one of another task at the end.
    for (id, minutes) in [("d3", 30), ("d1", 10), ("d5", 50), ("d2", 20), ("d4", 40)] {
        s.enqueue(job(id, ProbeArgs::new(id)).at(now + TimeDelta::minutes(minutes)))
            .await
            .unwrap();
    }
    s.enqueue_untyped(
        "other",
        Some("o1"),
        &json!({"x": 1}),
        When::At(now + TimeDelta::minutes(60)),
    )
    .await
    .unwrap();
    // Queued (due, no worker here), the longest waiting first.
    for (id, seconds) in [("q2", 20), ("q1", 30), ("q3", 10)] {
        s.enqueue(job(id, ProbeArgs::new(id)).at(now - TimeDelta::seconds(seconds)))
            .await
            .unwrap();
    }

    let first = s
        .list(&JobQuery::new(ListState::Deferred).limit(2))
        .await
        .unwrap();
    assert_eq!(ids(&first.jobs), ["d1", "d2"]);
    assert!(matches!(first.jobs[0].status, JobStatus::Deferred { .. }));
    assert_eq!(
        first.jobs[0].args,
        Some(json!({"arg": "d1", "sleep_ms": 0, "fail_times": 0, "mode": ""}))
    );
    let (all, sizes) = all_pages(&s, JobQuery::new(ListState::Deferred).limit(2)).await;
    assert_eq!(ids(&all), ["d1", "d2", "d3", "d4", "d5", "o1"]);
    assert_eq!(sizes, [2, 2, 2]);
    assert_eq!(all[5].task, "other");
    assert_eq!(all[5].args, Some(json!({"x": 1})));

    let (queued, _) = all_pages(&s, JobQuery::new(ListState::Queued).limit(10)).await;
    assert_eq!(ids(&queued), ["q1", "q2", "q3"]);
    assert!(queued
        .iter()
        .all(|j| matches!(j.status, JobStatus::Queued { .. })));

    // A task filter looks at no more than 10 entries per job asked for:
    // the one job of `other` behind 30 probe jobs takes several short pages.
    for i in 0..30 {
        s.enqueue(
            job(&format!("more-{i:02}"), ProbeArgs::new("x")).at(now + TimeDelta::seconds(30 + i)),
        )
        .await
        .unwrap();
    }
    let (others, sizes) = all_pages(
        &s,
        JobQuery::new(ListState::Deferred).task("other").limit(1),
    )
    .await;
    assert_eq!(ids(&others), ["o1"]);
    assert!(sizes.len() >= 4, "{sizes:?}");
    assert!(
        sizes[..sizes.len() - 1].iter().all(|n| *n == 0),
        "{sizes:?}"
    );
    s.close().await;
}

async fn running_finished_and_dead_jobs_are_listed_with_what_an_operator_needs(fx: Fixture) {
    let ns = namespace("list-states");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    let s = producer(&fx.url(), &ns).await;
    s.enqueue(job("ok", ProbeArgs::new("a"))).await.unwrap();
    s.enqueue(job("doomed", ProbeArgs::new("b").mode("permanent")))
        .await
        .unwrap();
    s.enqueue(job("dropped", ProbeArgs::new("c")).after(Duration::from_secs(3600)))
        .await
        .unwrap();
    s.cancel("dropped").await.unwrap();
    for id in ["ok", "doomed"] {
        s.wait(id, LONG).await.unwrap();
    }
    s.enqueue(job("slow", ProbeArgs::new("d").sleep(5000)))
        .await
        .unwrap();
    assert!(probe.wait_started(3, LONG).await);

    let running = s.list(&JobQuery::new(ListState::Running)).await.unwrap();
    assert_eq!(ids(&running.jobs), ["slow"]);
    let slow = &running.jobs[0];
    assert!(
        matches!(&slow.status, JobStatus::Running { attempt: 1, worker } if !worker.is_empty()),
        "{slow:?}"
    );
    assert!(
        slow.lease_until.unwrap() > Utc::now() - TimeDelta::seconds(1),
        "{slow:?}"
    );
    assert_eq!(slow.args.as_ref().unwrap()["arg"], json!("d"));

    // Most recent first.
    let (finished, _) = all_pages(&s, JobQuery::new(ListState::Finished)).await;
    assert!(
        finished
            .windows(2)
            .all(|w| w[0].finished_at >= w[1].finished_at),
        "{finished:#?}"
    );
    let mut finished_ids = ids(&finished);
    finished_ids.sort();
    assert_eq!(finished_ids, ["doomed", "dropped", "ok"]);
    let failed = s
        .list(&JobQuery::new(ListState::Finished).outcome(FinishedState::Failed))
        .await
        .unwrap();
    assert_eq!(ids(&failed.jobs), ["doomed"]);
    assert!(failed.jobs[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("probe asked to fail for good"));
    let cancelled = s
        .list(&JobQuery::new(ListState::Finished).outcome(FinishedState::Cancelled))
        .await
        .unwrap();
    assert_eq!(ids(&cancelled.jobs), ["dropped"]);

    let dead = s
        .list(&JobQuery::new(ListState::DeadLettered))
        .await
        .unwrap();
    assert_eq!(ids(&dead.jobs), ["doomed"]);
    assert_eq!(dead.jobs[0].status, JobStatus::Failed);
    assert!(dead.jobs[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("probe asked to fail for good"));
    assert_eq!(dead.jobs[0].args.as_ref().unwrap()["arg"], json!("b"));
    assert_eq!(dead.jobs[0].task, "probe");

    // `info` tells the same, arguments and lease included.
    let info = s.info("slow").await.unwrap().unwrap();
    assert!(info.lease_until.is_some());
    assert_eq!(info.args, slow.args);
    s.cancel("slow").await.unwrap();
    s.close().await;
    worker.close().await;
}

async fn bad_queries_are_typed_errors(fx: Fixture) {
    let ns = namespace("list-bad");
    let s = producer(&fx.url(), &ns).await;
    let bad_cursor = s
        .list(&JobQuery::new(ListState::Deferred).after("not-a-cursor"))
        .await;
    assert!(
        matches!(bad_cursor, Err(Error::InvalidCursor(_))),
        "{bad_cursor:?}"
    );
    let too_many = s
        .list(&JobQuery::new(ListState::Deferred).limit(scheduler::MAX_PAGE + 1))
        .await;
    assert!(
        matches!(too_many, Err(Error::InvalidQuery(_))),
        "{too_many:?}"
    );
    // A cursor whose job is gone goes on from its position.
    let page = s
        .list(&JobQuery::new(ListState::Deferred).after("5:gone"))
        .await
        .unwrap();
    assert!(page.jobs.is_empty() && page.next.is_none());
    s.close().await;
}

async fn reschedule_moves_a_pending_job_and_keeps_it(fx: Fixture) {
    let ns = namespace("reschedule");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    let s = producer(&fx.url(), &ns).await;
    let mut events = s.events().await.unwrap();
    let hour = Duration::from_secs(3600);
    let created = s
        .enqueue(job("later", ProbeArgs::new("abcd")).after(hour))
        .await
        .unwrap();
    let generation = match created {
        scheduler::EnqueueOutcome::Enqueued { generation, .. } => generation,
        other => panic!("{other:?}"),
    };
    // Later still: deferred at the new time, the same job.
    let at = Utc::now() + TimeDelta::hours(5);
    let moved = s.reschedule("later", When::At(at)).await.unwrap();
    let Rescheduled::Moved {
        generation: same,
        run_at,
    } = moved
    else {
        panic!("{moved:?}")
    };
    assert_eq!(same, generation);
    assert!((run_at - at).num_milliseconds().abs() <= 1, "{run_at} {at}");
    let info = s.info("later").await.unwrap().unwrap();
    assert!(
        matches!(info.status, JobStatus::Deferred { .. }),
        "{info:?}"
    );
    assert_eq!((info.generation, info.attempts), (generation, 0));
    // Fenced by generation: another generation moves nothing.
    assert_eq!(
        s.reschedule_generation("later", generation + 1000, When::Now)
            .await
            .unwrap(),
        Rescheduled::NotFound
    );
    assert!(matches!(
        s.status("later").await.unwrap(),
        JobStatus::Deferred { run_at } if (run_at - at).num_milliseconds().abs() <= 1
    ));
    // Now (the generation shown): it runs, with its arguments.
    assert!(matches!(
        s.reschedule_generation("later", generation, When::Now)
            .await
            .unwrap(),
        Rescheduled::Moved { .. }
    ));
    assert_eq!(
        s.wait_typed::<ProbeTask>("later", LONG).await.unwrap(),
        JobResult::Completed(4)
    );
    assert_eq!(probe.runs_of("later").len(), 1);
    // Ended, unknown, running: not moved.
    assert_eq!(
        s.reschedule("later", When::Now).await.unwrap(),
        Rescheduled::NotFound
    );
    s.enqueue(job("busy", ProbeArgs::new("x").sleep(5000)))
        .await
        .unwrap();
    assert!(probe.wait_started(2, LONG).await);
    assert!(matches!(
        s.reschedule("busy", When::After(hour)).await.unwrap(),
        Rescheduled::Running { .. }
    ));
    assert!(matches!(
        s.reschedule("bad\nid", When::Now).await,
        Err(Error::InvalidJobId { .. })
    ));
    // Each move is an event.
    let mut moves = 0;
    while moves < 2 {
        let event = tokio::time::timeout(LONG, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(event.kind, JobEventKind::Rescheduled { .. }) {
            assert_eq!(
                (event.job_id.as_str(), event.generation),
                ("later", generation)
            );
            moves += 1;
        }
    }
    s.cancel("busy").await.unwrap();
    events.close().await;
    s.close().await;
    worker.close().await;
}

async fn a_dead_letter_is_deleted_alone(fx: Fixture) {
    let ns = namespace("list-delete-dead");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    for id in ["dead-1", "dead-2"] {
        worker
            .enqueue(job(id, ProbeArgs::new(id).mode("permanent")))
            .await
            .unwrap();
        worker.wait(id, LONG).await.unwrap();
    }
    assert!(worker.delete_dead_letter("dead-1").await.unwrap());
    assert!(!worker.delete_dead_letter("dead-1").await.unwrap());
    let dead = worker.dead_letters(0, 10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(),
        ["dead-2"]
    );
    assert_eq!(worker.counts().await.unwrap().dead_lettered, 1);
    // Gone for good: nothing to requeue.
    assert_eq!(worker.requeue_dead_letter("dead-1").await.unwrap(), None);
    assert!(matches!(
        worker.delete_dead_letter("bad\nid").await,
        Err(Error::InvalidJobId { .. })
    ));
    worker.close().await;
}

async fn activity_counts_what_the_workers_did_per_minute(fx: Fixture) {
    let ns = namespace("list-activity");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    let s = producer(&fx.url(), &ns).await;
    s.enqueue(job("a", ProbeArgs::new("a"))).await.unwrap();
    s.enqueue(job("b", ProbeArgs::new("b"))).await.unwrap();
    s.enqueue(job("flaky", ProbeArgs::new("c").fail(1)))
        .await
        .unwrap();
    s.enqueue(job("doomed", ProbeArgs::new("d").mode("permanent")))
        .await
        .unwrap();
    for id in ["a", "b", "flaky", "doomed"] {
        s.wait(id, LONG).await.unwrap();
    }
    // A worker adds its counts every few seconds, and once more as it stops.
    worker.close().await;

    let minutes = s.activity(3).await.unwrap();
    assert_eq!(minutes.len(), 3);
    assert!(minutes
        .windows(2)
        .all(|w| w[1].minute - w[0].minute == TimeDelta::minutes(1)));
    assert!(
        minutes[2].minute <= Utc::now() && Utc::now() - minutes[2].minute < TimeDelta::minutes(1)
    );
    let sum = |f: fn(&scheduler::ActivityMinute) -> u64| minutes.iter().map(f).sum::<u64>();
    assert_eq!(sum(|m| m.started), 5, "{minutes:#?}");
    assert_eq!(sum(|m| m.completed), 3, "{minutes:#?}");
    assert_eq!(sum(|m| m.retried), 1, "{minutes:#?}");
    assert_eq!(sum(|m| m.failed), 1, "{minutes:#?}");
    assert_eq!(sum(|m| m.dead_lettered), 1, "{minutes:#?}");
    assert_eq!(sum(|m| m.lateness.iter().sum()), 5, "{minutes:#?}");
    // Nothing counted long ago; a page longer than what is kept is cut.
    assert_eq!(
        s.activity(1000).await.unwrap().len(),
        scheduler::ACTIVITY_MINUTES
    );
    s.close().await;
}

/// Running jobs on Redis are leased to their worker (one lease per worker,
/// covering every job it runs), except jobs with a lease of their own (claimed
/// by an older version, or given up by their worker): the listing merges
/// both, soonest expiry first, and pages through them with each job once.
#[tokio::test]
async fn running_jobs_of_several_workers_and_with_leases_of_their_own_are_listed_once_each() {
    let server = scheduler_tests::RedisServer::start();
    let ns = namespace("list-running");
    let probe = Probe::default();
    // Long leases and heartbeats: no renewal moves a lease between pages.
    let config = scheduler::WorkerConfig {
        lease: Duration::from_secs(60),
        heartbeat: Some(Duration::from_secs(50)),
        concurrency: 3,
        ..fast_worker()
    };
    let a = worker_with(&server.url(), &ns, &probe, config.clone()).await;
    let b = worker_with(&server.url(), &ns, &probe, config).await;
    let s = producer(&server.url(), &ns).await;
    for i in 0..6 {
        s.enqueue(job(&format!("r{i}"), ProbeArgs::new("x").sleep(10_000)))
            .await
            .unwrap();
    }
    assert!(probe.wait_started(6, LONG).await);
    // Two of them get leases of their own, ending before and after the workers'.
    let held = server
        .cli(&["--scan", "--pattern", &format!("{{{ns}}}:held:*")])
        .unwrap();
    let sets: Vec<&str> = held.lines().collect();
    assert_eq!(sets.len(), 2, "{held}");
    let now_ms = Utc::now().timestamp_millis();
    let mut own = Vec::new();
    for (set, offset_ms) in sets.iter().zip([30_000, 90_000]) {
        let members = server.cli(&["SMEMBERS", set]).unwrap();
        let id = members.lines().next().unwrap().to_string();
        server.cli(&["SREM", set, &id]).unwrap();
        let score = (now_ms + offset_ms).to_string();
        server
            .cli(&["ZADD", &format!("{{{ns}}}:leases"), &score, &id])
            .unwrap();
        own.push(id);
    }

    let (running, sizes) = all_pages(&s, JobQuery::new(ListState::Running).limit(2)).await;
    let mut listed = ids(&running);
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    assert!(
        running
            .windows(2)
            .all(|w| w[0].lease_until <= w[1].lease_until),
        "{running:#?}"
    );
    // The one ending first is listed first, the one ending last, last.
    assert_eq!(listed.first().copied(), Some(own[0].as_str()), "{listed:?}");
    assert_eq!(listed.last().copied(), Some(own[1].as_str()), "{listed:?}");
    listed.sort();
    assert_eq!(listed, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    for w in [a, b, s] {
        w.close().await;
    }
}
