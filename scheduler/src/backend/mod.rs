//! The storage abstraction: one method per state transition, implemented by
//! Redis (Lua scripts) and by the in-memory backend with the same semantics.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::config::SchedulerConfig;
use crate::api::error::Error;
use crate::api::events::JobEvent;
use crate::api::job::{CancelOutcome, DeadLetter, JobCounts, JobInfo};
use crate::api::listing::{JobPage, JobQuery};
use crate::ops::activity::Tally;
use crate::ops::health::HealthState;
use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};

pub(crate) mod memory;
pub(crate) mod outbox;
pub(crate) mod redis;

/// A boxed future borrowing the backend.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job ready to be written: arguments already serialized and checked.
#[derive(Clone, Debug)]
pub(crate) struct NewJob {
    pub(crate) id: String,
    pub(crate) task: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) max_attempts: u32,
    /// ('now', 0) | ('at', microseconds since the epoch) | ('after',
    /// milliseconds); see [`ms_up`].
    pub(crate) when: (&'static str, i64),
    pub(crate) nonce: String,
    /// An enqueue changes nothing while a finished outcome of the id is kept.
    pub(crate) unique_until_result_expires: bool,
    /// The W3C `traceparent` of the span that enqueued it (feature
    /// `opentelemetry`; see `ops/trace.rs`).
    pub(crate) trace: Option<String>,
    /// The caller's idempotency key (`JobRequest::request_id`): the backend
    /// answers a request sent again with it as it answered the first one
    /// (reply log, consulted first), for [`user_request_ttl_ms`]. Only on a
    /// call with this job alone; the nonce is derived from it (`:` + id).
    pub(crate) request_id: Option<String>,
    /// Its queue; `None` for the default queue.
    pub(crate) queue: Option<String>,
    /// Its priority in the queue (0 by default).
    pub(crate) priority: i8,
    /// The key of its task's per-key concurrency limit.
    pub(crate) limit_key: Option<String>,
}

impl NewJob {
    /// Whether it has a queue, priority or limit key of its own (else the
    /// scripts' shortest paths take it).
    pub(crate) fn is_routed(&self) -> bool {
        self.queue.is_some() || self.priority != 0 || self.limit_key.is_some()
    }
}

/// What a worker claims: the queues it serves (in the order this claim
/// visits them), the tasks it can run, and their concurrency limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Serving {
    /// `None`: every queue of the namespace (test helpers); `Some`: these,
    /// in this order (empty: the default queue alone).
    pub(crate) queues: Option<Vec<String>>,
    /// `None`: every task; `Some`: a job of another task is not run but
    /// parked until a worker that runs its task claims ([`crate::Waiting::Worker`]).
    pub(crate) tasks: Option<Vec<String>>,
    /// The limits of the tasks it runs that have any.
    pub(crate) limits: Vec<TaskLimits>,
}

impl Serving {
    /// The limits as claim.lua and grants.lua read them: one line per task,
    /// 'task\tconcurrency\tper-key concurrency\trate count\trate window
    /// ms\tper-key rate count\tper-key window ms'.
    pub(crate) fn limit_lines(&self) -> String {
        self.limits
            .iter()
            .map(|l| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    l.task,
                    l.concurrency,
                    l.key_concurrency,
                    l.rate.0,
                    l.rate.1,
                    l.key_rate.0,
                    l.key_rate.1
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One task's limits as a claim applies them (0 for none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskLimits {
    pub(crate) task: String,
    pub(crate) concurrency: u32,
    pub(crate) key_concurrency: u32,
    /// (starts, per window ms).
    pub(crate) rate: (u32, i64),
    pub(crate) key_rate: (u32, i64),
}

impl TaskLimits {
    /// The limits of a task's options, if it has any.
    pub(crate) fn of(task: &str, options: &crate::TaskOptions) -> Option<TaskLimits> {
        let rate =
            |r: Option<crate::Rate>| r.map_or((0, 0), |r| (r.count, r.per.as_millis() as i64));
        let limits = TaskLimits {
            task: task.to_string(),
            concurrency: options.concurrency.unwrap_or(0),
            key_concurrency: options.key_concurrency.unwrap_or(0),
            rate: rate(options.rate),
            key_rate: rate(options.key_rate),
        };
        (limits.concurrency > 0
            || limits.key_concurrency > 0
            || limits.rate.0 > 0
            || limits.key_rate.0 > 0)
            .then_some(limits)
    }
}

impl Serving {
    /// Every queue, every task, no limit.
    pub(crate) fn everything() -> Self {
        Serving {
            queues: None,
            tasks: None,
            limits: Vec::new(),
        }
    }
}

/// The shortest time a reply is kept for a request the caller identified.
pub(crate) const USER_REQUEST_MIN_TTL_MS: i64 = 60_000;

/// How long the reply to a request with the caller's request id is kept:
/// `keep_result`, and at least a minute.
pub(crate) fn user_request_ttl_ms(config: &SchedulerConfig) -> i64 {
    (config.keep_result.as_millis() as i64).max(USER_REQUEST_MIN_TTL_MS)
}

/// The reply-log key of a request the caller identified: the job id (length
/// first, so that no two pairs give one key) and the request id.
pub(crate) fn user_request_key(job_id: &str, request_id: &str) -> String {
    format!("u:{}:{job_id}:{request_id}", job_id.len())
}

/// One entry of an enqueue/replace script reply.
#[derive(Clone, Debug)]
pub(crate) struct EnqueueReply {
    pub(crate) code: String,
    pub(crate) generation: u64,
    pub(crate) run_at_ms: i64,
    /// 'deferred' | 'queued' | 'running' for a duplicate.
    pub(crate) state: String,
    /// The other generation or previous run time, depending on the code.
    pub(crate) other: i64,
    /// The task of the job holding the id ('duplicate', 'wrong_task'), else empty.
    pub(crate) task: String,
    /// 'replace' mode: the generation of the pending job (deferred, queued,
    /// or waiting behind the running one) the new job took the place of; 0
    /// when it replaced none.
    pub(crate) replaced: u64,
}

/// A job a worker claimed.
#[derive(Clone, Debug)]
pub(crate) struct ClaimedJob {
    pub(crate) id: String,
    pub(crate) task: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) generation: u64,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) enqueued_ms: i64,
    pub(crate) run_at_ms: i64,
    /// Backend time (µs) of the claim that took it: its recorded start.
    pub(crate) started_us: i64,
    /// The `traceparent` it was enqueued in, if any.
    pub(crate) trace: Option<String>,
}

/// Identifies a claim call, so that a claim whose reply was lost can be sent
/// again and get its jobs back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClaimTicket {
    /// This claim's id (the same when a failed call is retried).
    pub(crate) nonce: String,
    /// Whether this call retries a claim that got no reply.
    pub(crate) retry: bool,
}

impl ClaimTicket {
    /// A fresh ticket.
    pub(crate) fn new() -> Self {
        ClaimTicket {
            nonce: format!("{:016x}", fastrand::u64(..)),
            retry: false,
        }
    }
}

/// Microseconds as milliseconds, rounded up: an 'at' run time where a backend
/// keeps whole milliseconds (the memory backend), so that a job never runs
/// before its instant (Redis keeps the microseconds, common.lua
/// `instant_ms`), and a claim's next wake-up on the test clock.
pub(crate) fn ms_up(us: i64) -> i64 {
    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
}

/// The reply of one claim.
#[derive(Debug)]
pub(crate) struct Claim {
    /// Backend time when the claim ran, in microseconds: the worker sleeps
    /// until the next due job with sub-millisecond precision.
    pub(crate) now_us: i64,
    /// Backend time of the next due job or lease expiry, in microseconds
    /// (rounded up): a job asked for at an instant is due at that instant.
    pub(crate) next_wake_us: Option<i64>,
    pub(crate) jobs: Vec<ClaimedJob>,
    /// Records that could not be read; already dead-lettered (id, reason).
    pub(crate) rejected: Vec<(String, String)>,
    /// Limited jobs met on a shard of a sharded namespace, parked there
    /// until the home shard grants them a start (sharded.rs); empty elsewhere.
    pub(crate) candidates: Vec<Candidate>,
}

/// A limited job a shard's claim parked for the home shard to grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: String,
    pub(crate) task: String,
    /// Its limit key; empty for none.
    pub(crate) key: String,
    pub(crate) generation: u64,
    /// The attempt it starts if granted.
    pub(crate) attempt: u32,
}

/// A pending job as listed.
#[derive(Clone, Debug)]
pub(crate) struct RawPending {
    pub(crate) id: String,
    pub(crate) task: String,
    pub(crate) generation: u64,
    pub(crate) run_at_ms: i64,
    pub(crate) attempts: u32,
    pub(crate) payload: Vec<u8>,
}

/// How an attempt ended, as sent to `complete.lua`.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    pub(crate) id: String,
    /// The job's task (for metrics; empty when unknown, as for a record
    /// that could not be read).
    pub(crate) task: String,
    pub(crate) generation: u64,
    pub(crate) attempt: u32,
    pub(crate) outcome: &'static str,
    pub(crate) text: String,
    pub(crate) retry_delay_ms: u64,
}

/// What a backend tells its workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A job became due earlier than planned: claim now.
    Wake,
    /// Abort the running job with this id and generation.
    Abort { generation: u64, id: String },
    /// A schedule was created, redefined or resumed (by any process), or
    /// notices may have been lost: planners read the schedules again, so
    /// that each plans its next tick by the tick's instant.
    Schedules,
}

/// Releases what feeds a [`Subscription`].
pub(crate) type CloseFn = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A stream of notices: a worker's ([`Notice`]), the outcomes a waiting
/// process hears ([`FinishedNotice`]), or job events ([`EventNotice`]);
/// bounded (see [`outbox`]); `close` releases what feeds it.
pub(crate) struct Subscription<N = Notice> {
    pub(crate) notices: mpsc::Receiver<N>,
    pub(crate) close: CloseFn,
}

/// What a process waiting for outcomes hears: a job's generation ended, or
/// notices may have been lost (a reconnect), so every waiter must look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FinishedNotice {
    Finished { id: String, generation: u64 },
    Missed,
}

/// What a stream of job events hears: an event, or events may have been
/// lost (a reconnect, a reader that fell behind).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EventNotice {
    Event(JobEvent),
    Missed,
}

/// What a listener registration is for (see [`Backend::listen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// A process waiting for outcomes: every job that ends is announced to it.
    Finished,
    /// A stream of job events: while one is registered, every state change
    /// of a job is published as an event.
    Events,
}

/// The state transitions. Each is atomic: a Lua script on Redis, one critical
/// section in memory.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Settings the backend was built with.
    fn config(&self) -> &SchedulerConfig;

    /// Risky server settings found when connecting (none for memory).
    fn startup_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Where the backend reports problems it finds on its own (a restart that lost data).
    fn attach_health(&self, _health: &HealthState) {}

    /// Creates jobs ('enqueue') or replaces them ('replace' with an if-running
    /// policy 'abort' | 'after' | 'keep'). 'replace' acts only on a job of
    /// the request's task: a job of another task under the id is answered
    /// 'wrong_task' (its task in `EnqueueReply::task`) and kept.
    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>>;

    /// Reaps expired leases, then claims up to `max` due jobs. Idempotent per
    /// `ticket.nonce`: a claim sent again (its reply lost) returns the same jobs.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        ticket: &'a ClaimTicket,
        serving: &'a Serving,
    ) -> BoxFuture<'a, Result<Claim, Error>>;

    /// Records attempts' outcomes, fenced by (generation, attempt): one code
    /// per entry, 'completed' | 'retrying' | 'dead_lettered' | 'failed'
    /// (for good, not dead-lettered: a replacement waited behind it) |
    /// 'cancelled' | 'released' | 'abandoned' | 'stale'. The outcome
    /// 'abandon' gives up a job the worker stopped because it could not
    /// confirm the lease in time: the job expires when its lease runs out,
    /// however long the worker lives (and renews its other jobs).
    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;

    /// Extends the leases of the jobs `worker` runs: 'ok' | 'cancel' |
    /// 'lost' per entry.
    fn renew<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;

    /// Cancels a job (optionally only one generation; with `task`, only a job
    /// of that task: else [`Error::WrongTask`] and nothing changes). Also
    /// answers the task of the pending job it removed, if it removed one.
    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(CancelOutcome, Option<String>), Error>>;

    /// One page of the jobs in a state, from the index that holds them
    /// (arguments as stored).
    fn browse<'a>(&'a self, query: &'a JobQuery) -> BoxFuture<'a, Result<JobPage, Error>>;

    /// Moves a pending job to another run time ('now' | 'at' | 'after', ms),
    /// keeping its generation: `(code, generation, run_at ms)` with code
    /// 'moved' | 'running' | 'not_found' | 'corrupt'. With a generation,
    /// only that job: 'not_found' when the id holds another.
    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> BoxFuture<'a, Result<(String, u64, i64), Error>>;

    /// Everything known about a job.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>>;

    /// Dead letters, newest first.
    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>>;

    /// Re-queues a dead letter: its new generation.
    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>>;

    /// Empties the dead letter.
    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>>;

    /// Removes one dead letter: whether there was one.
    fn delete_dead<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Adds a worker's activity counts, per minute (kept
    /// [`KEEP_MINUTES`](crate::ops::activity::KEEP_MINUTES)).
    fn add_activity<'a>(&'a self, minutes: &'a [(i64, Tally)]) -> BoxFuture<'a, Result<(), Error>>;

    /// The activity counts of `count` minutes from `first` (minutes since
    /// the epoch), in order; zeros for a minute nobody counted.
    fn activity(&self, first: i64, count: usize) -> BoxFuture<'_, Result<Vec<Tally>, Error>>;

    /// One page of pending jobs; cursor "0" starts and ends the walk.
    /// How many jobs are in each state, at one instant.
    fn counts(&self) -> BoxFuture<'_, Result<JobCounts, Error>>;

    /// Announces that worker `id` serves `queues` for `ttl` (renewed by
    /// calling again), or with `None` that it stopped.
    fn announce_worker<'a>(
        &'a self,
        id: &'a str,
        queues: &'a [String],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Every queue with jobs or live workers: its counts and workers, by name.
    fn queues(&self) -> BoxFuture<'_, Result<Vec<crate::QueueInfo>, Error>>;

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        cursor: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>>;

    /// Finds records and index entries that lost their other half (keys
    /// evicted under `maxmemory-policy allkeys-*`, or edited by hand) and
    /// repairs them so that no job is stranded silently: `(id, what was
    /// done)` for each. The in-memory backend cannot lose half of a job, so
    /// it finds nothing.
    fn audit(&self, _lease: Duration) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The backend's time (ms: Redis `TIME`, or the memory clock) and every
    /// stored schedule, read together.
    fn list_schedules(&self) -> BoxFuture<'_, Result<(i64, Vec<Stored>), Error>>;

    /// Stores schedule `name`: created, replaced in place when its version
    /// differs (its tick that has not started is removed, and planning goes
    /// on after now or after the tick that started), else unchanged.
    fn put_schedule<'a>(
        &'a self,
        name: &'a str,
        definition: &'a Definition,
    ) -> BoxFuture<'a, Result<PutOutcome, Error>>;

    /// One planning step (see [`PlanCall`]): creates the tick jobs and moves
    /// the cursor only if the stored version and cursor match and the
    /// schedule is not paused.
    fn plan_schedule<'a>(&'a self, plan: &'a PlanCall)
        -> BoxFuture<'a, Result<PlanOutcome, Error>>;

    /// Pauses (removing the tick that has not started) or resumes (planning
    /// from now on) a schedule.
    fn pause_schedule<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>>;

    /// Removes a schedule and its tick that has not started.
    fn remove_schedule<'a>(&'a self, name: &'a str)
        -> BoxFuture<'a, Result<ScheduleChange, Error>>;

    /// Records this version's Redis function library as in use and deletes
    /// the libraries of versions no longer running: their names (none for
    /// memory, nor where the scripts run with EVALSHA).
    fn drop_old_script_libraries(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Notices for a worker.
    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>>;

    /// Subscribes to the outcomes announced to the listener `token` (one
    /// per process, see [`listen_finished`](Self::listen_finished)).
    fn subscribe_finished<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Subscription<FinishedNotice>, Error>>;

    /// Registers the listener `token` of `kind` for `ttl` (renewed by
    /// calling again), or with `None` removes it: while one is registered,
    /// every job that ends is announced to the process waiting for outcomes
    /// ([`Listener::Finished`]), and every job event is published
    /// ([`Listener::Events`]).
    fn listen<'a>(
        &'a self,
        kind: Listener,
        token: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Subscribes to the job events of the namespace (published while a
    /// [`Listener::Events`] is registered), holding `capacity` at most.
    fn subscribe_events(
        &self,
        capacity: usize,
    ) -> BoxFuture<'_, Result<Subscription<EventNotice>, Error>>;

    /// Records the progress (JSON) a running attempt reports, fenced by
    /// (generation, attempt): false when the attempt no longer holds the job.
    fn progress<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
        attempt: u32,
        progress: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Closes connections.
    fn close(&self) -> BoxFuture<'_, ()>;
}
