//! Faults on the worker's side: a worker cut off from Redis while it runs a
//! job, invalid settings, shutdown under load, oversized results. Each test
//! owns its `redis-server` (and proxy).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scheduler::{
    Dep, DependencyKey, Error, IntoTaskResult, JobContext, JobRequest, JobStatus, Location,
    Scheduler, Task, TaskError, TaskFuture, TaskOptions, TaskRegistration, WorkerConfig,
};
use scheduler_tests::proxy::{Mode, Proxy};
use scheduler_tests::setup::wait_status;
use scheduler_tests::{conformance, namespace, wait_until, Fixture, RedisServer};
use serde::{Deserialize, Serialize};

/// One run of a [`Guarded`] job, as the task saw it.
#[derive(Clone, Debug)]
struct Run {
    job_id: String,
    worker: &'static str,
    attempt: u32,
    start: Instant,
    /// When the run's future ended: returned, or dropped.
    end: Option<Instant>,
    /// Whether it returned (false: its future was dropped).
    returned: bool,
    /// Whether `JobContext::is_cancelled` held when the future ended.
    cancelled_at_end: bool,
}

/// Shared log of runs; each worker gets a copy carrying its own name.
#[derive(Clone)]
struct Recorder {
    worker: &'static str,
    runs: Arc<Mutex<Vec<Run>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            worker: "-",
            runs: Arc::default(),
        }
    }

    fn named(&self, worker: &'static str) -> Self {
        Recorder {
            worker,
            runs: Arc::clone(&self.runs),
        }
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }
}

/// Marks the run ended when the future returns or is dropped.
struct EndGuard {
    recorder: Recorder,
    index: usize,
    ctx: JobContext,
    returned: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(run) = self.recorder.runs.lock().unwrap().get_mut(self.index) {
            run.end = Some(Instant::now());
            run.returned = self.returned;
            run.cancelled_at_end = self.ctx.is_cancelled();
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GuardedArgs {
    sleep_ms: u64,
    /// Length of the string the task returns.
    result_len: usize,
}

struct Guarded;

static GUARDED: TaskRegistration = TaskRegistration {
    name: "guarded",
    location: Location {
        file: file!(),
        line: line!(),
        column: column!(),
        module_path: module_path!(),
    },
    options: TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(30)),
        ..TaskOptions::DEFAULT
    },
    params: None,
    dependencies: guarded_dependencies,
    schedule: None,
    run: run_guarded,
};

fn guarded_dependencies() -> Vec<DependencyKey> {
    vec![DependencyKey::of::<Recorder>()]
}

fn run_guarded(ctx: JobContext, payload: &[u8]) -> Result<TaskFuture, Error> {
    let args: GuardedArgs = serde_json::from_slice(payload).map_err(|source| Error::Payload {
        task: "guarded".to_string(),
        source,
    })?;
    let recorder = ctx.dependency::<Recorder>()?;
    Ok(Box::pin(async move {
        guarded_body(ctx, recorder, args).await.into_task_result()
    }))
}

async fn guarded_body(
    ctx: JobContext,
    recorder: Dep<Recorder>,
    args: GuardedArgs,
) -> Result<String, TaskError> {
    let index = {
        let mut runs = recorder.runs.lock().unwrap();
        runs.push(Run {
            job_id: ctx.job_id().to_string(),
            worker: recorder.worker,
            attempt: ctx.attempt(),
            start: Instant::now(),
            end: None,
            returned: false,
            cancelled_at_end: false,
        });
        runs.len() - 1
    };
    let mut guard = EndGuard {
        recorder: Recorder::clone(&recorder),
        index,
        ctx,
        returned: false,
    };
    if args.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
    }
    guard.returned = true;
    Ok("x".repeat(args.result_len))
}

impl Task for Guarded {
    const NAME: &'static str = "guarded";
    const OPTIONS: TaskOptions = GUARDED.options;
    type Args = GuardedArgs;
    type Output = String;
    fn registration() -> &'static TaskRegistration {
        &GUARDED
    }
}

fn guarded(id: &str, sleep_ms: u64) -> JobRequest<Guarded> {
    JobRequest::new(GuardedArgs {
        sleep_ms,
        result_len: 0,
    })
    .id(id)
}

/// A 1 s lease, 300 ms heartbeat, 500 ms grace.
fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(1000),
        heartbeat: Some(Duration::from_millis(300)),
        shutdown_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_idle: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

async fn start(url: &str, ns: &str, recorder: Recorder, worker: Option<WorkerConfig>) -> Scheduler {
    let builder = Scheduler::builder(url)
        .namespace(ns)
        .command_timeout(Duration::from_secs(2))
        .register::<Guarded>()
        .provide(recorder);
    scheduler_tests::setup::start_with_worker(builder, worker).await
}

fn finished(status: &JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// Item 1 of issue 14: W1's path to Redis is blackholed while it runs a long
/// job. Its renewals hang; it must drop the job (and fire `cancelled()`)
/// before its lease can expire in Redis, so that W2, which takes the job after
/// the lease, never runs it at the same time. The outcome recorded is W2's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_drops_its_job_before_another_worker_can_take_it() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("partition");
    let recorder = Recorder::new();
    let w1 = start(&proxy.url(), &ns, recorder.named("w1"), Some(fast_worker())).await;
    w1.enqueue(guarded("long", 4000)).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || !recorder.runs().is_empty()).await);
    // Let one renewal succeed, then cut W1 off.
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.set_mode(Mode::Blackhole);
    let w2 = start(
        &server.url(),
        &ns,
        recorder.named("w2"),
        Some(fast_worker()),
    )
    .await;
    let w2_done = wait_until(Duration::from_secs(12), || {
        recorder
            .runs()
            .iter()
            .any(|r| r.worker == "w2" && r.returned)
    })
    .await;
    let runs = recorder.runs();
    assert!(w2_done, "w2 never finished the job: {runs:?}");
    let w1_run = runs.iter().find(|r| r.worker == "w1").unwrap().clone();
    let w2_run = runs.iter().find(|r| r.worker == "w2").unwrap().clone();
    let w1_end = w1_run
        .end
        .unwrap_or_else(|| panic!("w1's run never ended: {runs:?}"));
    assert!(
        w1_end <= w2_run.start,
        "the runs overlapped: w1 ran {:?}..{:?}, w2 started at {:?} (relative to w1's start)",
        Duration::ZERO,
        w1_end - w1_run.start,
        w2_run.start - w1_run.start
    );
    println!(
        "w1 ran 0..{:?}, w2 from {:?} (relative to w1's start)",
        w1_end - w1_run.start,
        w2_run.start - w1_run.start
    );
    assert!(!w1_run.returned, "w1 ran the job to its end: {w1_run:?}");
    assert!(
        w1_run.cancelled_at_end,
        "JobContext::cancelled() did not fire: {w1_run:?}"
    );
    assert_eq!(w2_run.attempt, 2, "{w2_run:?}");
    // The task returned; its outcome is recorded by the completion loop,
    // a moment later.
    let status = wait_status(&w2, "long", finished).await;
    let info = w2.info("long").await.unwrap().unwrap();
    assert_eq!(status, JobStatus::Completed, "{info:?}");
    assert_eq!(info.attempts, 2, "the outcome is not w2's: {info:?}");
    // W1 reconnects; its stale run must not change the outcome.
    proxy.set_mode(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let info = w2.info("long").await.unwrap().unwrap();
    assert_eq!(
        (info.status.clone(), info.attempts),
        (JobStatus::Completed, 2),
        "{info:?}"
    );
    assert_eq!(recorder.runs().len(), 2, "{:?}", recorder.runs());
    w1.close().await;
    w2.close().await;
}

/// Item 8 of issue 14: settings the worker cannot run with are refused at
/// start with `Error::Config`, instead of a heartbeat task that panics.
#[tokio::test]
async fn invalid_worker_settings_are_a_config_error_at_start() {
    let ns = namespace("config");
    let url = format!("memory://{ns}");
    let bad = [
        (
            "heartbeat zero",
            WorkerConfig {
                heartbeat: Some(Duration::ZERO),
                ..fast_worker()
            },
        ),
        (
            "lease of 2 ns",
            WorkerConfig {
                lease: Duration::from_nanos(2),
                heartbeat: None,
                ..fast_worker()
            },
        ),
        (
            "lease zero",
            WorkerConfig {
                lease: Duration::ZERO,
                heartbeat: None,
                ..fast_worker()
            },
        ),
        (
            "heartbeat not inside the lease's validity",
            WorkerConfig {
                lease: Duration::from_millis(1000),
                heartbeat: Some(Duration::from_millis(950)),
                ..fast_worker()
            },
        ),
        (
            "max_idle zero",
            WorkerConfig {
                max_idle: Duration::ZERO,
                ..fast_worker()
            },
        ),
        (
            "audit_interval zero",
            WorkerConfig {
                audit_interval: Duration::ZERO,
                ..fast_worker()
            },
        ),
    ];
    for (what, config) in bad {
        let result = Scheduler::builder(url.as_str())
            .namespace(ns.as_str())
            .register::<Guarded>()
            .provide(Recorder::new())
            .worker(config)
            .start()
            .await;
        match result {
            Err(Error::Config(reason)) => println!("{what}: {reason}"),
            Err(other) => panic!("{what}: not a config error: {other:?}"),
            Ok(s) => {
                s.close().await;
                panic!("{what}: accepted");
            }
        }
    }
}

/// Item 17 of issue 14: a result larger than `max_payload_bytes` is not
/// stored; the attempt fails for good with a reason naming the size and the
/// limit, and the job is dead-lettered. On both backends.
async fn an_oversized_result_fails_the_job_with_the_size_and_the_limit(fixture: Fixture) {
    let ns = namespace("result-size");
    let recorder = Recorder::new();
    let s = Scheduler::builder(fixture.url())
        .namespace(ns.as_str())
        .max_payload_bytes(1024)
        .register::<Guarded>()
        .provide(recorder.clone())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let args = |len| GuardedArgs {
        sleep_ms: 0,
        result_len: len,
    };
    s.enqueue(JobRequest::<Guarded>::new(args(4000)).id("big"))
        .await
        .unwrap();
    // Just under the limit once JSON quotes are counted: stored.
    s.enqueue(JobRequest::<Guarded>::new(args(1022)).id("fits"))
        .await
        .unwrap();
    let mut infos = HashMap::new();
    for _ in 0..500 {
        let big = s.info("big").await.unwrap().unwrap();
        let fits = s.info("fits").await.unwrap().unwrap();
        if finished(&big.status) && finished(&fits.status) {
            infos.insert("big", big);
            infos.insert("fits", fits);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(infos.len(), 2, "the jobs never finished");
    let big = &infos["big"];
    let stored = big.result.as_ref().map(String::len);
    assert_eq!(
        big.status,
        JobStatus::Failed,
        "attempts {}, result of {stored:?} bytes stored",
        big.attempts
    );
    assert_eq!(big.attempts, 1, "a size failure is permanent");
    assert_eq!(stored, None);
    let dead = s.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].job_id, "big");
    let reason = &dead[0].reason;
    assert!(
        reason.contains("4002") && reason.contains("1024") && reason.contains("result"),
        "the reason names neither the size nor the limit: {reason}"
    );
    let fits = &infos["fits"];
    assert_eq!(fits.status, JobStatus::Completed, "{fits:?}");
    assert_eq!(
        fits.result.as_ref().map(String::len),
        Some(1024),
        "{fits:?}"
    );
    s.close().await;
}

/// Item 5 of issue 14: `close()` under load. 50 trials, each with a random
/// close time while a closing worker and a staying worker share a stream of
/// one-millisecond jobs of one attempt: no job is dead-lettered (a job the
/// closing worker claimed but neither recorded nor released would be, as
/// `stalled`, after its lease), every job completes, and none runs twice.
/// On both backends.
async fn close_under_load_records_or_releases_every_job_it_claimed(fixture: Fixture) {
    let trials = 50;
    let jobs = 150;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let config = WorkerConfig {
        concurrency: 32,
        ..fast_worker()
    };
    for trial in 0..trials {
        let ns = namespace("close-load");
        let recorder = Recorder::new();
        let staying = start(
            &fixture.url(),
            &ns,
            recorder.named("b"),
            Some(config.clone()),
        )
        .await;
        let closing = start(
            &fixture.url(),
            &ns,
            recorder.named("a"),
            Some(config.clone()),
        )
        .await;
        let close_after = Duration::from_millis(next(60));
        staying
            .enqueue_many((0..jobs).map(|i| guarded(&format!("j{i}"), 1).max_attempts(1)))
            .await
            .unwrap();
        tokio::time::sleep(close_after).await;
        let closing_started = Instant::now();
        closing.close().await;
        let close_took = closing_started.elapsed();
        let wait_started = Instant::now();
        // Wait until every job is finished one way or the other: a stranded
        // job is dead-lettered after its 1 s lease.
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut unfinished: Vec<String> = (0..jobs).map(|i| format!("j{i}")).collect();
        while !unfinished.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for id in unfinished {
                let info = staying.info(&id).await.unwrap().unwrap();
                if !finished(&info.status) {
                    still.push(id);
                }
            }
            unfinished = still;
            if !unfinished.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(
            unfinished.is_empty(),
            "trial {trial}: never finished: {unfinished:?}"
        );
        println!(
            "trial {trial}: close after {close_after:?} took {close_took:?}, the rest finished {:?} later",
            wait_started.elapsed()
        );
        let dead = staying.dead_letters(0, 100).await.unwrap();
        assert!(
            dead.is_empty(),
            "trial {trial} (close after {close_after:?}): {} dead-lettered, the first: {:?}",
            dead.len(),
            dead.first()
        );
        let mut per_job: HashMap<String, Vec<Run>> = HashMap::new();
        for run in recorder.runs() {
            per_job.entry(run.job_id.clone()).or_default().push(run);
        }
        for i in 0..jobs {
            let id = format!("j{i}");
            let runs = per_job.get(&id).cloned().unwrap_or_default();
            assert_eq!(
                runs.len(),
                1,
                "trial {trial}: {id} ran {} times: {runs:?}",
                runs.len()
            );
            assert!(runs[0].returned, "trial {trial}: {id}: {runs:?}");
        }
        staying.close().await;
    }
}

conformance!(an_oversized_result_fails_the_job_with_the_size_and_the_limit);

// Two runtime threads, as a server would have: the closing worker's tasks and
// the test's run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_under_load_records_or_releases_every_job_it_claimed_redis() {
    close_under_load_records_or_releases_every_job_it_claimed(Fixture::redis()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_under_load_records_or_releases_every_job_it_claimed_memory() {
    close_under_load_records_or_releases_every_job_it_claimed(Fixture::memory()).await
}

/// An aborted run's outcome is reported only once its future is gone. A run
/// busy in its task's code (here blocking its thread) cannot be dropped until
/// it yields; the replacement that waits behind it must not start before.
/// The fault-history checker saw the next generation start 80 µs before the
/// old future was dropped when the outcome was reported at the abort.
async fn an_aborted_run_is_gone_before_its_successor_starts(fixture: Fixture) {
    use scheduler::{IfRunning, ReplaceOutcome};
    use scheduler_tests::setup::{fast_worker, worker_with};
    use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
    use scheduler_tests::Probe;

    let probe = Probe::default();
    let s = worker_with(
        &fixture.url(),
        &namespace("abort-gone"),
        &probe,
        fast_worker(),
    )
    .await;
    let blocked = ProbeArgs::new("blocked").mode("block").sleep(800);
    s.enqueue(JobRequest::<ProbeTask>::new(blocked).id("x"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    let out = s
        .replace(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("next")).id("x"),
            IfRunning::Abort,
        )
        .await
        .unwrap();
    assert!(
        matches!(out, ReplaceOutcome::AbortedRunning { .. }),
        "{out:?}"
    );
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    let runs = probe.runs_of("x");
    let old = runs.iter().find(|r| r.arg == "blocked").unwrap();
    let next = runs.iter().find(|r| r.arg == "next").unwrap();
    let old_end = old.end.unwrap();
    assert!(
        next.start >= old_end,
        "the successor started {} ms before the aborted run was gone",
        (old_end - next.start).num_milliseconds()
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_is_gone_before_its_successor_starts_redis() {
    an_aborted_run_is_gone_before_its_successor_starts(Fixture::redis()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_is_gone_before_its_successor_starts_memory() {
    an_aborted_run_is_gone_before_its_successor_starts(Fixture::memory()).await
}
