//! The state-changing transitions, each the counterpart of one Lua script.

use std::time::Duration;

use std::collections::HashMap;

use crate::api::events::JobEventKind;
use crate::backend::memory::state::{key_slot, task_park, task_slot, unserved_park, Record};
use crate::backend::memory::tx::SWEEP;
use crate::backend::memory::{MemoryBackend, Tx};
use crate::backend::{
    user_request_key, user_request_ttl_ms, Claim, ClaimedJob, EnqueueReply, Finished, NewJob,
    Notice, Serving, TaskLimits,
};
use crate::clock::time_from_ms;
use crate::{CancelOutcome, Error, FinishedState};

impl MemoryBackend {
    pub(super) fn enqueue_now(
        &self,
        mode: &str,
        if_running: &str,
        jobs: &[NewJob],
    ) -> Vec<EnqueueReply> {
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
                "at" => crate::backend::ms_up(job.when.1),
                "after" => now + crate::backend::ms_up(job.when.1),
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
                    progress: None,
                    trace: job.trace.clone(),
                    queue: job.queue.clone().filter(|q| q != crate::DEFAULT_QUEUE),
                    priority: job.priority,
                    limit_key: job.limit_key.clone(),
                    parked: None,
                    slots: 0,
                };
                if let Some(queue) = &record.queue {
                    tx.s.known_queues.insert(queue.clone());
                }
                // The job it replaces leaves its index (enqueue.lua's
                // drop_pending_entry).
                if let Some(p) = &pending {
                    if tx.drop_pending_entry(&job.id, p).is_some() {
                        tx.wake = true;
                    }
                }
                tx.emit(&job.id, Some(&record), || JobEventKind::Enqueued {
                    run_at: time_from_ms(run_at),
                    replaced: pending.as_ref().map(|p| p.generation),
                });
                tx.s.pending.insert(job.id.clone(), record);
                tx.s.due.add(&job.id, blocked.unwrap_or(run_at));
                if blocked.is_none() && earliest.is_none_or(|e| run_at < e) {
                    earliest = Some(run_at);
                }
                generation
            };
            let lease_of = |tx: &Tx<'_>| tx.s.leases.score(&job.id).unwrap_or(now);
            if let Some(p) = pending.as_ref().filter(|p| p.nonce == job.nonce) {
                let score = tx.pending_score(&job.id, p).unwrap_or(now);
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
                    let score = tx.pending_score(&job.id, p).unwrap_or(now);
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
                        if let Some(mut rec) = tx.s.active.remove(&job.id) {
                            rec.cancel = true;
                            // An aborted job's slots are free at once.
                            if tx.release_slots(&mut rec).is_some() {
                                tx.wake = true;
                            }
                            tx.s.active.insert(job.id.clone(), rec);
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
                let score = tx.pending_score(&job.id, p).unwrap_or(now);
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

    pub(super) fn claim_now(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        serving: &Serving,
    ) -> Claim {
        let mut tx = self.begin();
        let now = tx.now;
        let lease_ms = lease.as_millis() as i64;
        // As claim.lua: an idle worker's claims drain expired outcomes.
        let swept = tx.sweep_results_up_to(SWEEP);
        for (id, _) in tx.s.leases.up_to(now, 100) {
            tx.expire_lease(&id);
        }
        let mut claim = Claim {
            now_us: now * 1000,
            next_wake_us: None,
            jobs: Vec::new(),
            rejected: Vec::new(),
            candidates: Vec::new(),
        };
        // The rank of each queue served (claim.lua visits them in order).
        let default = [crate::DEFAULT_QUEUE.to_string()];
        let queues: Option<&[String]> =
            serving
                .queues
                .as_deref()
                .map(|q| if q.is_empty() { &default[..] } else { q });
        let rank = |queue: &str| match queues {
            None => Some(0),
            Some(q) => q.iter().position(|name| name == queue),
        };
        let serves_task = |task: &str| {
            serving
                .tasks
                .as_ref()
                .is_none_or(|tasks| tasks.iter().any(|t| t == task))
        };
        let limits: HashMap<&str, &TaskLimits> = serving
            .limits
            .iter()
            .map(|l| (l.task.as_str(), l))
            .collect();
        let queue_of = |rec: &Record| {
            rec.queue
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string())
        };
        if max > 0 {
            // Jobs parked for want of a worker that runs them, when this one does.
            if serving.tasks.is_some() {
                let found: Vec<(String, String)> =
                    tx.s.unserved
                        .iter()
                        .filter(|(queue, task)| rank(queue).is_some() && serves_task(task))
                        .cloned()
                        .collect();
                for (queue, task) in found {
                    tx.unpark(&unserved_park(&queue, &task), usize::MAX);
                    tx.s.unserved.remove(&(queue, task));
                }
            }
            // As claim.lua: rate parks whose timer is due let out as many
            // jobs as their budget allows now (at least one).
            for (park, _) in tx.s.timers.up_to(now, 20) {
                tx.s.timers.remove(&park);
                let (allowed, window) = match tx.s.rates.get(&park).cloned() {
                    Some((n, w, log)) => (tx.rate_left(&log, n, w).max(1) as usize, w),
                    None => (1, 1000),
                };
                tx.unpark(&park, allowed);
                if tx.s.parks.contains_key(&park) {
                    tx.arm_timer(&park, now + window);
                } else {
                    tx.s.rates.remove(&park);
                }
            }
            // Due jobs of the queues served: queue order, then priority
            // (highest first), then run time.
            let mut due: Vec<(usize, i8, i64, String)> =
                tx.s.due
                    .up_to(now, usize::MAX)
                    .into_iter()
                    .filter_map(|(id, run_at)| {
                        let rec = tx.s.pending.get(&id);
                        let queue = rec.map_or_else(|| crate::DEFAULT_QUEUE.to_string(), queue_of);
                        let priority = rec.map_or(0, |r| r.priority);
                        rank(&queue).map(|r| (r, priority, run_at, id))
                    })
                    .collect();
            due.sort_by(|a, b| {
                (a.0, -i16::from(a.1), a.2, &a.3).cmp(&(b.0, -i16::from(b.1), b.2, &b.3))
            });
            for (_, _, run_at, id) in due {
                if claim.jobs.len() >= max {
                    break;
                }
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
                let limit = limits.get(rec.task.as_str()).copied();
                let task = rec.task.clone();
                let park = if !serves_task(&task) {
                    let queue = queue_of(&rec);
                    tx.s.unserved.insert((queue.clone(), task.clone()));
                    Some(unserved_park(&queue, &task))
                } else if let Some(l) = limit {
                    tx.limit_park(l, &task, rec.limit_key.as_deref())
                } else {
                    None
                };
                if let Some(park) = park {
                    tx.park_job(&id, &mut rec, run_at, park);
                    tx.s.pending.insert(id.clone(), rec);
                    continue;
                }
                if let Some(l) = limit {
                    tx.count_start(l, &task, rec.limit_key.as_deref());
                    let (c, kc) = (l.concurrency, l.key_concurrency);
                    let keyed = kc > 0 && rec.limit_key.is_some();
                    if c > 0 || keyed {
                        *tx.s.slots.entry(task_slot(&rec.task)).or_default() += 1;
                        rec.slots = 1;
                        if let (true, Some(key)) = (keyed, &rec.limit_key) {
                            *tx.s.slots.entry(key_slot(&rec.task, key)).or_default() += 1;
                            rec.slots = 2;
                        }
                    }
                }
                tx.s.due.remove(&id);
                tx.s.pending.remove(&id);
                rec.attempts += 1;
                rec.run_at = Some(run_at);
                rec.started_ms = Some(now);
                rec.worker = Some(worker.to_string());
                rec.cancel = false;
                rec.blocked = None;
                tx.emit(&id, Some(&rec), || JobEventKind::Started {
                    run_at: time_from_ms(run_at),
                });
                claim.jobs.push(ClaimedJob {
                    id: id.clone(),
                    task: rec.task.clone(),
                    payload: rec.payload.clone(),
                    generation: rec.generation,
                    attempt: rec.attempts,
                    max_attempts: rec.max_attempts,
                    enqueued_ms: rec.enqueued_ms,
                    run_at_ms: run_at,
                    started_us: now * 1000,
                    trace: rec.trace.clone(),
                });
                tx.s.active.insert(id.clone(), rec);
                tx.s.leases.add(&id, now + lease_ms);
            }
        }
        // As claim.lua: a task with free slots lets that many of its parked jobs out.
        let mut unparked = false;
        for (task, l) in &limits {
            if l.concurrency > 0 {
                let used = tx.s.slots.get(&task_slot(task)).copied().unwrap_or(0);
                let free = i64::from(l.concurrency) - used;
                if free > 0 && tx.unpark(&task_park(task), free as usize).is_some() {
                    unparked = true;
                }
            }
        }
        let first_due =
            tx.s.due
                .ordered
                .iter()
                .find(|(_, id)| {
                    tx.s.pending
                        .get(id)
                        .is_none_or(|rec| rank(&queue_of(rec)).is_some())
                })
                .map(|(score, _)| *score);
        claim.next_wake_us = [first_due, tx.s.leases.first(), tx.s.timers.first()]
            .into_iter()
            .flatten()
            .min()
            .map(|ms| ms * 1000);
        if swept == SWEEP || unparked {
            // More expired outcomes than one sweep takes, or jobs let out of
            // a park: come back at once.
            claim.next_wake_us = Some(now * 1000);
        }
        if unparked {
            tx.wake = true;
        }
        self.commit(tx);
        claim
    }

    pub(super) fn complete_now(&self, finished: &[Finished]) -> Vec<String> {
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
            // A job its worker gave up keeps its lease, which nobody renews
            // any more: it expires as a dead worker's would.
            let code = if f.outcome == "abandon" {
                "abandoned"
            } else if f.outcome == "ok" && !rec.cancel {
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
                    due_at(tx.requeue_active(&f.id, rec, now, None));
                    due_at(Some(now));
                    "released"
                }
            } else if f.outcome == "retry" && rec.attempts < rec.max_attempts && !has_pending {
                let run_at = now + f.retry_delay_ms as i64;
                due_at(tx.requeue_active(&f.id, rec, run_at, Some(f.text.clone())));
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
                "dead_lettered"
            };
            out.push(code);
        }
        if earliest.is_some() {
            // As complete.lua: the job may be in any queue, so wake.
            tx.wake = true;
        }
        self.commit(tx);
        out.into_iter().map(str::to_string).collect()
    }

    pub(super) fn renew_now(&self, lease: Duration, running: &[(String, u64, u32)]) -> Vec<String> {
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

    /// progress.lua: records a running attempt's progress, fenced.
    pub(super) fn progress_now(
        &self,
        id: &str,
        generation: u64,
        attempt: u32,
        progress: &str,
    ) -> bool {
        let mut tx = self.begin();
        let rec =
            tx.s.active
                .get_mut(id)
                .filter(|r| r.generation == generation && r.attempts == attempt);
        let Some(rec) = rec else {
            self.commit(tx);
            return false;
        };
        rec.progress = Some(progress.to_string());
        let rec = rec.clone();
        tx.emit(id, Some(&rec), || {
            JobEventKind::Progress(
                serde_json::from_str(progress)
                    .unwrap_or_else(|_| serde_json::Value::String(progress.to_string())),
            )
        });
        self.commit(tx);
        true
    }

    /// reschedule.lua: moves a pending job to another run time.
    pub(super) fn reschedule_now(
        &self,
        id: &str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> (String, u64, i64) {
        let mut tx = self.begin();
        let other = |g: u64| generation.is_some_and(|want| want != g);
        let now = tx.now;
        let run_at = match when.0 {
            "at" => crate::backend::ms_up(when.1),
            "after" => now + crate::backend::ms_up(when.1),
            _ => now,
        };
        let reply = if let Some(rec) = tx.s.pending.get(id).cloned() {
            if other(rec.generation) {
                self.commit(tx);
                return ("not_found".to_string(), 0, 0);
            }
            if rec.blocked.is_some() {
                if let Some(r) = tx.s.pending.get_mut(id) {
                    r.blocked = Some(run_at);
                }
            } else {
                // As reschedule.lua: a parked job goes back to its due set.
                if rec.parked.is_some() {
                    tx.drop_pending_entry(id, &rec);
                    if let Some(r) = tx.s.pending.get_mut(id) {
                        r.parked = None;
                    }
                }
                tx.s.due.add(id, run_at);
                tx.wake_if_earliest(run_at);
            }
            tx.emit(id, Some(&rec), || JobEventKind::Rescheduled {
                run_at: time_from_ms(run_at),
            });
            ("moved", rec.generation, run_at)
        } else if let Some(rec) = tx.s.active.get(id).filter(|r| !other(r.generation)) {
            ("running", rec.generation, rec.run_at.unwrap_or(now))
        } else {
            ("not_found", 0, 0)
        };
        self.commit(tx);
        (reply.0.to_string(), reply.1, reply.2)
    }

    pub(super) fn cancel_now(
        &self,
        id: &str,
        want: Option<u64>,
        task: Option<&str>,
    ) -> Result<(CancelOutcome, Option<String>), Error> {
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
            if tx.drop_pending_entry(id, &rec).is_some() {
                tx.wake = true;
            }
            tx.record_result(
                id,
                Some(&rec),
                FinishedState::Cancelled,
                "",
                "cancelled before it started",
            );
            removed = Some((rec.generation, rec.task.clone()));
        }
        let removed_task = removed.as_ref().map(|(_, task)| task.clone());
        let removed = removed.map(|(generation, _)| generation);
        let running = tx.s.active.remove(id);
        let cancelled = running.map(|mut r| {
            if matches(r.generation) {
                r.cancel = true;
                // As cancel.lua: a cancelled job's slots are free at once.
                if tx.release_slots(&mut r).is_some() {
                    tx.wake = true;
                }
            }
            let generation = matches(r.generation).then_some(r.generation);
            tx.s.active.insert(id.to_string(), r);
            generation
        });
        let outcome = if let Some(generation) = cancelled.flatten() {
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
        Ok((outcome, removed_task))
    }
}
