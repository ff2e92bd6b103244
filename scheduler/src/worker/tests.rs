//! The worker's own faults, made deterministic with test-only hooks and a
//! backend that fails on demand (the in-memory backend underneath).
#![allow(clippy::unwrap_used)]

use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Worker, WorkerHandle};
use crate::api::config::{SchedulerConfig, WorkerConfig};
use crate::api::deps::{Dependencies, DependencyKey};
use crate::api::error::{Error, RedisError};
use crate::api::job::{CancelOutcome, DeadLetter, JobCounts, JobInfo, JobStatus};
use crate::api::registry::{Location, Registry, TaskFuture, TaskRegistration};
use crate::api::task::{JobRequest, Task, TaskOptions};
use crate::backend::memory::MemoryBackend;
use crate::ops::health::{Health, HealthState};
use crate::worker::context::JobContext;
use crate::Scheduler;

use crate::backend::{
    Backend, BoxFuture, Claim, ClaimTicket, ClaimedJob, EnqueueReply, Finished, NewJob, RawPending,
    Serving, Subscription,
};

type AfterClaim = Arc<dyn Fn(Vec<ClaimedJob>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Test-only ways into a running worker.
#[derive(Default)]
pub(super) struct Hooks {
    /// Runs after a claim returned, before its jobs are registered.
    after_claim: Mutex<Option<AfterClaim>>,
    /// Makes the heartbeat task panic at its next tick.
    panic_heartbeat: AtomicBool,
}

impl Hooks {
    pub(super) async fn after_claim(&self, jobs: &[ClaimedJob]) {
        let hook = self.after_claim.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(jobs.to_vec()).await;
        }
    }

    pub(super) fn heartbeat_tick(&self) {
        if self.panic_heartbeat.load(Ordering::SeqCst) {
            panic!("test hook: heartbeat dies");
        }
    }
}

/// Counts starts and ends of the test task.
#[derive(Default)]
struct Counter {
    started: AtomicUsize,
    ended: AtomicUsize,
}

struct Sleepy;

static SLEEPY: TaskRegistration = TaskRegistration {
    name: "sleepy",
    location: Location {
        file: file!(),
        line: line!(),
        column: column!(),
        module_path: module_path!(),
    },
    options: TaskOptions {
        max_attempts: Some(3),
        timeout: None,
        ..TaskOptions::DEFAULT
    },
    params: None,
    dependencies: || vec![DependencyKey::of::<Counter>()],
    schedule: None,
    run: run_sleepy,
};

fn run_sleepy(ctx: JobContext, payload: &[u8]) -> Result<TaskFuture, Error> {
    let ms: u64 = serde_json::from_slice(payload).map_err(|source| Error::Payload {
        task: "sleepy".into(),
        source,
    })?;
    let counter = ctx.dependency::<Counter>()?;
    Ok(Box::pin(async move {
        counter.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        counter.ended.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }))
}

impl Task for Sleepy {
    const NAME: &'static str = "sleepy";
    const OPTIONS: TaskOptions = SLEEPY.options;
    type Args = u64;
    type Output = ();
    fn registration() -> &'static TaskRegistration {
        &SLEEPY
    }
}

/// The in-memory backend, with `complete` failing on demand.
struct Faulty {
    inner: MemoryBackend,
    /// Every `complete` fails with a transient error.
    outage: AtomicBool,
    /// A `complete` naming one of these ids (but to give it up) fails with a
    /// non-transient error.
    refused: Mutex<HashSet<String>>,
    /// A `renew` naming one of these ids fails with a non-transient error.
    renew_refused: Mutex<HashSet<String>>,
    /// Every outcome `complete` was asked to record: (id, outcome).
    outcomes: Mutex<Vec<(String, &'static str)>>,
}

impl Backend for Faulty {
    fn config(&self) -> &SchedulerConfig {
        self.inner.config()
    }
    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        self.inner.enqueue(mode, if_running, jobs)
    }
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        ticket: &'a ClaimTicket,
        serving: &'a Serving,
    ) -> BoxFuture<'a, Result<Claim, Error>> {
        self.inner.claim(worker, max, lease, ticket, serving)
    }
    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        if self.outage.load(Ordering::SeqCst) {
            let e = RedisError::new("test outage");
            return Box::pin(async move { Err(Error::Unavailable(e)) });
        }
        self.outcomes
            .lock()
            .unwrap()
            .extend(finished.iter().map(|f| (f.id.clone(), f.outcome)));
        let refused = self.refused.lock().unwrap();
        if let Some(f) = finished
            .iter()
            .find(|f| refused.contains(&f.id) && f.outcome != "abandon")
        {
            let e = Error::Corrupt(format!("test: the record of {} is refused", f.id));
            return Box::pin(async move { Err(e) });
        }
        self.inner.complete(finished)
    }
    fn renew<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let refused = self.renew_refused.lock().unwrap();
        if let Some(job) = running.iter().find(|j| refused.contains(&j.0)) {
            let e = Error::Corrupt(format!("test: the record of {} is refused", job.0));
            return Box::pin(async move { Err(e) });
        }
        self.inner.renew(worker, lease, running)
    }
    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(CancelOutcome, Option<String>), Error>> {
        self.inner.cancel(id, generation, task)
    }
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        self.inner.inspect(id)
    }
    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        self.inner.dead_letters(offset, count)
    }
    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        self.inner.requeue_dead(id, nonce)
    }
    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        self.inner.purge_dead()
    }
    fn delete_dead<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        self.inner.delete_dead(id)
    }
    fn add_activity<'a>(
        &'a self,
        minutes: &'a [(i64, crate::ops::activity::Tally)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.add_activity(minutes)
    }
    fn activity(
        &self,
        first: i64,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::ops::activity::Tally>, Error>> {
        self.inner.activity(first, count)
    }
    fn counts(&self) -> BoxFuture<'_, Result<JobCounts, Error>> {
        self.inner.counts()
    }
    fn announce_worker<'a>(
        &'a self,
        id: &'a str,
        queues: &'a [String],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.announce_worker(id, queues, ttl)
    }
    fn queues(&self) -> BoxFuture<'_, Result<Vec<crate::QueueInfo>, Error>> {
        self.inner.queues()
    }
    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        cursor: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        self.inner.list_pending(task, cursor, count)
    }
    fn list_schedules(&self) -> BoxFuture<'_, Result<(i64, Vec<Stored>), Error>> {
        self.inner.list_schedules()
    }
    fn put_schedule<'a>(
        &'a self,
        name: &'a str,
        definition: &'a Definition,
    ) -> BoxFuture<'a, Result<PutOutcome, Error>> {
        self.inner.put_schedule(name, definition)
    }
    fn plan_schedule<'a>(
        &'a self,
        plan: &'a PlanCall,
    ) -> BoxFuture<'a, Result<PlanOutcome, Error>> {
        self.inner.plan_schedule(plan)
    }
    fn pause_schedule<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        self.inner.pause_schedule(name, paused)
    }
    fn remove_schedule<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        self.inner.remove_schedule(name)
    }
    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        self.inner.subscribe()
    }
    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> BoxFuture<'a, Result<(String, u64, i64), Error>> {
        self.inner.reschedule(id, generation, when)
    }
    fn browse<'a>(
        &'a self,
        query: &'a crate::JobQuery,
    ) -> BoxFuture<'a, Result<crate::JobPage, Error>> {
        self.inner.browse(query)
    }
    fn subscribe_finished<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Subscription<crate::backend::FinishedNotice>, Error>> {
        self.inner.subscribe_finished(token)
    }
    fn listen<'a>(
        &'a self,
        kind: crate::backend::Listener,
        token: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.listen(kind, token, ttl)
    }
    fn subscribe_events(
        &self,
        capacity: usize,
    ) -> BoxFuture<'_, Result<Subscription<crate::backend::EventNotice>, Error>> {
        self.inner.subscribe_events(capacity)
    }
    fn progress<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
        attempt: u32,
        progress: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        self.inner.progress(id, generation, attempt, progress)
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}

/// A store of its own, shared by the workers and the producer of one test.
struct Setup {
    name: String,
    counter: Arc<Counter>,
    producer: Scheduler,
}

impl Setup {
    async fn new(test: &str) -> Setup {
        let name = format!("worker-unit-{test}-{}", std::process::id());
        let producer = Scheduler::builder(format!("memory://{name}"))
            .register::<Sleepy>()
            .producer_only()
            .start()
            .await
            .unwrap();
        Setup {
            name,
            counter: Arc::default(),
            producer,
        }
    }

    fn faulty(&self) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner: MemoryBackend::named(&self.name, SchedulerConfig::default()),
            outage: AtomicBool::new(false),
            refused: Mutex::default(),
            renew_refused: Mutex::default(),
            outcomes: Mutex::default(),
        })
    }

    async fn worker(&self, backend: Arc<dyn Backend>, health: &HealthState) -> WorkerHandle {
        let deps = Dependencies::default();
        deps.insert_arc(Arc::clone(&self.counter));
        Worker::start(
            backend,
            Registry::collect(&[&SLEEPY]).unwrap(),
            deps,
            config(),
            health.clone(),
            crate::ops::metrics::Metrics::new("worker-tests"),
            false,
        )
        .await
        .unwrap()
    }

    async fn enqueue(&self, id: &str, sleep_ms: u64) {
        self.producer
            .enqueue(JobRequest::<Sleepy>::new(sleep_ms).id(id))
            .await
            .unwrap();
    }

    async fn status(&self, id: &str) -> JobStatus {
        self.producer.status(id).await.unwrap()
    }

    /// Waits up to 5 s for the job to reach a final status.
    async fn final_status(&self, id: &str) -> JobStatus {
        for _ in 0..500 {
            let status = self.status(id).await;
            if matches!(
                status,
                JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
            ) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.status(id).await
    }
}

/// A 400 ms lease renewed every 100 ms.
fn config() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(400),
        heartbeat: Some(Duration::from_millis(100)),
        shutdown_grace: Duration::from_millis(200),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(50),
        max_idle: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

async fn wait_for(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Item 11 of issue 14: an abort that reaches the worker after the claim ran
/// in Redis but before the claimed job is registered locally is applied when
/// the job starts: the job never starts and ends `Cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_between_claim_and_registration_stops_the_job_before_it_starts() {
    let setup = Setup::new("early-abort").await;
    let backend = setup.faulty();
    let health = HealthState::new();
    let handle = setup.worker(backend.clone(), &health).await;
    let producer = setup.producer.clone();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&answers);
    *handle.worker.hooks.after_claim.lock().unwrap() = Some(Arc::new(move |jobs| {
        let producer = producer.clone();
        let sink = Arc::clone(&sink);
        Box::pin(async move {
            for job in jobs {
                let answer = producer.cancel(&job.id).await.unwrap();
                sink.lock().unwrap().push(answer);
            }
            // Let the abort signal reach the worker before the job is registered.
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
    }));
    setup.enqueue("short", 5).await;
    let status = setup.final_status("short").await;
    let answers = answers.lock().unwrap().clone();
    assert!(
        matches!(answers.as_slice(), [CancelOutcome::AbortSignalled { .. }]),
        "{answers:?}"
    );
    assert_eq!(status, JobStatus::Cancelled);
    assert_eq!(
        setup.counter.started.load(Ordering::SeqCst),
        0,
        "it started"
    );
    handle.close().await;
}

/// Item 12 of issue 14: a finished job whose outcome cannot be recorded yet
/// (an outage of `complete` for three leases) keeps its lease renewed, so no
/// other worker runs it again; the outcome is recorded after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_keeps_its_lease_until_its_outcome_is_recorded() {
    let setup = Setup::new("renew-until-recorded").await;
    let backend = setup.faulty();
    backend.outage.store(true, Ordering::SeqCst);
    let health = HealthState::new();
    let w1 = setup.worker(backend.clone(), &health).await;
    setup.enqueue("done", 10).await;
    let counter = Arc::clone(&setup.counter);
    assert!(
        wait_for(Duration::from_secs(5), || counter
            .ended
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    // Another worker, whose calls all work, looks for due jobs meanwhile.
    let w2 = setup
        .worker(
            Arc::new(MemoryBackend::named(
                &setup.name,
                SchedulerConfig::default(),
            )),
            &HealthState::new(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        counter.started.load(Ordering::SeqCst),
        1,
        "the finished job ran again while its outcome waited"
    );
    backend.outage.store(false, Ordering::SeqCst);
    assert_eq!(setup.final_status("done").await, JobStatus::Completed);
    assert_eq!(counter.started.load(Ordering::SeqCst), 1);
    w1.close().await;
    w2.close().await;
}

/// Item 12 of issue 14: an outcome Redis refuses for good (not a transient
/// error) is reported with its reason, given up to its lease, and does not
/// hold back later outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_refused_for_good_is_reported_and_does_not_block_others() {
    let setup = Setup::new("refused-outcome").await;
    let backend = setup.faulty();
    backend.refused.lock().unwrap().insert("poison".to_string());
    let health = HealthState::new();
    let w1 = setup.worker(backend.clone(), &health).await;
    setup.enqueue("poison", 0).await;
    let counter = Arc::clone(&setup.counter);
    assert!(
        wait_for(Duration::from_secs(5), || counter
            .ended
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    for i in 0..5 {
        setup.enqueue(&format!("good{i}"), 0).await;
    }
    for i in 0..5 {
        assert_eq!(
            setup.final_status(&format!("good{i}")).await,
            JobStatus::Completed,
            "good{i}: blocked behind the refused outcome"
        );
    }
    // The refused outcome may be reported after the good ones were recorded
    // (it can share a batch with them, which is then recorded one by one).
    let reported = wait_for(Duration::from_secs(5), || !health.get().is_healthy()).await;
    assert!(reported, "the refused outcome was not reported");
    let Health::Degraded { reason, .. } = health.get() else {
        unreachable!()
    };
    assert!(
        reason.contains("poison") && reason.contains("refused"),
        "{reason}"
    );
    // And it is given up to its lease: in Redis, the renewals of this worker's
    // other jobs would keep it for ever otherwise.
    let given_up = wait_for(Duration::from_secs(2), || {
        backend
            .outcomes
            .lock()
            .unwrap()
            .contains(&("poison".to_string(), "abandon"))
    })
    .await;
    assert!(given_up, "{:?}", backend.outcomes.lock().unwrap());
    w1.close().await;
}

/// Item 8 of issue 14: an internal task of the worker that dies (here the
/// heartbeat panics) makes the worker unhealthy for good and stops it
/// claiming; the running job is dropped so that its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_internal_task_makes_the_worker_unhealthy_and_stops_claiming() {
    let setup = Setup::new("dead-task").await;
    let backend = setup.faulty();
    let health = HealthState::new();
    let handle = setup.worker(backend.clone(), &health).await;
    setup.enqueue("long", 10_000).await;
    let counter = Arc::clone(&setup.counter);
    assert!(
        wait_for(Duration::from_secs(5), || counter
            .started
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    handle
        .worker
        .hooks
        .panic_heartbeat
        .store(true, Ordering::SeqCst);
    // Long enough for the panic's backtrace to be printed first (with
    // RUST_BACKTRACE set, as on these machines, that took over 2 s on a
    // loaded one).
    let broken = wait_for(Duration::from_secs(15), || !health.get().is_healthy()).await;
    assert!(broken, "the dead task went unnoticed");
    let Health::Degraded { reason, .. } = health.get() else {
        unreachable!()
    };
    assert!(
        reason.contains("heartbeat") && reason.contains("panicked"),
        "{reason}"
    );
    // Later calls that work do not make it healthy again.
    health.ok();
    assert!(!health.get().is_healthy());
    // No more claims: a new job stays queued.
    setup.enqueue("after", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(setup.status("after").await, JobStatus::Queued { .. }),
        "{:?}",
        setup.status("after").await
    );
    assert_eq!(handle.worker.tracked_count(), 0, "jobs still supervised");
    handle.close().await;
}

/// A lease renewal Redis refuses for one job (not a transient error) costs
/// only that job its lease: the others are renewed one by one and keep
/// running past their first lease. The job given up is said so ('abandon'):
/// in Redis the worker's renewals of the others would otherwise keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_refused_for_one_job_does_not_stop_the_others() {
    let setup = Setup::new("refused-renewal").await;
    let backend = setup.faulty();
    backend
        .renew_refused
        .lock()
        .unwrap()
        .insert("bad".to_string());
    let health = HealthState::new();
    let w1 = setup.worker(backend.clone(), &health).await;
    setup.enqueue("bad", 1_000).await;
    setup.enqueue("fine", 1_000).await;
    let counter = Arc::clone(&setup.counter);
    assert!(
        wait_for(Duration::from_secs(5), || counter
            .started
            .load(Ordering::SeqCst)
            == 2)
        .await
    );
    // 1 s jobs, 400 ms lease: "fine" lives only if its lease is renewed.
    assert_eq!(setup.final_status("fine").await, JobStatus::Completed);
    let info = setup.producer.info("fine").await.unwrap().unwrap();
    assert_eq!(info.attempts, 1, "{info:?}");
    // "bad" could not keep its lease: dropped before it ended, run again.
    assert!(counter.started.load(Ordering::SeqCst) > 2);
    let outcomes = backend.outcomes.lock().unwrap().clone();
    assert!(
        outcomes.contains(&("bad".to_string(), "abandon")),
        "{outcomes:?}"
    );
    assert!(
        !outcomes.contains(&("fine".to_string(), "abandon")),
        "{outcomes:?}"
    );
    w1.close().await;
}

/// Item 8 of issue 14: an internal task that returns while the worker runs
/// (here `listen`, whose stream of notices ended) is noticed like a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_task_that_returns_early_makes_the_worker_unhealthy() {
    let setup = Setup::new("returned-task").await;
    let health = HealthState::new();
    let mut handle = setup.worker(setup.faulty(), &health).await;
    // Ends the subscription under the worker's feet.
    let close = std::mem::replace(
        &mut handle.close_subscription,
        Box::new(|| Box::pin(async {})),
    );
    close().await;
    let broken = wait_for(Duration::from_secs(2), || !health.get().is_healthy()).await;
    assert!(broken, "the returned task went unnoticed");
    let Health::Degraded { reason, .. } = health.get() else {
        unreachable!()
    };
    assert!(
        reason.contains("listen") && reason.contains("returned"),
        "{reason}"
    );
    setup.enqueue("after", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        setup.status("after").await,
        JobStatus::Queued { .. }
    ));
    handle.close().await;
}
