//! The in-memory backend: the Lua scripts' state machine in one process, with
//! the same semantics (a conformance suite runs every behaviour on both).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::api::config::SchedulerConfig;
use crate::api::error::Error;
use crate::api::job::{CancelOutcome, DeadLetter, FinishedState, JobInfo, JobStatus};
use crate::backend::redis::reply::time;
use crate::backend::{
    user_request_key, user_request_ttl_ms, Backend, BoxFuture, Claim, ClaimTicket, ClaimedJob,
    EnqueueReply, Finished, NewJob, Notice, RawPending, Subscription,
};
use crate::clock::{Clock, SystemClock};

/// Expired outcomes one claim drops at most (`SWEEP` in claim.lua).
const SWEEP: usize = 2000;

/// A sorted set: the `ZSET` of the Redis layout (score, then id).
#[derive(Debug, Default)]
struct ScoreSet {
    by_id: HashMap<String, i64>,
    ordered: BTreeSet<(i64, String)>,
}

impl ScoreSet {
    fn add(&mut self, id: &str, score: i64) {
        if let Some(old) = self.by_id.insert(id.to_string(), score) {
            self.ordered.remove(&(old, id.to_string()));
        }
        self.ordered.insert((score, id.to_string()));
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            self.ordered.remove(&(old, id.to_string()));
        }
    }

    fn score(&self, id: &str) -> Option<i64> {
        self.by_id.get(id).copied()
    }

    /// Up to `limit` entries with a score at most `max`, lowest first.
    fn up_to(&self, max: i64, limit: usize) -> Vec<(String, i64)> {
        self.ordered
            .iter()
            .take_while(|(score, _)| *score <= max)
            .take(limit)
            .map(|(score, id)| (id.clone(), *score))
            .collect()
    }

    fn first(&self) -> Option<i64> {
        self.ordered.iter().next().map(|(score, _)| *score)
    }

    fn len(&self) -> usize {
        self.ordered.len()
    }

    fn pop_min(&mut self, n: usize) -> Vec<String> {
        let ids: Vec<String> = self
            .ordered
            .iter()
            .take(n)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.ordered.clear();
    }
}

/// A job record (the msgpack array of `common.lua`).
#[derive(Clone, Debug)]
struct Record {
    task: String,
    payload: Vec<u8>,
    generation: u64,
    attempts: u32,
    max_attempts: u32,
    enqueued_ms: i64,
    nonce: String,
    last_error: Option<String>,
    run_at: Option<i64>,
    started_ms: Option<i64>,
    worker: Option<String>,
    cancel: bool,
    blocked: Option<i64>,
}

#[derive(Clone, Debug)]
struct Outcome {
    generation: u64,
    state: FinishedState,
    result: String,
    error: String,
    task: String,
    attempts: u32,
    enqueued_ms: i64,
    started_ms: Option<i64>,
    finished_ms: i64,
    run_at: Option<i64>,
    max_attempts: u32,
    /// The nonce of the request that created the job.
    nonce: String,
}

#[derive(Clone, Debug)]
struct DeadEntry {
    task: String,
    generation: u64,
    attempts: u32,
    reason: String,
    failed_ms: i64,
    payload: Vec<u8>,
    max_attempts: u32,
}

#[derive(Debug, Default)]
struct State {
    due: ScoreSet,
    pending: HashMap<String, Record>,
    active: HashMap<String, Record>,
    leases: ScoreSet,
    results: HashMap<String, Outcome>,
    results_exp: ScoreSet,
    dead: HashMap<String, DeadEntry>,
    dead_order: ScoreSet,
    seq: u64,
    /// The reply log of requests with the caller's request id (common.lua
    /// `logged`): key -> the first reply, and when it expires.
    replies: HashMap<String, EnqueueReply>,
    replies_exp: ScoreSet,
}

/// What schedulers built on the same `memory://name` and namespace share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    notices: broadcast::Sender<Notice>,
    clock: Arc<dyn Clock>,
}

/// An in-memory backend; clones of a scheduler and every scheduler built with
/// the same `memory://name` and namespace in this process see the same jobs.
#[derive(Debug)]
pub(crate) struct MemoryBackend {
    shared: Arc<Shared>,
    config: SchedulerConfig,
}

/// The stores of `memory://name` URLs, by (name, namespace).
type Stores = Mutex<HashMap<(String, String), Weak<Shared>>>;

fn registry() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Ctx of one transition: the state, the time and the settings.
struct Tx<'a> {
    s: MutexGuard<'a, State>,
    now: i64,
    keep_ms: i64,
    cap: usize,
    wake: bool,
    aborts: Vec<Notice>,
}

impl MemoryBackend {
    /// A backend with its own state and clock.
    pub(crate) fn new(config: SchedulerConfig, clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                notices: broadcast::channel(1024).0,
                clock,
            }),
            config,
        }
    }

    /// The backend of `memory://name` in this process (created on first use).
    pub(crate) fn named(name: &str, config: SchedulerConfig) -> Self {
        let key = (name.to_string(), config.namespace.clone());
        let mut stores = registry().lock().unwrap_or_else(|p| p.into_inner());
        stores.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = stores.get(&key).and_then(Weak::upgrade) {
            return MemoryBackend { shared, config };
        }
        let backend = MemoryBackend::new(config, Arc::new(SystemClock));
        stores.insert(key, Arc::downgrade(&backend.shared));
        backend
    }

    /// Wakes workers (after a manual clock moved).
    pub(crate) fn wake(&self) {
        let _ = self.shared.notices.send(Notice::Wake);
    }

    fn begin(&self) -> Tx<'_> {
        Tx {
            s: self.shared.state.lock().unwrap_or_else(|p| p.into_inner()),
            now: self.shared.clock.now_ms(),
            keep_ms: self.config.keep_result.as_millis() as i64,
            cap: self.config.dead_letter_cap as usize,
            wake: false,
            aborts: Vec::new(),
        }
    }

    fn commit(&self, tx: Tx<'_>) {
        let wake = tx.wake;
        let aborts = tx.aborts;
        drop(tx.s);
        if wake {
            let _ = self.shared.notices.send(Notice::Wake);
        }
        for abort in aborts {
            let _ = self.shared.notices.send(abort);
        }
    }

    fn enqueue_now(&self, mode: &str, if_running: &str, jobs: &[NewJob]) -> Vec<EnqueueReply> {
        let mut tx = self.begin();
        let now = tx.now;
        // A request the caller named (alone in its call): answered from the
        // reply log when it was sent before, recorded below otherwise.
        let logged = match jobs {
            [NewJob {
                id,
                request_id: Some(request_id),
                ..
            }] => Some(user_request_key(id, request_id)),
            _ => None,
        };
        if let Some(key) = &logged {
            // Expiring keys drop out as Redis drops them (a few per call).
            for (old, _) in tx.s.replies_exp.up_to(now, 20) {
                tx.s.replies.remove(&old);
                tx.s.replies_exp.remove(&old);
            }
            let live = tx.s.replies_exp.score(key).is_some_and(|t| t > now);
            if let Some(reply) = tx.s.replies.get(key).filter(|_| live).cloned() {
                self.commit(tx);
                return vec![reply];
            }
        }
        let mut earliest: Option<i64> = None;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let run_at = match job.when.0 {
                "at" => job.when.1,
                "after" => now + job.when.1,
                _ => now,
            };
            let reply = |code: &str, generation: u64, run_at_ms: i64, state: &str, other: i64| {
                EnqueueReply {
                    code: code.to_string(),
                    generation,
                    run_at_ms,
                    state: state.to_string(),
                    other,
                    task: String::new(),
                    replaced: 0,
                }
            };
            let pending = tx.s.pending.get(&job.id).cloned();
            let active = tx.s.active.get(&job.id).cloned();
            let mut create = |tx: &mut Tx<'_>, blocked: Option<i64>| -> u64 {
                tx.s.seq += 1;
                let generation = tx.s.seq;
                let record = Record {
                    task: job.task.clone(),
                    payload: job.payload.clone(),
                    generation,
                    attempts: 0,
                    max_attempts: job.max_attempts,
                    enqueued_ms: now,
                    nonce: job.nonce.clone(),
                    last_error: None,
                    run_at: None,
                    started_ms: None,
                    worker: None,
                    cancel: false,
                    blocked: blocked.map(|_| run_at),
                };
                tx.s.pending.insert(job.id.clone(), record);
                tx.s.due.add(&job.id, blocked.unwrap_or(run_at));
                if blocked.is_none() && earliest.is_none_or(|e| run_at < e) {
                    earliest = Some(run_at);
                }
                generation
            };
            let lease_of = |tx: &Tx<'_>| tx.s.leases.score(&job.id).unwrap_or(now);
            if let Some(p) = pending.as_ref().filter(|p| p.nonce == job.nonce) {
                let score = tx.s.due.score(&job.id).unwrap_or(now);
                out.push(reply("enqueued", p.generation, score, "", 0));
            } else if let Some(a) = active.as_ref().filter(|a| a.nonce == job.nonce) {
                out.push(reply(
                    "enqueued",
                    a.generation,
                    a.run_at.unwrap_or(now),
                    "",
                    0,
                ));
            } else if let Some(done) = tx.s.results.get(&job.id).filter(|r| {
                (mode == "enqueue" || (pending.is_none() && active.is_none()))
                    && r.nonce == job.nonce
            }) {
                // Re-sent after its job already ran (or was cancelled): still one job.
                let run_at = done.run_at.unwrap_or(done.finished_ms);
                out.push(reply("enqueued", done.generation, run_at, "", 0));
            } else if mode == "enqueue" {
                if let Some(p) = &pending {
                    let score = tx.s.due.score(&job.id).unwrap_or(now);
                    let planned = p.blocked.unwrap_or(score);
                    let state = if p.blocked.is_some() || score <= now {
                        "queued"
                    } else {
                        "deferred"
                    };
                    let mut r = reply("duplicate", p.generation, planned, state, 0);
                    r.task = p.task.clone();
                    out.push(r);
                } else if let Some(a) = &active {
                    let mut r = reply(
                        "duplicate",
                        a.generation,
                        a.run_at.unwrap_or(now),
                        "running",
                        0,
                    );
                    r.task = a.task.clone();
                    out.push(r);
                } else if let Some(r) = job
                    .unique_until_result_expires
                    .then(|| tx.live_result(&job.id))
                    .flatten()
                {
                    out.push(reply(
                        "finished",
                        r.generation,
                        r.finished_ms,
                        r.state.as_str(),
                        0,
                    ));
                } else {
                    let generation = create(&mut tx, None);
                    out.push(reply("enqueued", generation, run_at, "", 0));
                }
            } else if let Some(holder) = active
                .as_ref()
                .filter(|a| a.task != job.task)
                .or(pending.as_ref().filter(|p| p.task != job.task))
            {
                // As enqueue.lua: replace acts only on a job of its own task.
                let mut r = reply(
                    "wrong_task",
                    holder.generation,
                    holder.run_at.unwrap_or(now),
                    "",
                    0,
                );
                r.task = holder.task.clone();
                out.push(r);
            } else if let Some(a) = &active {
                // As enqueue.lua: the policy holds whether or not a
                // replacement already waits ('keep' leaves it waiting).
                if if_running == "keep" {
                    out.push(reply(
                        "running",
                        a.generation,
                        a.run_at.unwrap_or(now),
                        "",
                        0,
                    ));
                } else {
                    // As enqueue.lua: the new job takes the place of one
                    // already waiting, and names it.
                    let mut code = "queued_after";
                    if if_running == "abort" {
                        code = "aborted";
                        if let Some(rec) = tx.s.active.get_mut(&job.id) {
                            rec.cancel = true;
                        }
                        tx.aborts.push(Notice::Abort {
                            generation: a.generation,
                            id: job.id.clone(),
                        });
                    }
                    let blocked = Some(lease_of(&tx));
                    let generation = create(&mut tx, blocked);
                    let mut r = reply(code, generation, run_at, "", a.generation as i64);
                    r.replaced = pending.as_ref().map_or(0, |p| p.generation);
                    out.push(r);
                }
            } else if let Some(p) = &pending {
                let score = tx.s.due.score(&job.id).unwrap_or(now);
                let previous = p.blocked.unwrap_or(score);
                let generation = create(&mut tx, None);
                let mut r = reply("replaced", generation, run_at, "", previous);
                r.replaced = p.generation;
                out.push(r);
            } else {
                let generation = create(&mut tx, None);
                out.push(reply("enqueued", generation, run_at, "", 0));
            }
        }
        if let Some(run_at) = earliest {
            tx.wake_if_earliest(run_at);
        }
        if let (Some(key), Some(reply)) = (logged, out.first()) {
            let expires = now + user_request_ttl_ms(&self.config);
            tx.s.replies.insert(key.clone(), reply.clone());
            tx.s.replies_exp.add(&key, expires);
        }
        self.commit(tx);
        out
    }

    fn claim_now(&self, worker: &str, max: usize, lease: Duration) -> Claim {
        let mut tx = self.begin();
        let now = tx.now;
        let lease_ms = lease.as_millis() as i64;
        // As claim.lua: an idle worker's claims drain expired outcomes.
        let swept = tx.sweep_results_up_to(SWEEP);
        for (id, _) in tx.s.leases.up_to(now, 100) {
            tx.expire_lease(&id);
        }
        let mut claim = Claim {
            now_ms: now,
            next_wake_ms: None,
            jobs: Vec::new(),
            rejected: Vec::new(),
        };
        if max > 0 {
            for (id, run_at) in tx.s.due.up_to(now, max) {
                let Some(mut rec) = tx.s.pending.get(&id).cloned() else {
                    tx.s.due.remove(&id);
                    let reason = "the job record is missing (index entry without a job)";
                    tx.dead_letter(&id, None, reason);
                    claim.rejected.push((id, reason.to_string()));
                    continue;
                };
                if tx.s.active.contains_key(&id) {
                    rec.blocked = Some(rec.blocked.unwrap_or(run_at));
                    let score = tx.s.leases.score(&id).unwrap_or(now + lease_ms);
                    tx.s.pending.insert(id.clone(), rec);
                    tx.s.due.add(&id, score);
                    continue;
                }
                tx.s.due.remove(&id);
                tx.s.pending.remove(&id);
                rec.attempts += 1;
                rec.run_at = Some(run_at);
                rec.started_ms = Some(now);
                rec.worker = Some(worker.to_string());
                rec.cancel = false;
                rec.blocked = None;
                claim.jobs.push(ClaimedJob {
                    id: id.clone(),
                    task: rec.task.clone(),
                    payload: rec.payload.clone(),
                    generation: rec.generation,
                    attempt: rec.attempts,
                    max_attempts: rec.max_attempts,
                    enqueued_ms: rec.enqueued_ms,
                    run_at_ms: run_at,
                });
                tx.s.active.insert(id.clone(), rec);
                tx.s.leases.add(&id, now + lease_ms);
            }
        }
        claim.next_wake_ms = match (tx.s.due.first(), tx.s.leases.first()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if swept == SWEEP {
            // More expired outcomes than one sweep takes: come back at once.
            claim.next_wake_ms = Some(now);
        }
        self.commit(tx);
        claim
    }

    fn complete_now(&self, finished: &[Finished]) -> Vec<String> {
        let mut tx = self.begin();
        let now = tx.now;
        let mut out = Vec::with_capacity(finished.len());
        // Jobs put back in `due` (a retry, a release, a replacement that waited) wake workers.
        let mut earliest: Option<i64> = None;
        let mut due_at = |t: Option<i64>| {
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        for f in finished {
            let Some(mut rec) =
                tx.s.active
                    .get(&f.id)
                    .filter(|r| r.generation == f.generation && r.attempts == f.attempt)
                    .cloned()
            else {
                out.push("stale");
                continue;
            };
            let has_pending = tx.s.pending.contains_key(&f.id);
            let code = if f.outcome == "ok" && !rec.cancel {
                due_at(tx.finish_active(&f.id, &rec, FinishedState::Completed, &f.text, ""));
                "completed"
            } else if f.outcome == "cancelled" || rec.cancel {
                // An abort was answered before this outcome arrived: the job
                // ends Cancelled, whatever its run did meanwhile.
                due_at(tx.finish_active(&f.id, &rec, FinishedState::Cancelled, "", "cancelled"));
                "cancelled"
            } else if f.outcome == "release" {
                if has_pending {
                    due_at(tx.finish_active(
                        &f.id,
                        &rec,
                        FinishedState::Cancelled,
                        "",
                        "superseded by a replacement at shutdown",
                    ));
                    "cancelled"
                } else {
                    // As complete.lua: the fence token is never reused, and
                    // a release uses up no attempt.
                    rec.max_attempts += 1;
                    tx.requeue_active(&f.id, rec, now, None);
                    due_at(Some(now));
                    "released"
                }
            } else if f.outcome == "retry" && rec.attempts < rec.max_attempts && !has_pending {
                let run_at = now + f.retry_delay_ms as i64;
                tx.requeue_active(&f.id, rec, run_at, Some(f.text.clone()));
                due_at(Some(run_at));
                "retrying"
            } else if f.outcome == "retry" && rec.attempts < rec.max_attempts {
                due_at(tx.finish_active(&f.id, &rec, FinishedState::Failed, "", &f.text));
                "failed"
            } else {
                let reason = if f.outcome == "retry" {
                    format!(
                        "attempts exhausted ({} of {}): {}",
                        rec.attempts, rec.max_attempts, f.text
                    )
                } else {
                    f.text.clone()
                };
                tx.dead_letter(&f.id, Some(&rec), &reason);
                due_at(tx.finish_active(&f.id, &rec, FinishedState::Failed, "", &reason));
                "failed"
            };
            out.push(code);
        }
        if let Some(t) = earliest {
            tx.wake_if_earliest(t);
        }
        self.commit(tx);
        out.into_iter().map(str::to_string).collect()
    }

    fn renew_now(&self, lease: Duration, running: &[(String, u64, u32)]) -> Vec<String> {
        let mut tx = self.begin();
        let until = tx.now + lease.as_millis() as i64;
        let mut out = Vec::with_capacity(running.len());
        for (id, generation, attempt) in running {
            let cancel = match tx.s.active.get(id) {
                Some(r) if r.generation == *generation && r.attempts == *attempt => r.cancel,
                _ => {
                    out.push("lost".to_string());
                    continue;
                }
            };
            tx.s.leases.add(id, until);
            out.push(if cancel { "cancel" } else { "ok" }.to_string());
        }
        self.commit(tx);
        out
    }

    fn cancel_now(
        &self,
        id: &str,
        want: Option<u64>,
        task: Option<&str>,
    ) -> Result<CancelOutcome, Error> {
        let mut tx = self.begin();
        // As cancel.lua: a typed cancel acts only on a job of its task.
        if let Some(expected) = task.filter(|t| !t.is_empty()) {
            let held: Vec<&Record> = [tx.s.active.get(id), tx.s.pending.get(id)]
                .into_iter()
                .flatten()
                .collect();
            let found = if held.is_empty() {
                tx.live_result(id)
                    .filter(|r| !r.task.is_empty() && r.task != expected)
                    .map(|r| r.task.clone())
            } else {
                held.iter()
                    .find(|r| r.task != expected)
                    .map(|r| r.task.clone())
            };
            if let Some(found) = found {
                return Err(Error::WrongTask {
                    job_id: id.to_string(),
                    expected: expected.to_string(),
                    found,
                });
            }
        }
        let matches = |generation: u64| want.is_none_or(|w| w == generation);
        let mut removed = None;
        if let Some(rec) =
            tx.s.pending
                .get(id)
                .filter(|r| matches(r.generation))
                .cloned()
        {
            tx.s.pending.remove(id);
            tx.s.due.remove(id);
            tx.record_result(
                id,
                Some(&rec),
                FinishedState::Cancelled,
                "",
                "cancelled before it started",
            );
            removed = Some(rec.generation);
        }
        let outcome = if let Some(generation) =
            tx.s.active
                .get_mut(id)
                .filter(|r| matches(r.generation))
                .map(|r| {
                    r.cancel = true;
                    r.generation
                }) {
            tx.aborts.push(Notice::Abort {
                generation,
                id: id.to_string(),
            });
            CancelOutcome::AbortSignalled {
                generation,
                removed_successor: removed,
            }
        } else if let Some(generation) = removed {
            CancelOutcome::Removed { generation }
        } else {
            match tx.live_result(id).filter(|r| matches(r.generation)) {
                Some(r) => CancelOutcome::AlreadyFinished(r.state),
                None => CancelOutcome::NotFound,
            }
        };
        self.commit(tx);
        Ok(outcome)
    }

    fn inspect_now(&self, id: &str) -> Option<JobInfo> {
        let tx = self.begin();
        let now = tx.now;
        let info = if let Some(rec) = tx.s.active.get(id) {
            Some(record_info(
                id,
                rec,
                JobStatus::Running {
                    attempt: rec.attempts,
                    worker: rec.worker.clone().unwrap_or_default(),
                },
                rec.run_at,
            ))
        } else if let Some(rec) = tx.s.pending.get(id) {
            let run_at_ms = rec.blocked.or(tx.s.due.score(id)).unwrap_or(now);
            let at = time(run_at_ms);
            let status = if run_at_ms <= now || rec.blocked.is_some() {
                JobStatus::Queued { run_at: at }
            } else {
                JobStatus::Deferred { run_at: at }
            };
            Some(record_info(id, rec, status, Some(run_at_ms)))
        } else {
            tx.live_result(id).map(|r| JobInfo {
                job_id: id.to_string(),
                task: r.task.clone(),
                generation: r.generation,
                status: match r.state {
                    FinishedState::Completed => JobStatus::Completed,
                    FinishedState::Failed => JobStatus::Failed,
                    FinishedState::Cancelled => JobStatus::Cancelled,
                },
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                enqueued_at: positive_time(Some(r.enqueued_ms)),
                run_at: positive_time(r.run_at),
                started_at: positive_time(r.started_ms),
                finished_at: positive_time(Some(r.finished_ms)),
                last_error: Some(r.error.clone()).filter(|e| !e.is_empty()),
                result: Some(r.result.clone()).filter(|e| !e.is_empty()),
            })
        };
        drop(tx);
        info
    }

    fn dead_letters_now(&self, offset: usize, count: usize) -> Vec<DeadLetter> {
        let tx = self.begin();
        let out =
            tx.s.dead_order
                .ordered
                .iter()
                .rev()
                .skip(offset)
                .take(count)
                .map(|(_, id)| match tx.s.dead.get(id) {
                    Some(e) => DeadLetter {
                        job_id: id.clone(),
                        task: Some(e.task.clone()).filter(|t| !t.is_empty()),
                        generation: Some(e.generation).filter(|g| *g > 0),
                        attempts: e.attempts,
                        reason: e.reason.clone(),
                        failed_at: positive_time(Some(e.failed_ms)),
                    },
                    None => DeadLetter {
                        job_id: id.clone(),
                        task: None,
                        generation: None,
                        attempts: 0,
                        reason: "unreadable dead-letter entry".to_string(),
                        failed_at: None,
                    },
                })
                .collect();
        drop(tx);
        out
    }

    fn requeue_dead_now(&self, id: &str, nonce: &str) -> Option<u64> {
        let mut tx = self.begin();
        let now = tx.now;
        let entry = tx.s.dead.get(id).cloned();
        let busy = tx.s.pending.contains_key(id) || tx.s.active.contains_key(id);
        let generation = match entry {
            Some(e) if !busy && !e.task.is_empty() => {
                tx.s.seq += 1;
                let generation = tx.s.seq;
                let max_attempts = if e.max_attempts < 1 {
                    5
                } else {
                    e.max_attempts
                };
                tx.s.pending.insert(
                    id.to_string(),
                    Record {
                        task: e.task,
                        payload: e.payload,
                        generation,
                        attempts: 0,
                        max_attempts,
                        enqueued_ms: now,
                        nonce: nonce.to_string(),
                        last_error: None,
                        run_at: None,
                        started_ms: None,
                        worker: None,
                        cancel: false,
                        blocked: None,
                    },
                );
                tx.s.due.add(id, now);
                tx.s.dead.remove(id);
                tx.s.dead_order.remove(id);
                tx.wake_if_earliest(now);
                Some(generation)
            }
            _ => None,
        };
        self.commit(tx);
        generation
    }

    fn purge_dead_now(&self) -> u64 {
        let mut tx = self.begin();
        let n = tx.s.dead_order.len() as u64;
        tx.s.dead.clear();
        tx.s.dead_order.clear();
        self.commit(tx);
        n
    }

    fn list_pending_now(&self, task: Option<&str>) -> Vec<RawPending> {
        let tx = self.begin();
        let out =
            tx.s.pending
                .iter()
                .filter(|(_, r)| task.is_none_or(|t| r.task == t))
                .map(|(id, r)| RawPending {
                    id: id.clone(),
                    task: r.task.clone(),
                    generation: r.generation,
                    run_at_ms: r.blocked.or(tx.s.due.score(id)).unwrap_or(0),
                    attempts: r.attempts,
                    payload: r.payload.clone(),
                })
                .collect();
        drop(tx);
        out
    }
}

fn positive_time(ms: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    ms.filter(|ms| *ms > 0).map(time)
}

fn record_info(id: &str, rec: &Record, status: JobStatus, run_at: Option<i64>) -> JobInfo {
    JobInfo {
        job_id: id.to_string(),
        task: rec.task.clone(),
        generation: rec.generation,
        status,
        attempts: rec.attempts,
        max_attempts: rec.max_attempts,
        enqueued_at: positive_time(Some(rec.enqueued_ms)),
        run_at: positive_time(run_at),
        started_at: positive_time(rec.started_ms),
        finished_at: None,
        last_error: rec.last_error.clone().filter(|e| !e.is_empty()),
        result: None,
    }
}

impl Tx<'_> {
    fn wake_if_earliest(&mut self, run_at: i64) {
        if self.s.due.first().is_none_or(|head| run_at <= head) {
            self.wake = true;
        }
    }

    fn live_result(&self, id: &str) -> Option<&Outcome> {
        if self.s.results_exp.score(id).is_some_and(|e| e <= self.now) {
            return None;
        }
        self.s.results.get(id)
    }

    fn sweep_results(&mut self) {
        self.sweep_results_up_to(20);
    }

    /// Mirrors `sweep_results(now, limit)` of common.lua.
    fn sweep_results_up_to(&mut self, limit: usize) -> usize {
        let expired = self.s.results_exp.up_to(self.now, limit);
        for (id, _) in &expired {
            self.s.results.remove(id);
            self.s.results_exp.remove(id);
        }
        expired.len()
    }

    fn record_result(
        &mut self,
        id: &str,
        rec: Option<&Record>,
        state: FinishedState,
        result: &str,
        error: &str,
    ) {
        if self.keep_ms > 0 {
            let outcome = Outcome {
                generation: rec.map(|r| r.generation).unwrap_or(0),
                state,
                result: result.to_string(),
                error: error.to_string(),
                task: rec.map(|r| r.task.clone()).unwrap_or_default(),
                attempts: rec.map(|r| r.attempts).unwrap_or(0),
                enqueued_ms: rec.map(|r| r.enqueued_ms).unwrap_or(0),
                started_ms: rec.and_then(|r| r.started_ms),
                finished_ms: self.now,
                run_at: rec.and_then(|r| r.run_at),
                max_attempts: rec.map(|r| r.max_attempts).unwrap_or(0),
                nonce: rec.map(|r| r.nonce.clone()).unwrap_or_default(),
            };
            self.s.results.insert(id.to_string(), outcome);
            let expires = self.now + self.keep_ms;
            self.s.results_exp.add(id, expires);
        } else {
            self.s.results.remove(id);
            self.s.results_exp.remove(id);
        }
        self.sweep_results();
    }

    fn dead_letter(&mut self, id: &str, rec: Option<&Record>, reason: &str) {
        let entry = DeadEntry {
            task: rec.map(|r| r.task.clone()).unwrap_or_default(),
            generation: rec.map(|r| r.generation).unwrap_or(0),
            attempts: rec.map(|r| r.attempts).unwrap_or(0),
            reason: reason.to_string(),
            failed_ms: self.now,
            payload: rec.map(|r| r.payload.clone()).unwrap_or_default(),
            max_attempts: rec.map(|r| r.max_attempts).unwrap_or(0),
        };
        self.s.dead.insert(id.to_string(), entry);
        let now = self.now;
        self.s.dead_order.add(id, now);
        let excess = self.s.dead_order.len().saturating_sub(self.cap);
        for old in self.s.dead_order.pop_min(excess) {
            self.s.dead.remove(&old);
        }
    }

    /// A replacement that waited for the running job may start: when it became due.
    fn unblock_pending(&mut self, id: &str) -> Option<i64> {
        let now = self.now;
        let rec = self.s.pending.get_mut(id)?;
        let blocked = rec.blocked.take()?;
        let run_at = blocked.max(now);
        self.s.due.add(id, run_at);
        Some(run_at)
    }

    fn finish_active(
        &mut self,
        id: &str,
        rec: &Record,
        state: FinishedState,
        result: &str,
        error: &str,
    ) -> Option<i64> {
        self.s.active.remove(id);
        self.s.leases.remove(id);
        self.record_result(id, Some(rec), state, result, error);
        self.unblock_pending(id)
    }

    fn requeue_active(&mut self, id: &str, mut rec: Record, run_at: i64, error: Option<String>) {
        self.s.active.remove(id);
        self.s.leases.remove(id);
        if error.is_some() {
            rec.last_error = error;
        }
        rec.run_at = None;
        rec.started_ms = None;
        rec.worker = None;
        rec.cancel = false;
        rec.blocked = None;
        self.s.pending.insert(id.to_string(), rec);
        self.s.due.add(id, run_at);
    }

    fn expire_lease(&mut self, id: &str) {
        self.s.leases.remove(id);
        let Some(rec) = self.s.active.get(id).cloned() else {
            return;
        };
        if rec.cancel {
            self.finish_active(
                id,
                &rec,
                FinishedState::Cancelled,
                "",
                "cancelled while its worker was gone",
            );
        } else if self.s.pending.contains_key(id) {
            self.finish_active(
                id,
                &rec,
                FinishedState::Cancelled,
                "",
                "superseded by a replacement while its worker was gone",
            );
        } else if rec.attempts >= rec.max_attempts {
            let reason = format!(
                "stalled: the lease expired on attempt {} of {} (worker died or hung)",
                rec.attempts, rec.max_attempts
            );
            self.dead_letter(id, Some(&rec), &reason);
            self.finish_active(id, &rec, FinishedState::Failed, "", &reason);
        } else {
            let error = format!(
                "lease expired on attempt {} (worker died or hung)",
                rec.attempts
            );
            let now = self.now;
            self.requeue_active(id, rec, now, Some(error));
        }
    }
}

impl Backend for MemoryBackend {
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        Box::pin(async move { Ok(self.enqueue_now(mode, if_running, jobs)) })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        // In one process a reply cannot be lost: nothing to replay.
        _ticket: &'a ClaimTicket,
    ) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move { Ok(self.claim_now(worker, max, lease)) })
    }

    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move { Ok(self.complete_now(finished)) })
    }

    fn renew<'a>(
        &'a self,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move { Ok(self.renew_now(lease, running)) })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CancelOutcome, Error>> {
        Box::pin(async move { self.cancel_now(id, generation, task) })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        Box::pin(async move { Ok(self.inspect_now(id)) })
    }

    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move { Ok(self.dead_letters_now(offset, count)) })
    }

    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async move { Ok(self.requeue_dead_now(id, nonce)) })
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { Ok(self.purge_dead_now()) })
    }

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        _cursor: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        Box::pin(async move { Ok(("0".to_string(), self.list_pending_now(task))) })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        let mut notices = self.shared.notices.subscribe();
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let forward = tokio::spawn(async move {
                loop {
                    let notice = match notices.recv().await {
                        Ok(n) => n,
                        Err(broadcast::error::RecvError::Lagged(_)) => Notice::Wake,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if tx.send(notice).is_err() {
                        return;
                    }
                }
            });
            Ok(Subscription {
                notices: rx,
                close: Box::new(move || {
                    Box::pin(async move {
                        forward.abort();
                    })
                }),
            })
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
