//! Re-sent requests (issue 14, items 2, 13, 18 and 19): a state-changing call
//! whose reply is lost (the connection drops after Redis ran it) is sent again,
//! by the client or by the application; it must be answered with what the
//! first execution did, never run a second time. A proxy loses the reply of a
//! chosen script call and holds the re-send back while another client changes
//! the data. Redis only: the in-memory backend cannot lose a reply.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use scheduler::{
    CancelOutcome, EnqueueOutcome, IfRunning, JobRequest, JobStatus, ReplaceOutcome, Scheduler,
    WorkerConfig,
};
use scheduler_tests::proxy::{Mode, Proxy};
use scheduler_tests::setup::{fast_worker, probe_job, wait_status};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, Probe, RedisServer};

/// A scheduler on `url` with a 3 s command timeout, a worker when given.
async fn start(
    url: &str,
    ns: &str,
    probe: &Probe,
    keep_result: Duration,
    worker: Option<WorkerConfig>,
) -> Scheduler {
    let builder = Scheduler::builder(url)
        .namespace(ns)
        .command_timeout(Duration::from_secs(3))
        .keep_result(keep_result)
        .register::<ProbeTask>()
        .provide(probe.clone());
    scheduler_tests::setup::start_with_worker(builder, worker).await
}

fn deferred(id: &str, arg: &str) -> JobRequest<ProbeTask> {
    probe_job(id, arg).after(Duration::from_secs(3600))
}

/// Job `id` completed (within 10 s) after one run, its first attempt: the
/// reply of `what` was lost on the way.
async fn ran_once_at_first_attempt(direct: &Scheduler, probe: &Probe, id: &str, what: &str) {
    assert_eq!(
        wait_status(direct, id, |st| matches!(
            st,
            JobStatus::Completed | JobStatus::Failed
        ))
        .await,
        JobStatus::Completed,
        "{what}: dead letter: {:?}",
        direct.dead_letters(0, 10).await.unwrap()
    );
    let runs = probe.runs_of(id);
    assert_eq!(runs.len(), 1, "{what}: {runs:?}");
    assert_eq!(runs[0].attempt, 1, "{what}");
}

fn generation_of(out: &EnqueueOutcome) -> u64 {
    match out {
        EnqueueOutcome::Enqueued { generation, .. } => *generation,
        other => panic!("not enqueued: {other:?}"),
    }
}

/// A cancel without a generation whose reply was lost, sent again after
/// another client enqueued a new job under the id, used to cancel that job.
#[tokio::test]
async fn a_resent_cancel_does_not_cancel_a_job_enqueued_in_between() {
    resent_cancel(false).await;
}

/// The same where the server refuses functions and the scripts run with
/// EVALSHA (their EVAL form goes through the same reply log).
#[tokio::test]
async fn a_resent_cancel_run_with_evalsha_does_not_cancel_a_job_enqueued_in_between() {
    resent_cancel(true).await;
}

async fn resent_cancel(evalsha: bool) {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-cancel");
    let probe = Probe::default();
    let direct = start(&server.url(), &ns, &probe, Duration::from_secs(60), None).await;
    let lossy_url = if evalsha {
        let user = server.add_user_without_functions();
        format!("redis://{user}@127.0.0.1:{}", proxy.port())
    } else {
        proxy.url()
    };
    let lossy = start(&lossy_url, &ns, &probe, Duration::from_secs(60), None).await;

    let first = generation_of(&direct.enqueue(deferred("x", "first")).await.unwrap());
    let pattern: &[u8] = if evalsha { b"EVALSHA" } else { b"_cancel" };
    proxy.lose_reply_of(pattern);
    let cancel = tokio::spawn({
        let lossy = lossy.clone();
        async move { lossy.cancel("x").await }
    });
    proxy.tripped().await;
    // The cancel ran: the id is free, and another client takes it.
    let second = generation_of(&direct.enqueue(deferred("x", "second")).await.unwrap());
    assert!(second > first);
    proxy.set_mode(Mode::Pass);

    let outcome = cancel.await.unwrap().unwrap();
    assert_eq!(outcome, CancelOutcome::Removed { generation: first });
    let info = direct.info("x").await.unwrap().unwrap();
    assert_eq!(
        info.generation, second,
        "the re-sent cancel removed {info:?}"
    );
    assert!(
        matches!(info.status, JobStatus::Deferred { .. }),
        "{info:?}"
    );
    let stats = server.cli(&["INFO", "commandstats"]).unwrap();
    assert_eq!(
        stats.contains("cmdstat_evalsha:"),
        evalsha,
        "EVALSHA used: {stats}"
    );
    lossy.close().await;
    direct.close().await;
}

/// A dead-letter requeue whose reply was lost used to run again, find the
/// job it had requeued pending, and answer `None`.
#[tokio::test]
async fn a_resent_requeue_answers_the_generation_it_created() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-requeue");
    let probe = Probe::default();
    let keep = Duration::from_secs(60);
    let w = start(&server.url(), &ns, &probe, keep, Some(fast_worker())).await;
    w.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("dead").mode("permanent"))
            .id("dead")
            .max_attempts(1),
    )
    .await
    .unwrap();
    assert_eq!(
        wait_status(&w, "dead", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    w.close().await;
    let direct = start(&server.url(), &ns, &probe, keep, None).await;
    assert_eq!(direct.dead_letters(0, 10).await.unwrap().len(), 1);

    let lossy = start(&proxy.url(), &ns, &probe, keep, None).await;
    proxy.lose_reply_of(b"_dead_letters");
    let requeue = tokio::spawn({
        let lossy = lossy.clone();
        async move { lossy.requeue_dead_letter("dead").await }
    });
    proxy.tripped().await;
    proxy.set_mode(Mode::Pass);
    let answered = requeue.await.unwrap().unwrap();
    let info = direct.info("dead").await.unwrap().unwrap();
    assert!(matches!(info.status, JobStatus::Queued { .. }), "{info:?}");
    assert_eq!(answered, Some(info.generation));
    assert!(direct.dead_letters(0, 10).await.unwrap().is_empty());
    lossy.close().await;
    direct.close().await;
}

/// The same request delivered twice by the network (a byte-for-byte replay
/// is not a re-send of the library's). A requeue that found nothing to requeue was
/// replayed after the job had been dead-lettered, and requeued it: a
/// generation no reply named (found by the fault-history soak). Every call
/// that names a request now looks its reply up first.
#[tokio::test]
async fn a_replayed_requeue_answers_as_the_first_and_changes_nothing() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("replayed-requeue");
    let probe = Probe::default();
    let keep = Duration::from_secs(60);
    let lossy = start(&proxy.url(), &ns, &probe, keep, None).await;
    proxy.duplicate(b"_dead_letters\r\n", Duration::from_millis(800));
    assert_eq!(lossy.requeue_dead_letter("dead").await.unwrap(), None);
    // Before the replay arrives, the job fails for good.
    let w = start(&server.url(), &ns, &probe, keep, Some(fast_worker())).await;
    w.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("dead").mode("permanent"))
            .id("dead")
            .max_attempts(1),
    )
    .await
    .unwrap();
    assert_eq!(
        wait_status(&w, "dead", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    assert_eq!(proxy.fired().len(), 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let info = w.info("dead").await.unwrap().unwrap();
    assert_eq!(
        info.status,
        JobStatus::Failed,
        "the replay requeued it: {info:?}"
    );
    assert_eq!(w.dead_letters(0, 10).await.unwrap().len(), 1);
    assert_eq!(probe.runs_of("dead").len(), 1);
    lossy.close().await;
    w.close().await;
}

/// A claim whose reply was lost, re-sent by the client as a new claim, took
/// the first batch's jobs for good: they were never returned, and a
/// one-attempt job was dead-lettered `stalled` without running.
#[tokio::test]
async fn a_resent_claim_gets_its_jobs_back() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-claim");
    let probe = Probe::default();
    let keep = Duration::from_secs(60);
    let config = WorkerConfig {
        lease: Duration::from_secs(2),
        heartbeat: Some(Duration::from_millis(500)),
        max_idle: Duration::from_secs(60),
        ..fast_worker()
    };
    let w = start(&proxy.url(), &ns, &probe, keep, Some(config)).await;
    let direct = start(&server.url(), &ns, &probe, keep, None).await;
    // Let the worker's first claims pass, then lose the reply of the next.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.lose_reply_of(b"_claim");
    direct
        .enqueue(probe_job("once", "once").max_attempts(1))
        .await
        .unwrap();
    proxy.tripped().await;
    proxy.set_mode(Mode::Pass);
    ran_once_at_first_attempt(&direct, &probe, "once", "claim").await;
    w.close().await;
    direct.close().await;
}

/// Item 18: a replace whose reply was lost and that was sent again answered
/// `Enqueued`, although the first execution had replaced a pending job. The
/// re-sent one answers `Replaced`, naming the generation it replaced.
#[tokio::test]
async fn a_resent_replace_answers_what_the_first_execution_did() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-replace");
    let probe = Probe::default();
    let keep = Duration::from_secs(60);
    let lossy = start(&proxy.url(), &ns, &probe, keep, None).await;
    let first = generation_of(&lossy.enqueue(deferred("r", "first")).await.unwrap());
    proxy.lose_reply_of(b"_enqueue");
    let replace = tokio::spawn({
        let lossy = lossy.clone();
        async move {
            lossy
                .replace(deferred("r", "second"), IfRunning::Abort)
                .await
        }
    });
    proxy.tripped().await;
    proxy.set_mode(Mode::Pass);
    let outcome = replace.await.unwrap().unwrap();
    let info = lossy.info("r").await.unwrap().unwrap();
    assert!(info.generation > first);
    assert!(
        matches!(outcome, ReplaceOutcome::Replaced { generation, replaced_generation, .. }
            if generation == info.generation && replaced_generation == first),
        "{outcome:?}"
    );
    lossy.close().await;
}

/// Item 13: with `keep_result = 0` no outcome record holds the request's
/// nonce once the job finished, so an enqueue re-sent after its job ran
/// created a second job.
#[tokio::test]
async fn a_resent_enqueue_after_its_job_ran_with_keep_result_zero_creates_no_second_job() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-keep0");
    let probe = Probe::default();
    let w = start(
        &server.url(),
        &ns,
        &probe,
        Duration::ZERO,
        Some(fast_worker()),
    )
    .await;
    let lossy = start(&proxy.url(), &ns, &probe, Duration::ZERO, None).await;
    proxy.lose_reply_of(b"_enqueue");
    let enqueue = tokio::spawn({
        let lossy = lossy.clone();
        async move { lossy.enqueue(probe_job("k0", "once")).await }
    });
    proxy.tripped().await;
    // The job runs and finishes, leaving nothing behind, before the re-send.
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert_eq!(
        wait_status(&w, "k0", |st| *st == JobStatus::NotFound).await,
        JobStatus::NotFound
    );
    proxy.set_mode(Mode::Pass);
    let outcome = enqueue.await.unwrap().unwrap();
    assert_eq!(generation_of(&outcome), probe.runs_of("k0")[0].generation);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        probe.runs_of("k0").len(),
        1,
        "the re-sent enqueue ran again"
    );
    assert_eq!(w.status("k0").await.unwrap(), JobStatus::NotFound);
    lossy.close().await;
    w.close().await;
}

/// Item 19: after `Error::Timeout` the application cannot know whether its
/// enqueue was written. Sent again with the same request id, it gets the
/// first answer and creates nothing.
#[tokio::test]
async fn a_request_sent_again_by_the_application_after_a_timeout_is_one_job() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-user");
    let probe = Probe::default();
    let direct = start(&server.url(), &ns, &probe, Duration::from_secs(60), None).await;
    let lossy = Scheduler::builder(proxy.url())
        .namespace(&ns)
        .command_timeout(Duration::from_millis(500))
        .register::<ProbeTask>()
        .producer_only()
        .start()
        .await
        .unwrap();
    let request = || deferred("t", "once").request_id("order-7");
    proxy.lose_reply_of(b"_enqueue");
    // The library's own re-send cannot get through either: the caller sees
    // a transient error although the job was written.
    let err = lossy.enqueue(request()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let written = direct.info("t").await.unwrap().unwrap();
    proxy.set_mode(Mode::Pass);
    let again = lossy.enqueue(request()).await.unwrap();
    assert!(
        matches!(again, EnqueueOutcome::Enqueued { generation, .. } if generation == written.generation),
        "{again:?}"
    );
    assert_eq!(direct.pending::<ProbeTask>().await.unwrap().len(), 1);
    lossy.close().await;
    direct.close().await;
}

/// An enqueue whose first send ran (its job created, run and finished) and
/// whose reply was lost, re-sent while another client's job now holds the
/// id: it used to answer `Duplicate` of that newer job, so the caller never
/// learned that its own request had created (and run) a job. It answers
/// `Enqueued` with its own generation (found by the fault-history soak).
#[tokio::test]
async fn a_resent_enqueue_names_its_own_job_when_a_newer_one_holds_the_id() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("resend-superseded");
    let probe = Probe::default();
    let keep = Duration::from_secs(3600);
    let w = start(&server.url(), &ns, &probe, keep, Some(fast_worker())).await;
    let lossy = start(&proxy.url(), &ns, &probe, keep, None).await;
    proxy.lose_reply_of(b"_enqueue_one");
    let enqueue = tokio::spawn({
        let lossy = lossy.clone();
        async move {
            lossy
                .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("mine")).id("s"))
                .await
        }
    });
    proxy.tripped().await;
    assert_eq!(
        wait_status(&w, "s", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed
    );
    let mine = w.info("s").await.unwrap().unwrap().generation;
    // Another client's job takes the id and runs.
    w.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("theirs").sleep(3_000)).id("s"))
        .await
        .unwrap();
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    proxy.set_mode(Mode::Pass);
    let answered = enqueue.await.unwrap().unwrap();
    assert!(
        matches!(answered, EnqueueOutcome::Enqueued { generation, .. } if generation == mine),
        "answered {answered:?}; the request created generation {mine}"
    );
    assert_eq!(probe.runs_of("s").len(), 2);
    lossy.close().await;
    w.close().await;
}

/// On a sharded namespace a limited job starts in a second script, once the
/// home shard granted it (`granted`, after `grants`). The reply of either
/// lost: the grant is asked again (and found already given), or the claim is
/// retried with its nonce and gets the started job back from the claim log.
/// Either way the job runs once, at once: not after its 20 s lease.
#[tokio::test]
async fn a_limited_job_whose_grant_or_start_reply_was_lost_runs_once_at_once() {
    use scheduler_tests::tasks::LimitedProbe;
    for pattern in [&b"_granted\r\n"[..], &b"_grants\r\n"[..]] {
        let server = RedisServer::start();
        let proxy = Proxy::start(server.port()).await;
        let ns = namespace("resend-grant");
        let probe = Probe::default();
        let with = |url: String| {
            Scheduler::builder(url)
                .namespace(&ns)
                .shards(3)
                .command_timeout(Duration::from_secs(3))
                .register::<LimitedProbe>()
                .provide(probe.clone())
        };
        let config = WorkerConfig {
            lease: Duration::from_secs(20),
            heartbeat: Some(Duration::from_secs(5)),
            max_idle: Duration::from_secs(60),
            ..fast_worker()
        };
        let w = with(proxy.url()).worker(config).start().await.unwrap();
        let direct = with(server.url()).producer_only().start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.lose_reply_of(pattern);
        direct
            .enqueue(
                JobRequest::<LimitedProbe>::new(ProbeArgs::new("once"))
                    .id("once")
                    .max_attempts(1),
            )
            .await
            .unwrap();
        proxy.tripped().await;
        proxy.set_mode(Mode::Pass);
        let what = String::from_utf8_lossy(pattern).trim().to_string();
        ran_once_at_first_attempt(&direct, &probe, "once", &what).await;
        w.close().await;
        direct.close().await;
    }
}
