//! The conformance suite: every behaviour of the runtime core, written once and
//! run against both backends (a private `redis-server` and a private in-memory
//! store). A behaviour that differs between them is a bug in one of them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::{
    CancelOutcome, EnqueueOutcome, Error, FinishedState, IfRunning, JobRequest, JobStatus,
    PendingState, ReplaceOutcome, Scheduler, Task, When, WorkerConfig,
};
use scheduler_tests::setup::{fast_worker, probe_job, producer, wait_status, worker, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask, QuickTimeoutTask};
use scheduler_tests::{conformance, namespace, Fixture, Probe};

conformance!(
    enqueued_job_runs_once_and_its_result_is_kept,
    deferred_job_waits_for_its_time,
    duplicate_ids_are_reported_and_run_once_then_the_id_is_free,
    unique_until_result_expires_keeps_a_finished_id_taken_while_its_outcome_is_kept,
    replace_swaps_a_deferred_job_atomically,
    cancelled_deferred_and_queued_jobs_never_start,
    running_job_is_aborted_and_ends_cancelled_not_retried,
    a_stale_cancel_never_touches_a_later_generation,
    cancel_then_enqueue_in_a_tight_loop_keeps_the_last_job,
    two_workers_race_for_1000_jobs_and_each_runs_exactly_once,
    a_bulk_enqueue_in_many_batches_answers_in_order_and_dedups_across_batches,
    failures_are_retried_then_dead_lettered_with_the_reason,
    timeouts_drop_the_future_and_count_as_failed_attempts,
    replace_of_a_running_job_follows_the_policy,
    a_replacement_waiting_for_a_running_job_starts_when_it_ends_not_at_its_lease_expiry,
    close_releases_running_jobs_to_another_worker_at_once,
    keep_result_zero_keeps_nothing_but_ids_are_reusable,
    registry_lists_tasks_and_typed_names_match,
    pending_jobs_of_a_task_are_listed_with_typed_arguments,
    untyped_arguments_are_checked_against_the_task_parameters,
    a_release_never_hands_its_fence_token_out_again,
    a_cancel_names_the_waiting_successor_it_removed,
    a_request_sent_again_with_its_request_id_gets_the_first_answer,
    a_replace_names_every_generation_it_affected,
    a_run_that_ends_after_its_abort_was_answered_ends_cancelled,
    an_enqueue_without_an_id_returns_the_id_it_generated,
);

/// A `#[task]` of this binary: stored by position, shown to the untyped API by name.
#[scheduler::task]
async fn remind(user: String, minutes: u32) {
    let _ = (user, minutes);
}

async fn enqueued_job_runs_once_and_its_result_is_kept(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("run"), &probe).await;
    let out = s.enqueue(probe_job("a", "hello")).await.unwrap();
    assert!(out.is_enqueued(), "{out:?}");
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let status = wait_status(&s, "a", |st| *st == JobStatus::Completed).await;
    assert_eq!(status, JobStatus::Completed);
    assert_eq!(
        s.result::<ProbeTask>("a").await.unwrap(),
        scheduler::JobResult::Completed(5)
    );
    let info = s.info("a").await.unwrap().unwrap();
    assert_eq!(info.task, "probe");
    assert_eq!(info.attempts, 1);
    assert!(info.finished_at.is_some() && info.started_at.is_some());
    assert_eq!(probe.runs_of("a").len(), 1);
    s.close().await;
}

async fn deferred_job_waits_for_its_time(fx: Fixture) {
    // The run time a job reports is the millisecond of the instant asked
    // for: rounded down on Redis, which keeps the microseconds and starts it
    // at that instant; rounded up in memory, which keeps whole milliseconds.
    let rounded_up = matches!(fx, Fixture::Memory(_));
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("defer"), &probe).await;
    let at = Utc::now() + TimeDelta::milliseconds(700);
    let out = s.enqueue(probe_job("later", "x").at(at)).await.unwrap();
    assert!(matches!(out, EnqueueOutcome::Enqueued { .. }));
    assert!(matches!(
        s.status("later").await.unwrap(),
        JobStatus::Deferred { .. }
    ));
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let run = &probe.runs()[0];
    assert!(
        run.start >= at,
        "started {} before its time {}",
        run.start,
        at
    );
    let up = rounded_up && !at.timestamp_subsec_micros().is_multiple_of(1000);
    assert_eq!(
        run.scheduled_at.timestamp_millis(),
        at.timestamp_millis() + i64::from(up)
    );
    assert!(run.start >= run.scheduled_at, "{run:?}");
    s.close().await;
}

async fn duplicate_ids_are_reported_and_run_once_then_the_id_is_free(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("dedup");
    let p = producer(&fx.url(), &ns).await;
    let at = Utc::now() + TimeDelta::milliseconds(500);
    let first = p.enqueue(probe_job("same", "1").at(at)).await.unwrap();
    let EnqueueOutcome::Enqueued { generation: g1, .. } = first else {
        panic!("{first:?}")
    };
    for _ in 0..20 {
        let again = p.enqueue(probe_job("same", "2")).await.unwrap();
        assert!(
            matches!(again, EnqueueOutcome::Duplicate { state: PendingState::Deferred, generation, .. } if generation == g1),
            "{again:?}"
        );
    }
    let s = worker(&fx.url(), &ns, &probe).await;
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    wait_status(&s, "same", |st| *st == JobStatus::Completed).await;
    // Finished: the id is free at once, and the outcome is still readable meanwhile.
    let reuse = p.enqueue(probe_job("same", "3")).await.unwrap();
    let EnqueueOutcome::Enqueued { generation: g2, .. } = reuse else {
        panic!("{reuse:?}")
    };
    assert!(g2 > g1);
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    let args: Vec<String> = probe.runs_of("same").into_iter().map(|r| r.arg).collect();
    assert_eq!(args, vec!["1", "3"]);
    s.close().await;
    p.close().await;
}

async fn unique_until_result_expires_keeps_a_finished_id_taken_while_its_outcome_is_kept(
    fx: Fixture,
) {
    let probe = Probe::default();
    let keep = Duration::from_millis(2000);
    let s = Scheduler::builder(fx.url())
        .namespace(namespace("unique"))
        .keep_result(keep)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    // Default: a finished job's id is free at once, though its outcome is kept.
    let EnqueueOutcome::Enqueued { generation: d1, .. } =
        s.enqueue(probe_job("plain", "1")).await.unwrap()
    else {
        panic!("first enqueue")
    };
    wait_status(&s, "plain", |st| *st == JobStatus::Completed).await;
    let again = s.enqueue(probe_job("plain", "2")).await.unwrap();
    assert!(
        matches!(again, EnqueueOutcome::Enqueued { generation, .. } if generation > d1),
        "{again:?}"
    );
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);

    // With the option: still a plain duplicate while the job is pending.
    let once = || probe_job("once", "x").unique_until_result_expires();
    let at = Utc::now() + TimeDelta::milliseconds(300);
    let EnqueueOutcome::Enqueued { generation: g1, .. } = s.enqueue(once().at(at)).await.unwrap()
    else {
        panic!("first enqueue with the option")
    };
    let dup = s.enqueue(once()).await.unwrap();
    assert!(
        matches!(dup, EnqueueOutcome::Duplicate { generation, .. } if generation == g1),
        "{dup:?}"
    );
    wait_status(&s, "once", |st| *st == JobStatus::Completed).await;
    let finished_at = s.info("once").await.unwrap().unwrap().finished_at.unwrap();
    // Finished and kept: nothing changes, single and bulk.
    let want = EnqueueOutcome::RecentlyFinished {
        job_id: "once".into(),
        state: FinishedState::Completed,
        generation: g1,
        finished_at,
    };
    assert_eq!(s.enqueue(once()).await.unwrap(), want);
    let many = s
        .enqueue_many([once(), probe_job("other", "y")])
        .await
        .unwrap();
    assert_eq!(many[0], want);
    assert!(many[1].is_enqueued(), "{:?}", many[1]);
    assert!(!want.is_enqueued());
    // Retention over: the id is free again.
    assert_eq!(
        wait_status(&s, "once", |st| *st == JobStatus::NotFound).await,
        JobStatus::NotFound
    );
    let reuse = s.enqueue(once()).await.unwrap();
    assert!(
        matches!(reuse, EnqueueOutcome::Enqueued { generation, .. } if generation > g1),
        "{reuse:?}"
    );
    assert!(probe.wait_finished(5, Duration::from_secs(10)).await);
    assert_eq!(probe.runs_of("once").len(), 2);
    assert_eq!(probe.runs_of("plain").len(), 2);
    s.close().await;
}

async fn replace_swaps_a_deferred_job_atomically(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("replace"), &probe).await;
    let first_at = Utc::now() + TimeDelta::seconds(60);
    s.enqueue(probe_job("r", "old").at(first_at)).await.unwrap();
    let new_at = Utc::now() + TimeDelta::milliseconds(300);
    let out = s
        .replace(probe_job("r", "new").at(new_at), IfRunning::Abort)
        .await
        .unwrap();
    match out {
        ReplaceOutcome::Replaced {
            previous_run_at, ..
        } => {
            assert_eq!(
                previous_run_at.timestamp_millis() / 1000,
                first_at.timestamp_millis() / 1000
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let args: Vec<String> = probe.runs().into_iter().map(|r| r.arg).collect();
    assert_eq!(args, vec!["new"]);
    // Replace of an unknown id creates it.
    let created = s
        .replace(
            probe_job("fresh", "x").at(Utc::now() + TimeDelta::seconds(60)),
            IfRunning::Abort,
        )
        .await
        .unwrap();
    assert!(matches!(created, ReplaceOutcome::Enqueued { .. }));
    s.close().await;
}

async fn cancelled_deferred_and_queued_jobs_never_start(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("cancel");
    let p = producer(&fx.url(), &ns).await;
    let soon = Utc::now() + TimeDelta::milliseconds(400);
    for i in 0..20 {
        p.enqueue(probe_job(&format!("c{i}"), "x").at(soon))
            .await
            .unwrap();
    }
    // A queued (due) job with no worker yet.
    p.enqueue(probe_job("queued", "x")).await.unwrap();
    assert!(matches!(
        p.status("queued").await.unwrap(),
        JobStatus::Queued { .. }
    ));
    for i in 0..10 {
        let out = p.cancel(&format!("c{i}")).await.unwrap();
        assert!(matches!(out, CancelOutcome::Removed { .. }), "{out:?}");
    }
    assert!(matches!(
        p.cancel("queued").await.unwrap(),
        CancelOutcome::Removed { .. }
    ));
    assert_eq!(
        p.cancel("never-existed").await.unwrap(),
        CancelOutcome::NotFound
    );
    let s = worker(&fx.url(), &ns, &probe).await;
    assert!(probe.wait_finished(10, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ran: Vec<String> = probe.runs().into_iter().map(|r| r.job_id).collect();
    ran.sort();
    let mut expected: Vec<String> = (10..20).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(ran, expected);
    assert_eq!(p.status("c0").await.unwrap(), JobStatus::Cancelled);
    assert_eq!(
        p.cancel("c0").await.unwrap(),
        CancelOutcome::AlreadyFinished(FinishedState::Cancelled)
    );
    s.close().await;
    p.close().await;
}

async fn running_job_is_aborted_and_ends_cancelled_not_retried(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("abort"), &probe).await;
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(30_000)).id("long"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    assert!(matches!(
        s.status("long").await.unwrap(),
        JobStatus::Running { attempt: 1, .. }
    ));
    let out = s
        .cancel_and_wait("long", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(out, CancelOutcome::AbortSignalled { .. }),
        "{out:?}"
    );
    assert_eq!(s.status("long").await.unwrap(), JobStatus::Cancelled);
    // The future was dropped: its end was never recorded, and it is not re-run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(probe.started(), 1);
    assert_eq!(probe.finished(), 0);
    s.close().await;
}

async fn a_stale_cancel_never_touches_a_later_generation(fx: Fixture) {
    let ns = namespace("fence");
    let p = producer(&fx.url(), &ns).await;
    let later = Utc::now() + TimeDelta::seconds(60);
    let EnqueueOutcome::Enqueued {
        generation: old, ..
    } = p.enqueue(probe_job("f", "old").at(later)).await.unwrap()
    else {
        panic!()
    };
    p.cancel("f").await.unwrap();
    let EnqueueOutcome::Enqueued {
        generation: new, ..
    } = p.enqueue(probe_job("f", "new").at(later)).await.unwrap()
    else {
        panic!()
    };
    assert!(new > old);
    // The old generation is already cancelled; cancelling it again leaves the new one alone.
    assert_eq!(
        p.cancel_generation("f", old).await.unwrap(),
        CancelOutcome::AlreadyFinished(FinishedState::Cancelled)
    );
    assert_eq!(
        p.cancel_generation("f", new + 1).await.unwrap(),
        CancelOutcome::NotFound
    );
    let info = p.info("f").await.unwrap().unwrap();
    assert_eq!(info.generation, new);
    assert!(matches!(info.status, JobStatus::Deferred { .. }));
    p.close().await;
}

async fn cancel_then_enqueue_in_a_tight_loop_keeps_the_last_job(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("loop");
    let s = worker(&fx.url(), &ns, &probe).await;
    let p = producer(&fx.url(), &ns).await;
    let due = Utc::now() + TimeDelta::milliseconds(800);
    for i in 0..200 {
        p.cancel("plan").await.unwrap();
        let out = p
            .enqueue(probe_job("plan", &i.to_string()).at(due))
            .await
            .unwrap();
        assert!(out.is_enqueued(), "iteration {i}: {out:?}");
    }
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let args: Vec<String> = probe.runs().into_iter().map(|r| r.arg).collect();
    assert_eq!(args, vec!["199"]);
    s.close().await;
    p.close().await;
}

/// `enqueue_many` sends its jobs in several batches, some in flight at once:
/// the outcomes still come back in request order, and an id repeated in a later
/// batch (or the same one) is a duplicate of the first job, not a second job.
async fn a_bulk_enqueue_in_many_batches_answers_in_order_and_dedups_across_batches(fx: Fixture) {
    let p = producer(&fx.url(), &namespace("bulk-batches")).await;
    // 2,000 distinct ids, then 600 of them again (ids j0..j599), 2,600 requests.
    let ids: Vec<String> = (0..2000).chain(0..600).map(|i| format!("j{i}")).collect();
    let outcomes = p
        .enqueue_many(ids.iter().map(|id| probe_job(id, "x")))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), ids.len());
    let generation = |o: &EnqueueOutcome| match o {
        EnqueueOutcome::Enqueued { generation, .. }
        | EnqueueOutcome::Duplicate { generation, .. }
        | EnqueueOutcome::RecentlyFinished { generation, .. } => *generation,
    };
    let mut seen = std::collections::HashSet::new();
    for (i, o) in outcomes.iter().take(2000).enumerate() {
        assert!(o.is_enqueued(), "request {i}: {o:?}");
        assert!(seen.insert(generation(o)), "request {i}: generation reused");
    }
    for (k, o) in outcomes.iter().skip(2000).enumerate() {
        assert!(
            matches!(o, EnqueueOutcome::Duplicate { .. }),
            "request {}: {o:?}",
            2000 + k
        );
        assert_eq!(
            generation(o),
            generation(&outcomes[k]),
            "request {} answered for another job than j{k}",
            2000 + k
        );
    }
    assert_eq!(p.pending::<ProbeTask>().await.unwrap().len(), 2000);

    // Jobs of one batch that differ in run time or attempts keep their own
    // (a batch sends shared settings once only when every job shares them).
    let at = Utc::now() + TimeDelta::hours(1);
    // An id twice in one batch: one job, and the second request is its duplicate.
    let twice = p
        .enqueue_many([probe_job("d", "x"), probe_job("d", "x")])
        .await
        .unwrap();
    assert!(twice[0].is_enqueued(), "{twice:?}");
    assert!(
        matches!(twice[1], EnqueueOutcome::Duplicate { .. }),
        "{twice:?}"
    );
    assert_eq!(generation(&twice[0]), generation(&twice[1]));

    // Two batches, each differing in one setting only.
    let attempts_differ = vec![probe_job("m0", "a").max_attempts(2), probe_job("m1", "b")];
    let times_differ = vec![probe_job("m2", "c"), probe_job("m3", "d").at(at)];
    let uniform = (0..3).map(|i| probe_job(&format!("u{i}"), "u").at(at).max_attempts(7));
    for batch in [attempts_differ, times_differ] {
        for out in p.enqueue_many(batch).await.unwrap() {
            assert!(out.is_enqueued(), "{out:?}");
        }
    }
    for out in p.enqueue_many(uniform).await.unwrap() {
        assert!(out.is_enqueued(), "{out:?}");
    }
    let info = |id: &'static str| {
        let p = p.clone();
        async move { p.info(id).await.unwrap().unwrap() }
    };
    let (m0, m1) = (info("m0").await, info("m1").await);
    // The probe task declares 3 attempts.
    assert_eq!((m0.max_attempts, m1.max_attempts), (2, 3));
    let planned = |i: &scheduler::JobInfo| i.run_at.unwrap();
    let (m2, m3) = (info("m2").await, info("m3").await);
    assert!(planned(&m2) < at - TimeDelta::minutes(59), "{m2:?}");
    assert!((planned(&m3) - at).num_milliseconds().abs() <= 1, "{m3:?}");
    for id in ["u0", "u1", "u2"] {
        let u = info(id).await;
        assert_eq!(u.max_attempts, 7, "{u:?}");
        assert!((planned(&u) - at).num_milliseconds().abs() <= 1, "{u:?}");
    }
    p.close().await;
}

async fn two_workers_race_for_1000_jobs_and_each_runs_exactly_once(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("race");
    let p = producer(&fx.url(), &ns).await;
    let jobs = (0..1000).map(|i| probe_job(&format!("j{i}"), "x"));
    let outcomes = p.enqueue_many(jobs).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.is_enqueued()).count(), 1000);
    let config = WorkerConfig {
        concurrency: 20,
        ..fast_worker()
    };
    let a = worker_with(&fx.url(), &ns, &probe, config.clone()).await;
    let b = worker_with(&fx.url(), &ns, &probe, config).await;
    assert!(probe.wait_finished(1000, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<String> = probe.runs().into_iter().map(|r| r.job_id).collect();
    assert_eq!(ids.len(), 1000);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    a.close().await;
    b.close().await;
    p.close().await;
}

async fn failures_are_retried_then_dead_lettered_with_the_reason(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("retry"), &probe).await;
    // Fails twice, succeeds on the third of three attempts.
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("flaky").fail(2)).id("flaky"))
        .await
        .unwrap();
    // Fails on every attempt: dead-lettered after 3.
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("bad").fail(99)).id("bad"))
        .await
        .unwrap();
    // Permanent: dead-lettered after 1.
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("perm").mode("permanent")).id("perm"))
        .await
        .unwrap();
    // Panics: the worker survives and retries.
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("boom").mode("panic")).id("boom"))
        .await
        .unwrap();
    assert_eq!(
        wait_status(&s, "flaky", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(
        wait_status(&s, "bad", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(
        wait_status(&s, "perm", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(
        wait_status(&s, "boom", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(probe.runs_of("flaky").len(), 3);
    assert_eq!(probe.runs_of("bad").len(), 3);
    assert_eq!(probe.runs_of("perm").len(), 1);
    assert_eq!(probe.runs_of("boom").len(), 3);
    let info = s.info("flaky").await.unwrap().unwrap();
    assert_eq!(info.attempts, 3);
    let dead = s.dead_letters(0, 10).await.unwrap();
    let reason = |id: &str| {
        dead.iter()
            .find(|d| d.job_id == id)
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("bad").contains("attempts exhausted (3 of 3)"),
        "{dead:?}"
    );
    assert!(reason("perm").contains("fail for good"), "{dead:?}");
    assert!(reason("boom").contains("panicked"), "{dead:?}");
    assert!(dead.iter().all(|d| d.job_id != "flaky"));
    // Re-queue from the dead letter: runs again with fresh attempts.
    let before = probe.runs_of("perm").len();
    assert!(s.requeue_dead_letter("perm").await.unwrap().is_some());
    assert!(
        probe
            .wait_started(probe.started() + 1, Duration::from_secs(10))
            .await
    );
    assert_eq!(probe.runs_of("perm").len(), before + 1);
    assert_eq!(
        wait_status(&s, "perm", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(s.dead_letters(0, 100).await.unwrap().len(), 3);
    assert_eq!(s.purge_dead_letters().await.unwrap(), 3);
    assert!(s.dead_letters(0, 100).await.unwrap().is_empty());
    s.close().await;
}

async fn timeouts_drop_the_future_and_count_as_failed_attempts(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("timeout"), &probe).await;
    s.enqueue(JobRequest::<QuickTimeoutTask>::new(ProbeArgs::new("slow").sleep(5_000)).id("slow"))
        .await
        .unwrap();
    assert_eq!(
        wait_status(&s, "slow", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(probe.runs_of("slow").len(), 2);
    assert_eq!(probe.finished(), 0);
    let dead = s.dead_letters(0, 10).await.unwrap();
    assert!(dead[0].reason.contains("timed out"), "{dead:?}");
    s.close().await;
}

async fn replace_of_a_running_job_follows_the_policy(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("replace-running"), &probe).await;
    let long = |arg: &str| JobRequest::<ProbeTask>::new(ProbeArgs::new(arg).sleep(600)).id("job");
    s.enqueue(long("first")).await.unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    // Keep: nothing changes.
    assert!(matches!(
        s.replace(long("kept"), IfRunning::Keep).await.unwrap(),
        ReplaceOutcome::Running { .. }
    ));
    // QueueAfter: the running one finishes, then the new one runs.
    let out = s
        .replace(long("second"), IfRunning::QueueAfter)
        .await
        .unwrap();
    assert!(
        matches!(out, ReplaceOutcome::QueuedAfterRunning { .. }),
        "{out:?}"
    );
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    let runs = probe.runs();
    assert_eq!(runs[0].arg, "first");
    assert_eq!(runs[1].arg, "second");
    assert!(
        runs[0].end.is_some_and(|end| end <= runs[1].start),
        "the new run overlapped the old one"
    );
    // Abort: the running one is dropped, the new one starts after it stopped.
    let out = s.replace(long("third"), IfRunning::Abort).await.unwrap();
    assert!(
        matches!(out, ReplaceOutcome::AbortedRunning { .. }),
        "{out:?}"
    );
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    assert!(probe.wait_started(3, Duration::from_secs(10)).await);
    let runs = probe.runs();
    assert_eq!(runs[2].arg, "third");
    assert!(runs[1].end.is_none(), "the aborted run was not dropped");
    assert_eq!(
        wait_status(&s, "job", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed
    );
    s.close().await;
}

/// A replacement queued behind a running job is due at that job's lease expiry
/// (its worker may have died); finishing the run must release it at once. With a
/// 30 s lease, a replacement released only by the lease would miss every bound here.
async fn a_replacement_waiting_for_a_running_job_starts_when_it_ends_not_at_its_lease_expiry(
    fx: Fixture,
) {
    let probe = Probe::default();
    let config = WorkerConfig {
        lease: Duration::from_secs(30),
        heartbeat: Some(Duration::from_secs(10)),
        ..fast_worker()
    };
    let s = worker_with(&fx.url(), &namespace("replace-waits"), &probe, config).await;
    let job =
        |arg: &str, ms: u64| JobRequest::<ProbeTask>::new(ProbeArgs::new(arg).sleep(ms)).id("job");
    let soon = TimeDelta::seconds(5);

    // QueueAfter, then a second replacement of the waiting one: the last one runs
    // right after the first ends, and the one it replaced never runs.
    s.enqueue(job("first", 600)).await.unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    let out = s
        .replace(job("second", 0), IfRunning::QueueAfter)
        .await
        .unwrap();
    let ReplaceOutcome::QueuedAfterRunning {
        generation: second, ..
    } = out
    else {
        panic!("{out:?}")
    };
    let out = s
        .replace(job("third", 600), IfRunning::QueueAfter)
        .await
        .unwrap();
    assert!(
        matches!(out, ReplaceOutcome::QueuedAfterRunning { replaced_waiting, .. } if replaced_waiting == Some(second)),
        "{out:?}"
    );
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    let runs = probe.runs();
    assert_eq!(runs[1].arg, "third");
    let first_end = runs[0].end.expect("the first run ended");
    assert!(
        first_end <= runs[1].start,
        "the new run overlapped the old one"
    );
    assert!(
        runs[1].start - first_end < soon,
        "released {} after the run ended",
        runs[1].start - first_end
    );

    // Abort: the replacement starts as soon as the aborted run stopped.
    let out = s.replace(job("fourth", 0), IfRunning::Abort).await.unwrap();
    assert!(
        matches!(out, ReplaceOutcome::AbortedRunning { .. }),
        "{out:?}"
    );
    let asked = Utc::now();
    assert!(probe.wait_started(3, Duration::from_secs(10)).await);
    let runs = probe.runs();
    assert_eq!(runs[2].arg, "fourth");
    assert!(
        runs[2].start - asked < soon,
        "released {} after the abort",
        runs[2].start - asked
    );
    assert_eq!(
        wait_status(&s, "job", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(
        probe.runs_of("second").len(),
        0,
        "a replaced replacement ran"
    );
    s.close().await;
}

async fn close_releases_running_jobs_to_another_worker_at_once(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("close");
    let config = WorkerConfig {
        lease: Duration::from_secs(30),
        heartbeat: Some(Duration::from_secs(10)),
        ..fast_worker()
    };
    let a = worker_with(&fx.url(), &ns, &probe, config.clone()).await;
    a.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(2_000)).id("long"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    a.close().await; // grace 500 ms < job: released
    let released_at = Utc::now();
    let b = worker_with(&fx.url(), &ns, &probe, config).await;
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let runs = probe.runs_of("long");
    assert_eq!(runs.len(), 2);
    // Re-run long before the 30 s lease would have expired.
    assert!(runs[1].start - released_at < TimeDelta::seconds(10));
    // The released run's number is never handed out again (a fence token);
    // the allowance grew instead, so the release used up no attempt.
    assert_eq!(runs[1].attempt, 2, "the next run gets a new attempt number");
    b.close().await;
}

async fn keep_result_zero_keeps_nothing_but_ids_are_reusable(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("keep0");
    let s = Scheduler::builder(fx.url())
        .namespace(&ns)
        .keep_result(Duration::ZERO)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    s.enqueue(probe_job("k", "1")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert_eq!(
        wait_status(&s, "k", |st| *st == JobStatus::NotFound).await,
        JobStatus::NotFound
    );
    assert!(s.enqueue(probe_job("k", "2")).await.unwrap().is_enqueued());
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    s.close().await;
}

async fn registry_lists_tasks_and_typed_names_match(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("registry"), &probe).await;
    let names: Vec<&str> = s.registry().tasks().map(|t| t.name).collect();
    assert!(names.contains(&ProbeTask::NAME) && names.contains(&"quick_timeout"));
    s.close().await;
}

async fn pending_jobs_of_a_task_are_listed_with_typed_arguments(fx: Fixture) {
    let ns = namespace("pending");
    let p = producer(&fx.url(), &ns).await;
    let base = Utc::now() + TimeDelta::hours(1);
    for i in (0..5).rev() {
        p.enqueue(
            probe_job(&format!("p{i}"), &format!("user-{i}")).at(base + TimeDelta::minutes(i)),
        )
        .await
        .unwrap();
    }
    // A task this binary does not know: its JSON is stored and listed as given.
    p.enqueue_untyped(
        "other",
        Some("o"),
        &serde_json::json!({"a": 1}),
        When::At(base),
    )
    .await
    .unwrap();
    // A `#[task]` of this binary, by name and by position: both stored by position.
    p.enqueue_untyped(
        "remind",
        Some("r-named"),
        &serde_json::json!({"minutes": 5, "user": "ada"}),
        When::At(base + TimeDelta::minutes(10)),
    )
    .await
    .unwrap();
    p.enqueue_untyped(
        "remind",
        Some("r-positional"),
        &serde_json::json!(["bob", 6]),
        When::At(base + TimeDelta::minutes(11)),
    )
    .await
    .unwrap();
    let reminders: Vec<(String, u32)> = p
        .pending::<remind>()
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.args.user, j.args.minutes))
        .collect();
    assert_eq!(reminders, [("ada".to_string(), 5), ("bob".to_string(), 6)]);
    let pending = p.pending::<ProbeTask>().await.unwrap();
    let listed: Vec<(String, String)> = pending
        .iter()
        .map(|j| (j.job_id.clone(), j.args.arg.clone()))
        .collect();
    let expected: Vec<(String, String)> = (0..5)
        .map(|i| (format!("p{i}"), format!("user-{i}")))
        .collect();
    assert_eq!(listed, expected);
    assert!(pending.windows(2).all(|w| w[0].run_at < w[1].run_at));
    assert_eq!(
        pending[0].run_at.timestamp_millis() / 1000,
        base.timestamp_millis() / 1000
    );
    let all = p.pending_untyped().await.unwrap();
    assert_eq!(all.len(), 8);
    let args_of = |id: &str| all.iter().find(|j| j.job_id == id).map(|j| j.args.clone());
    assert_eq!(args_of("o"), Some(serde_json::json!({"a": 1})));
    // Shown by name, whichever form they were given in.
    assert_eq!(
        args_of("r-named"),
        Some(serde_json::json!({"user": "ada", "minutes": 5}))
    );
    assert_eq!(
        args_of("r-positional"),
        Some(serde_json::json!({"user": "bob", "minutes": 6}))
    );
    // A hand-written task's own JSON (`params: None`) is shown as stored.
    assert_eq!(
        args_of("p0").and_then(|a| a.get("arg").cloned()),
        Some(serde_json::json!("user-0"))
    );
    p.close().await;
}

async fn untyped_arguments_are_checked_against_the_task_parameters(fx: Fixture) {
    let ns = namespace("untyped-args");
    let p = producer(&fx.url(), &ns).await;
    let cases = [
        (
            serde_json::json!({"user": "ada", "minutse": 5}),
            "unknown argument `minutse`; missing argument `minutes`",
        ),
        (
            serde_json::json!({"user": "ada"}),
            "missing argument `minutes`",
        ),
        (
            serde_json::json!(["ada", 5, "extra"]),
            "3 arguments given by position, 2 expected",
        ),
        (
            serde_json::json!("ada"),
            "expected a JSON object (by name) or array (by position), not a string",
        ),
    ];
    for (args, problem) in cases {
        let err = p
            .enqueue_untyped("remind", Some("bad"), &args, When::Now)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Arguments { .. }), "{args}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "arguments of task `remind` do not match its parameters (user, minutes): {problem}"
            ),
            "{args}"
        );
    }
    assert_eq!(p.status("bad").await.unwrap(), JobStatus::NotFound);
    // A task this binary does not know, or one with its own JSON: passed through.
    for (task, id) in [("elsewhere", "e"), ("probe", "h")] {
        p.enqueue_untyped(
            task,
            Some(id),
            &serde_json::json!({"any": "thing"}),
            When::Now,
        )
        .await
        .unwrap();
    }
    let all = p.pending_untyped().await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|j| j.args == serde_json::json!({"any": "thing"})));
    p.close().await;
}

/// Issue 14 item 3: a release used to give its attempt back (attempt 1 -> 0),
/// so the next claim got the same (generation, attempt) and the released
/// run's outcome, delivered again (a re-send, a retried batch), matched the
/// new run. The attempt number now only grows; the allowance grows with a
/// release instead, so a release still uses up no attempt.
async fn a_release_never_hands_its_fence_token_out_again(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("release-fence");
    let config = WorkerConfig {
        lease: Duration::from_secs(30),
        heartbeat: Some(Duration::from_secs(10)),
        shutdown_grace: Duration::from_millis(100),
        ..fast_worker()
    };
    let a = worker_with(&fx.url(), &ns, &probe, config.clone()).await;
    let job = JobRequest::<ProbeTask>::new(ProbeArgs::new("fenced").sleep(1_500))
        .id("fenced")
        .max_attempts(1);
    let generation = match a.enqueue(job).await.unwrap() {
        EnqueueOutcome::Enqueued { generation, .. } => generation,
        other => panic!("{other:?}"),
    };
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    let released = probe.runs()[0].attempt;
    a.close().await; // grace 100 ms < job: released
    let b = worker_with(&fx.url(), &ns, &probe, config).await;
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    let rerun = probe.runs()[1].clone();
    assert_eq!(rerun.generation, generation);
    assert_ne!(
        rerun.attempt, released,
        "the next claim reused the released run's fence token"
    );
    // The released run's release, delivered again, matches nothing.
    let code = scheduler::__private::record_outcome(&b, "fenced", generation, released, "release")
        .await
        .unwrap();
    assert_eq!(code, "stale");
    // The rightful owner's run is untouched and ends normally, although the
    // job allowed one attempt: the release used up none.
    let info = b.info("fenced").await.unwrap().unwrap();
    assert_eq!(
        info.status,
        JobStatus::Running {
            attempt: rerun.attempt,
            worker: match &info.status {
                JobStatus::Running { worker, .. } => worker.clone(),
                _ => String::new(),
            },
        }
    );
    assert_eq!(info.max_attempts, 2, "the release added one attempt");
    assert_eq!(
        wait_status(&b, "fenced", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(probe.runs_of("fenced").len(), 2);
    b.close().await;
}

/// Issue 14 item 18: a cancel that found a running job and a replacement
/// waiting behind it removed the replacement but answered only
/// `AbortSignalled` for the running one: the generation `replace` had
/// acknowledged silently never ran.
async fn a_cancel_names_the_waiting_successor_it_removed(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("cancel-successor"), &probe).await;
    let job = |arg: &str| JobRequest::<ProbeTask>::new(ProbeArgs::new(arg).sleep(1_000)).id("c");
    let running = match s.enqueue(job("running")).await.unwrap() {
        EnqueueOutcome::Enqueued { generation, .. } => generation,
        other => panic!("{other:?}"),
    };
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    let successor = match s
        .replace(job("successor"), IfRunning::QueueAfter)
        .await
        .unwrap()
    {
        ReplaceOutcome::QueuedAfterRunning {
            generation,
            running_generation,
            ..
        } => {
            assert_eq!(running_generation, running);
            generation
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s.cancel("c").await.unwrap(),
        CancelOutcome::AbortSignalled {
            generation: running,
            removed_successor: Some(successor),
        }
    );
    assert_eq!(
        wait_status(&s, "c", |st| *st == JobStatus::Cancelled).await,
        JobStatus::Cancelled
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        probe.runs_of("successor").is_empty(),
        "the removed successor ran"
    );
    // Only the running one is named when nothing waits.
    s.enqueue(job("alone")).await.unwrap();
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    assert!(matches!(
        s.cancel("c").await.unwrap(),
        CancelOutcome::AbortSignalled {
            removed_successor: None,
            ..
        }
    ));
    s.close().await;
}

/// Cases added for issue 14 (validation, wake-ups, replace policies), kept in
/// a module of their own so that they sit at the end of the file.
mod issue14 {
    use super::*;

    /// As `conformance!`, on a multi-threaded runtime, as most applications
    /// run the worker (tasks woken by a finishing job then run in another order).
    macro_rules! conformance_multi_thread {
        ($($name:ident),* $(,)?) => {
            mod redis_multi_thread {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name(scheduler_tests::Fixture::redis()).await
                    }
                )*
            }
            mod memory_multi_thread {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name(scheduler_tests::Fixture::memory()).await
                    }
                )*
            }
        };
    }

    conformance!(
        retries_and_jobs_enqueued_behind_them_are_woken_not_left_to_the_idle_poll,
        replace_follows_its_policy_in_every_state,
        dead_letters_pages_alike_on_both_backends_and_count_0_is_empty,
        typed_calls_act_only_on_their_tasks_jobs_and_name_the_other_task,
    );
    conformance_multi_thread!(
        retries_and_jobs_enqueued_behind_them_are_woken_not_left_to_the_idle_poll,
    );

    /// A worker that never wakes on its own within a test: only notifications
    /// (and the next due job or lease expiry it was told of) wake it.
    fn sleepy_worker() -> WorkerConfig {
        WorkerConfig {
            lease: Duration::from_secs(20),
            heartbeat: Some(Duration::from_secs(5)),
            max_idle: Duration::from_secs(60),
            ..scheduler_tests::setup::fast_worker()
        }
    }

    /// The latest start a woken worker is allowed, in ms: far below the sleepy
    /// worker's 60 s idle poll, so a missing wake-up fails the test, and far
    /// above what a loaded CI machine adds (this is not a speed target; the
    /// benchmark measures lateness).
    const WOKEN_WITHIN_MS: i64 = 5_000;

    /// How late a run started after it was due, in ms.
    fn lateness(run: &scheduler_tests::Execution) -> i64 {
        (run.start - run.scheduled_at).num_milliseconds()
    }

    async fn retries_and_jobs_enqueued_behind_them_are_woken_not_left_to_the_idle_poll(
        fx: Fixture,
    ) {
        let probe = Probe::default();
        let s = worker_with(&fx.url(), &namespace("wake"), &probe, sleepy_worker()).await;
        // Fails twice, then succeeds: two retries, 25-200 ms apart.
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("f").fail(2)).id("f"))
            .await
            .unwrap();
        assert!(
            probe.wait_finished(3, Duration::from_secs(20)).await,
            "{:#?}",
            probe.runs()
        );
        let runs = probe.runs_of("f");
        assert_eq!(
            runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        for run in &runs {
            assert!(
                lateness(run) < WOKEN_WITHIN_MS,
                "attempt started late: {run:#?}"
            );
        }
        // A job enqueued once a retry is due (the retry, if nobody was told
        // about it, would still sit unclaimed in front of it).
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("g").fail(1)).id("g"))
            .await
            .unwrap();
        assert!(probe.wait_finished(4, Duration::from_secs(20)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.enqueue(probe_job("h", "h")).await.unwrap();
        assert!(
            probe.wait_finished(6, Duration::from_secs(20)).await,
            "{:#?}",
            probe.runs()
        );
        for id in ["g", "h"] {
            for run in probe.runs_of(id) {
                assert!(lateness(&run) < WOKEN_WITHIN_MS, "started late: {run:#?}");
            }
        }
        s.close().await;
    }

    /// Every `IfRunning` policy against every state of the id: nothing,
    /// pending, running, and running with a replacement already waiting.
    async fn replace_follows_its_policy_in_every_state(fx: Fixture) {
        let probe = Probe::default();
        let s = worker(&fx.url(), &namespace("policies"), &probe).await;
        let policies = [
            ("abort", IfRunning::Abort),
            ("after", IfRunning::QueueAfter),
            ("keep", IfRunning::Keep),
        ];
        let long =
            |id: &str| JobRequest::<ProbeTask>::new(ProbeArgs::new("running").sleep(1500)).id(id);
        let later = Utc::now() + TimeDelta::seconds(60);
        let mut running_generation = std::collections::HashMap::new();
        for (name, _) in policies {
            s.enqueue(probe_job(&format!("{name}-pending"), "old").at(later))
                .await
                .unwrap();
            for state in ["running", "both"] {
                let id = format!("{name}-{state}");
                let out = s.enqueue(long(&id)).await.unwrap();
                let EnqueueOutcome::Enqueued { generation, .. } = out else {
                    panic!("{out:?}")
                };
                running_generation.insert(id, generation);
            }
        }
        assert!(probe.wait_started(6, Duration::from_secs(10)).await);
        for (name, _) in policies {
            let out = s
                .replace(
                    probe_job(&format!("{name}-both"), "waiting"),
                    IfRunning::QueueAfter,
                )
                .await
                .unwrap();
            assert!(
                matches!(out, ReplaceOutcome::QueuedAfterRunning { .. }),
                "{out:?}"
            );
        }
        for (name, policy) in policies {
            for state in ["nothing", "pending", "running", "both"] {
                let id = format!("{name}-{state}");
                let out = s.replace(probe_job(&id, "new"), policy).await.unwrap();
                let running = running_generation.get(&id).copied().unwrap_or(0);
                let ok = match (state, policy) {
                    ("nothing", _) => matches!(out, ReplaceOutcome::Enqueued { .. }),
                    ("pending", _) => matches!(out, ReplaceOutcome::Replaced { .. }),
                    (_, IfRunning::Abort) => matches!(
                        out,
                        ReplaceOutcome::AbortedRunning { aborted_generation, .. }
                            if aborted_generation == running
                    ),
                    (_, IfRunning::QueueAfter) => matches!(
                        out,
                        ReplaceOutcome::QueuedAfterRunning { running_generation, .. }
                            if running_generation == running
                    ),
                    (_, IfRunning::Keep) => {
                        out == ReplaceOutcome::Running {
                            generation: running,
                        }
                    }
                };
                assert!(ok, "{id}: {out:?}");
            }
        }
        // What ran, by id: (argument, whether it ran to its end).
        let expected: Vec<(String, Vec<(&str, bool)>)> = policies
            .iter()
            .flat_map(|(name, policy)| {
                let after_running = match policy {
                    IfRunning::Abort => vec![("running", false), ("new", true)],
                    IfRunning::QueueAfter => vec![("running", true), ("new", true)],
                    IfRunning::Keep => vec![("running", true)],
                };
                let after_both = match policy {
                    IfRunning::Keep => vec![("running", true), ("waiting", true)],
                    _ => after_running.clone(),
                };
                [
                    (format!("{name}-nothing"), vec![("new", true)]),
                    (format!("{name}-pending"), vec![("new", true)]),
                    (format!("{name}-running"), after_running),
                    (format!("{name}-both"), after_both),
                ]
            })
            .collect();
        let runs_of = |id: &str| -> Vec<(String, bool)> {
            probe
                .runs_of(id)
                .into_iter()
                .map(|r| (r.arg, r.end.is_some()))
                .collect()
        };
        let done = scheduler_tests::wait_until(Duration::from_secs(15), || {
            expected.iter().all(|(id, want)| {
                let ran = runs_of(id);
                ran.len() >= want.len() && ran.last().is_some_and(|(_, ended)| *ended)
            })
        })
        .await;
        // Anything that should not run has had its chance.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (id, want) in &expected {
            let want: Vec<(String, bool)> = want.iter().map(|(a, e)| (a.to_string(), *e)).collect();
            assert_eq!(runs_of(id), want, "{id} (all settled: {done})");
            // A job queued after a running one starts after it ended.
            let runs = probe.runs_of(id);
            if let [first, second] = runs.as_slice() {
                if let Some(end) = first.end {
                    assert!(second.start >= end, "{id}: {runs:#?}");
                }
            }
        }
        s.close().await;
    }

    async fn dead_letters_pages_alike_on_both_backends_and_count_0_is_empty(fx: Fixture) {
        let probe = Probe::default();
        let s = worker(&fx.url(), &namespace("dead-pages"), &probe).await;
        for id in ["d1", "d2", "d3"] {
            let job = JobRequest::<ProbeTask>::new(ProbeArgs::new(id).mode("permanent")).id(id);
            s.enqueue(job).await.unwrap();
            // One at a time, so that they are dead-lettered in this order.
            wait_status(&s, id, |st| *st == JobStatus::Failed).await;
        }
        let page = |offset: usize, count: usize| {
            let s = s.clone();
            async move {
                s.dead_letters(offset, count)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| d.job_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(page(0, 10).await, ["d3", "d2", "d1"]);
        assert_eq!(
            page(0, 0).await,
            Vec::<String>::new(),
            "count 0 is an empty page"
        );
        assert_eq!(page(1, 0).await, Vec::<String>::new());
        assert_eq!(page(0, 2).await, ["d3", "d2"]);
        assert_eq!(page(2, 2).await, ["d1"]);
        assert_eq!(page(3, 2).await, Vec::<String>::new());
        assert_eq!(page(0, usize::MAX).await, ["d3", "d2", "d1"]);
        assert_eq!(page(usize::MAX, 1).await, Vec::<String>::new());
        s.close().await;
    }

    /// `Error::WrongTask` naming both tasks, and nothing changed.
    fn assert_wrong_task<T: std::fmt::Debug>(
        result: Result<T, Error>,
        id: &str,
        expected: &str,
        found: &str,
    ) {
        match result {
            Err(Error::WrongTask {
                job_id,
                expected: e,
                found: f,
            }) => assert_eq!(
                (job_id.as_str(), e.as_str(), f.as_str()),
                (id, expected, found)
            ),
            other => panic!("{id}: expected WrongTask({expected} vs {found}), got {other:?}"),
        }
    }

    /// Job ids are global, but a task's typed calls act only on its own jobs.
    async fn typed_calls_act_only_on_their_tasks_jobs_and_name_the_other_task(fx: Fixture) {
        let probe = Probe::default();
        let s = worker(&fx.url(), &namespace("typed-scope"), &probe).await;
        let later = Utc::now() + TimeDelta::seconds(60);

        // A pending `probe` job: `remind`'s helpers leave it alone.
        s.enqueue(probe_job("p", "p").at(later)).await.unwrap();
        let before = s.info("p").await.unwrap().unwrap();
        assert_wrong_task(
            remind::replace(&s, "p", later, "ada".into(), 5).await,
            "p",
            "remind",
            "probe",
        );
        assert_wrong_task(remind::cancel(&s, "p").await, "p", "remind", "probe");
        assert_wrong_task(remind::status(&s, "p").await, "p", "remind", "probe");
        let dup = remind::defer_to(&s, "p", later, "ada".into(), 5)
            .await
            .unwrap();
        assert!(
            matches!(&dup, EnqueueOutcome::Duplicate { task, generation, .. }
                if task == "probe" && *generation == before.generation),
            "{dup:?}"
        );
        let after = s.info("p").await.unwrap().unwrap();
        assert_eq!(
            (after.task.as_str(), after.generation, &after.status),
            ("probe", before.generation, &before.status)
        );

        // A pending `remind` job: the typed calls of `probe` leave it alone.
        remind::defer_to(&s, "r", later, "bob".into(), 1)
            .await
            .unwrap();
        assert_wrong_task(
            s.replace(probe_job("r", "x"), IfRunning::Abort).await,
            "r",
            "probe",
            "remind",
        );
        assert_wrong_task(
            s.cancel_typed::<ProbeTask>("r").await,
            "r",
            "probe",
            "remind",
        );
        assert!(matches!(
            remind::status(&s, "r").await.unwrap(),
            JobStatus::Deferred { .. }
        ));
        // Its own helpers act on it.
        assert!(matches!(
            remind::cancel(&s, "r").await.unwrap(),
            CancelOutcome::Removed { .. }
        ));

        // A running `probe` job: not replaced, not aborted by `remind`'s helpers.
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("run").sleep(800)).id("run"))
            .await
            .unwrap();
        assert!(probe.wait_started(1, Duration::from_secs(10)).await);
        assert_wrong_task(
            remind::replace(&s, "run", later, "ada".into(), 5).await,
            "run",
            "remind",
            "probe",
        );
        assert_wrong_task(remind::cancel(&s, "run").await, "run", "remind", "probe");
        let dup = remind::enqueue(&s, "run", "ada".into(), 5).await.unwrap();
        assert!(
            matches!(&dup, EnqueueOutcome::Duplicate { task, state: PendingState::Running, .. } if task == "probe"),
            "{dup:?}"
        );
        assert_eq!(
            wait_status(&s, "run", |st| *st == JobStatus::Completed).await,
            JobStatus::Completed
        );
        assert!(probe.runs_of("run")[0].end.is_some(), "the run was aborted");
        // Finished: its result is read as `probe`'s only.
        assert_wrong_task(s.result::<remind>("run").await, "run", "remind", "probe");
        assert_eq!(
            s.result::<ProbeTask>("run").await.unwrap(),
            scheduler::JobResult::Completed(3)
        );
        assert_wrong_task(remind::cancel(&s, "run").await, "run", "remind", "probe");
        assert_wrong_task(remind::status(&s, "run").await, "run", "remind", "probe");
        // The untyped calls still act on any task's job.
        assert!(matches!(
            s.cancel("p").await.unwrap(),
            CancelOutcome::Removed { .. }
        ));
        s.close().await;
    }
}

/// Issue 14 items 19 and 13: the application cannot know whether an enqueue
/// that timed out was written; sent again with the same request id, it must
/// get the first answer and create nothing, also after its job ran, with
/// `keep_result` zero, and for `replace` and `enqueue_many`.
async fn a_request_sent_again_with_its_request_id_gets_the_first_answer(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("request-id");
    let p = producer(&fx.url(), &ns).await;
    let later = |id: &str, arg: &str| probe_job(id, arg).after(Duration::from_secs(3600));

    // Pending: the same answer, one job.
    let first = p
        .enqueue(later("e", "a").request_id("req-1"))
        .await
        .unwrap();
    assert!(first.is_enqueued(), "{first:?}");
    let again = p
        .enqueue(later("e", "a").request_id("req-1"))
        .await
        .unwrap();
    assert_eq!(again, first);
    // Another request for the id is a duplicate, as always.
    assert!(matches!(
        p.enqueue(later("e", "a").request_id("req-2"))
            .await
            .unwrap(),
        EnqueueOutcome::Duplicate { .. }
    ));

    // replace: the re-sent request answers `Replaced` naming the generation
    // it created, and replaces nothing more.
    let replaced = p
        .replace(later("e", "b").request_id("req-3"), IfRunning::Abort)
        .await
        .unwrap();
    let ReplaceOutcome::Replaced { generation, .. } = replaced else {
        panic!("{replaced:?}");
    };
    let again = p
        .replace(later("e", "b").request_id("req-3"), IfRunning::Abort)
        .await
        .unwrap();
    assert_eq!(again, replaced);
    assert_eq!(p.info("e").await.unwrap().unwrap().generation, generation);

    // Without an id, the job id is the request id.
    let out = p.enqueue(later("unused", "c").request_id("req-4")).await;
    assert!(out.unwrap().is_enqueued());
    let bare = JobRequest::<ProbeTask>::new(ProbeArgs::new("c"))
        .after(Duration::from_secs(3600))
        .request_id("req-5");
    let out = p.enqueue(bare).await.unwrap();
    assert!(out.is_enqueued());
    assert!(p.info("req-5").await.unwrap().is_some());

    // enqueue_many: a request with a request id sent again is still one job.
    let batch = |n: u32| {
        (0..n).map(|i| {
            let request = later(&format!("m{i}"), "m");
            if i == 1 {
                request.request_id("req-6")
            } else {
                request
            }
        })
    };
    let outcomes = p.enqueue_many(batch(3)).await.unwrap();
    assert!(outcomes.iter().all(EnqueueOutcome::is_enqueued));
    let again = p.enqueue_many(batch(3)).await.unwrap();
    assert_eq!(again[1], outcomes[1]);
    assert!(!again[0].is_enqueued() && !again[2].is_enqueued());
    p.close().await;

    // After the job ran, with keep_result zero (no outcome kept): still the
    // first answer, and the job does not run again.
    let w = Scheduler::builder(fx.url())
        .namespace(&ns)
        .keep_result(Duration::ZERO)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let first = w
        .enqueue(probe_job("ran", "r").request_id("req-7"))
        .await
        .unwrap();
    assert!(first.is_enqueued());
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert_eq!(
        wait_status(&w, "ran", |st| *st == JobStatus::NotFound).await,
        JobStatus::NotFound
    );
    let again = w
        .enqueue(probe_job("ran", "r").request_id("req-7"))
        .await
        .unwrap();
    assert_eq!(again, first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(probe.runs_of("ran").len(), 1, "the request ran twice");
    // Without a request id the same request is a new job (the id is free).
    assert!(w
        .enqueue(probe_job("ran", "r"))
        .await
        .unwrap()
        .is_enqueued());
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    // A request id is checked before the backend is touched.
    assert!(matches!(
        w.enqueue(probe_job("bad", "r").request_id("")).await,
        Err(Error::InvalidRequestId { .. })
    ));
    w.close().await;
}

/// Issue 14 item 18: every `replace` answer names each generation it
/// affected. Before, `Replaced` did not name the generation it replaced, and
/// with a replacement already waiting behind a running job, `Abort` answered
/// `AbortedRunning` without saying that the waiting one was replaced too, and
/// `QueueAfter` answered `Replaced` without naming it (nor the running one
/// the new job waits for). `Keep` changes nothing.
async fn a_replace_names_every_generation_it_affected(fx: Fixture) {
    let probe = Probe::default();
    let s = worker(&fx.url(), &namespace("replace-names"), &probe).await;
    let created = |out: EnqueueOutcome| match out {
        EnqueueOutcome::Enqueued { generation, .. } => generation,
        other => panic!("{other:?}"),
    };

    // A deferred job: the answer names it, and it never runs.
    let later = Utc::now() + TimeDelta::seconds(60);
    let old = created(s.enqueue(probe_job("p", "old").at(later)).await.unwrap());
    let out = s
        .replace(probe_job("p", "new"), IfRunning::Abort)
        .await
        .unwrap();
    let ReplaceOutcome::Replaced {
        generation: new_p,
        run_at,
        previous_run_at,
        replaced_generation,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(replaced_generation, old, "{out:?}");
    assert!(new_p > old, "{out:?}");
    assert!(run_at < later && previous_run_at.timestamp() == later.timestamp());

    // Running jobs, each with a replacement waiting behind it.
    let long =
        |id: &str| JobRequest::<ProbeTask>::new(ProbeArgs::new("running").sleep(2_000)).id(id);
    let ids = ["abort", "after", "keep"];
    let mut running = Vec::new();
    for id in ids {
        running.push(created(s.enqueue(long(id)).await.unwrap()));
    }
    assert!(probe.wait_started(4, Duration::from_secs(10)).await);
    let mut waiting = Vec::new();
    for (id, &running) in ids.iter().zip(&running) {
        let out = s
            .replace(probe_job(id, "waiting"), IfRunning::QueueAfter)
            .await
            .unwrap();
        let ReplaceOutcome::QueuedAfterRunning {
            generation,
            running_generation,
            replaced_waiting: None,
            ..
        } = out
        else {
            panic!("{id}: {out:?}")
        };
        assert_eq!(running_generation, running, "{id}: {out:?}");
        waiting.push(generation);
    }

    // Abort: names the running generation it aborted and the waiting one it replaced.
    let out = s
        .replace(probe_job("abort", "new"), IfRunning::Abort)
        .await
        .unwrap();
    let ReplaceOutcome::AbortedRunning {
        generation: new_abort,
        run_at,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        out,
        ReplaceOutcome::AbortedRunning {
            generation: new_abort,
            run_at,
            aborted_generation: running[0],
            replaced_waiting: Some(waiting[0]),
        }
    );
    // QueueAfter: names the running generation it waits for and the waiting one it replaced.
    let out = s
        .replace(probe_job("after", "new"), IfRunning::QueueAfter)
        .await
        .unwrap();
    let ReplaceOutcome::QueuedAfterRunning {
        generation: new_after,
        run_at,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        out,
        ReplaceOutcome::QueuedAfterRunning {
            generation: new_after,
            run_at,
            running_generation: running[1],
            replaced_waiting: Some(waiting[1]),
        }
    );
    // Keep: nothing changes; the waiting one keeps waiting.
    assert_eq!(
        s.replace(probe_job("keep", "new"), IfRunning::Keep)
            .await
            .unwrap(),
        ReplaceOutcome::Running {
            generation: running[2],
        }
    );

    // What ran is what the answers named: (generation, argument, ran to its end).
    let expected = [
        ("p", vec![(new_p, "new", true)]),
        (
            "abort",
            vec![(running[0], "running", false), (new_abort, "new", true)],
        ),
        (
            "after",
            vec![(running[1], "running", true), (new_after, "new", true)],
        ),
        (
            "keep",
            vec![(running[2], "running", true), (waiting[2], "waiting", true)],
        ),
    ];
    let runs_of = |id: &str| -> Vec<(u64, String, bool)> {
        probe
            .runs_of(id)
            .into_iter()
            .map(|r| (r.generation, r.arg, r.end.is_some()))
            .collect()
    };
    let settled = scheduler_tests::wait_until(Duration::from_secs(15), || {
        expected.iter().all(|(id, want)| {
            runs_of(id).iter().filter(|r| r.2).count() == want.iter().filter(|w| w.2).count()
        })
    })
    .await;
    // Anything that should not run has had its chance.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, want) in &expected {
        let want: Vec<(u64, String, bool)> = want
            .iter()
            .map(|(g, a, e)| (*g, a.to_string(), *e))
            .collect();
        assert_eq!(runs_of(id), want, "{id} (settled: {settled})");
        let last = want.last().map_or(0, |w| w.0);
        assert_eq!(s.info(id).await.unwrap().unwrap().generation, last, "{id}");
    }
    s.close().await;
}

/// A cancel that answered `AbortSignalled` promises the running job ends
/// `Cancelled`. When the run ends `ok` before the abort reaches its worker
/// (the worker here blocks its only runtime thread, so it cannot see the
/// abort), the outcome that arrives afterwards must still record `Cancelled`
/// (the fault-history checker found such runs recorded `Completed`).
async fn a_run_that_ends_after_its_abort_was_answered_ends_cancelled(fx: Fixture) {
    let url = fx.url();
    let ns = namespace("abort-then-ok");
    let probe = Probe::default();
    let (ready, started) = std::sync::mpsc::channel();
    let worker_thread = std::thread::spawn({
        let (url, ns, probe) = (url.clone(), ns.clone(), probe.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let w = worker_with(&url, &ns, &probe, fast_worker()).await;
                ready.send(()).unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
                w.close().await;
            });
        }
    });
    started.recv().unwrap();
    let p = producer(&url, &ns).await;
    let job = JobRequest::<ProbeTask>::new(ProbeArgs::new("x").mode("block").sleep(1_500)).id("x");
    let generation = match p.enqueue(job).await.unwrap() {
        EnqueueOutcome::Enqueued { generation, .. } => generation,
        other => panic!("{other:?}"),
    };
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    let attempt = probe.runs()[0].attempt;
    let out = p.cancel("x").await.unwrap();
    assert!(
        matches!(out, CancelOutcome::AbortSignalled { generation: g, .. } if g == generation),
        "{out:?}"
    );
    // The run's end arrives after the answer, as if it had finished first.
    let code = scheduler::__private::record_outcome(&p, "x", generation, attempt, "ok")
        .await
        .unwrap();
    assert_eq!(code, "cancelled");
    assert_eq!(p.status("x").await.unwrap(), JobStatus::Cancelled);
    worker_thread.join().unwrap();
    assert_eq!(p.status("x").await.unwrap(), JobStatus::Cancelled);
    p.close().await;
}

/// A request without `.id(..)` gets a generated id, returned in its outcome
/// (single and bulk): the job can be inspected and cancelled by it.
async fn an_enqueue_without_an_id_returns_the_id_it_generated(fx: Fixture) {
    let s = producer(&fx.url(), &namespace("generated-id")).await;
    let hour = Duration::from_secs(3600);
    let out = s
        .enqueue(remind::job("ada".into(), 5).after(hour))
        .await
        .unwrap();
    assert!(out.is_enqueued(), "{out:?}");
    let id = out.job_id().to_string();
    assert!(!id.is_empty());
    let info = s
        .info(&id)
        .await
        .unwrap()
        .expect("the generated id names the job");
    assert_eq!(info.task, "remind");
    let many = s
        .enqueue_many((0..3).map(|n| remind::job(format!("u{n}"), n).after(hour)))
        .await
        .unwrap();
    let ids: std::collections::HashSet<&str> = many.iter().map(|o| o.job_id()).collect();
    assert_eq!(ids.len(), 3, "{many:?}");
    assert!(!ids.contains(id.as_str()));
    let pending = s.pending_untyped().await.unwrap();
    let listed: std::collections::HashSet<&str> =
        pending.iter().map(|p| p.job_id.as_str()).collect();
    assert!(ids.iter().all(|i| listed.contains(i)), "{listed:?}");
    assert!(matches!(
        s.cancel(&id).await.unwrap(),
        CancelOutcome::Removed { .. }
    ));
    s.close().await;
}
