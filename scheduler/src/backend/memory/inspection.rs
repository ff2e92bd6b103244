//! Reading jobs, pending lists and dead letters, and the operator's requeue
//! and purge of dead letters.

use crate::backend::memory::state::{DeadEntry, Outcome, Record, Route};
use crate::backend::memory::MemoryBackend;
use crate::backend::RawPending;
use crate::clock::time_from_ms;
use crate::ops::activity::{add_tally, Tally, FIELD_COUNT, KEEP_MINUTES};
use crate::{DeadLetter, FinishedState, JobCounts, JobInfo, JobStatus};

impl MemoryBackend {
    pub(super) fn inspect_now(&self, id: &str) -> Option<JobInfo> {
        let tx = self.begin();
        let info = if let Some(rec) = tx.s.active.get(id) {
            Some(active_info(id, rec, tx.s.leases.score(id)))
        } else if let Some(rec) = tx.s.pending.get(id) {
            Some(pending_info(id, rec, tx.pending_score(id, rec), tx.now))
        } else {
            tx.live_result(id).map(|r| outcome_info(id, r))
        };
        drop(tx);
        info
    }

    pub(super) fn dead_letters_now(&self, offset: usize, count: usize) -> Vec<DeadLetter> {
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

    pub(super) fn requeue_dead_now(&self, id: &str, nonce: &str) -> Option<u64> {
        let mut tx = self.begin();
        let now = tx.now;
        let entry = tx.s.dead.get(id).cloned();
        let busy = tx.s.pending.contains_key(id) || tx.s.active.contains_key(id);
        let generation = match entry {
            Some(e) if !busy && !e.task.is_empty() => {
                let max_attempts = if e.max_attempts < 1 {
                    5
                } else {
                    e.max_attempts
                };
                let route = Route {
                    queue: e.queue.clone(),
                    priority: e.priority,
                    limit_key: e.limit_key.clone(),
                };
                let generation =
                    tx.new_job(id, (&e.task, &e.payload, max_attempts), now, nonce, route);
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

    pub(super) fn purge_dead_now(&self) -> u64 {
        let mut tx = self.begin();
        let n = tx.s.dead_order.len() as u64;
        tx.s.dead.clear();
        tx.s.dead_order.clear();
        self.commit(tx);
        n
    }

    pub(super) fn delete_dead_now(&self, id: &str) -> bool {
        let mut tx = self.begin();
        let found = tx.s.dead.remove(id).is_some();
        tx.s.dead_order.remove(id);
        self.commit(tx);
        found
    }

    /// Adds activity counts; drops minutes older than the Redis keys live,
    /// counted from the newest minute held.
    pub(super) fn add_activity_now(&self, minutes: &[(i64, Tally)]) {
        let mut tx = self.begin();
        for (minute, tally) in minutes {
            add_tally(&mut tx.s.activity, *minute, tally);
        }
        if let Some(newest) = tx.s.activity.keys().next_back().copied() {
            tx.s.activity
                .retain(|minute, _| *minute > newest - KEEP_MINUTES);
        }
        self.commit(tx);
    }

    pub(super) fn activity_now(&self, first: i64, count: usize) -> Vec<Tally> {
        let tx = self.begin();
        (first..first + count as i64)
            .map(|minute| {
                tx.s.activity
                    .get(&minute)
                    .copied()
                    .unwrap_or([0; FIELD_COUNT])
            })
            .collect()
    }

    pub(super) fn announce_worker_now(
        &self,
        id: &str,
        queues: &[String],
        ttl: Option<std::time::Duration>,
    ) {
        let mut tx = self.begin();
        let now = tx.now;
        match ttl {
            Some(ttl) => {
                let until = now + ttl.as_millis() as i64;
                tx.s.workers
                    .insert(id.to_string(), (queues.to_vec(), until));
            }
            None => {
                tx.s.workers.remove(id);
            }
        }
        drop(tx);
    }

    /// As counts.lua's 'queues' mode.
    pub(super) fn queues_now(&self) -> Vec<crate::QueueInfo> {
        let tx = self.begin();
        let now = tx.now;
        let mut rows: std::collections::BTreeMap<String, crate::QueueInfo> = Default::default();
        fn row<'r>(
            rows: &'r mut std::collections::BTreeMap<String, crate::QueueInfo>,
            queue: &str,
        ) -> &'r mut crate::QueueInfo {
            rows.entry(queue.to_string())
                .or_insert_with(|| crate::QueueInfo {
                    name: queue.to_string(),
                    ..crate::QueueInfo::default()
                })
        }
        row(&mut rows, crate::DEFAULT_QUEUE);
        for queue in &tx.s.known_queues {
            row(&mut rows, queue);
        }
        let queue_of = |rec: &Record| {
            rec.queue
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string())
        };
        for (score, id) in &tx.s.due.ordered {
            let Some(rec) = tx.s.pending.get(id) else {
                continue;
            };
            let r = row(&mut rows, &queue_of(rec));
            if *score <= now {
                r.queued += 1;
            } else {
                r.deferred += 1;
            }
        }
        for park in tx.s.parks.values() {
            for (_, id) in &park.ordered {
                if let Some(rec) = tx.s.pending.get(id) {
                    row(&mut rows, &queue_of(rec)).waiting += 1;
                }
            }
        }
        for (queues, until) in tx.s.workers.values() {
            if *until >= now {
                for queue in queues {
                    row(&mut rows, queue).workers += 1;
                }
            }
        }
        drop(tx);
        rows.into_values().collect()
    }

    pub(super) fn counts_now(&self) -> JobCounts {
        let tx = self.begin();
        let due_now = tx.s.due.count_up_to(tx.now) as u64;
        let parked: usize = tx.s.parks.values().map(|p| p.len()).sum();
        JobCounts {
            deferred: tx.s.due.len() as u64 - due_now,
            queued: due_now + parked as u64,
            running: tx.s.active.len() as u64,
            dead_lettered: tx.s.dead_order.len() as u64,
        }
    }

    pub(super) fn list_pending_now(&self, task: Option<&str>) -> Vec<RawPending> {
        let tx = self.begin();
        let out =
            tx.s.pending
                .iter()
                .filter(|(_, r)| task.is_none_or(|t| r.task == t))
                .map(|(id, r)| RawPending {
                    id: id.clone(),
                    task: r.task.clone(),
                    generation: r.generation,
                    run_at_ms: r.blocked.or(tx.pending_score(id, r)).unwrap_or(0),
                    attempts: r.attempts,
                    payload: r.payload.clone(),
                })
                .collect();
        drop(tx);
        out
    }
}

pub(super) fn positive_time(ms: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    ms.filter(|ms| *ms > 0).map(time_from_ms)
}

/// A running job, with its lease expiry.
pub(super) fn active_info(id: &str, rec: &Record, lease: Option<i64>) -> JobInfo {
    let status = JobStatus::Running {
        attempt: rec.attempts,
        worker: rec.worker.clone().unwrap_or_default(),
    };
    let mut info = record_info(id, rec, status, rec.run_at);
    info.lease_until = lease.map(time_from_ms);
    info
}

/// A pending job whose `due` entry has this score.
pub(super) fn pending_info(id: &str, rec: &Record, due: Option<i64>, now: i64) -> JobInfo {
    let run_at_ms = rec.blocked.or(due).unwrap_or(now);
    let at = time_from_ms(run_at_ms);
    let status = if run_at_ms <= now || rec.blocked.is_some() || rec.parked.is_some() {
        JobStatus::Queued { run_at: at }
    } else {
        JobStatus::Deferred { run_at: at }
    };
    record_info(id, rec, status, Some(run_at_ms))
}

/// A finished job's kept outcome.
pub(super) fn outcome_info(id: &str, r: &Outcome) -> JobInfo {
    JobInfo {
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
        progress: progress_json(r.progress.as_deref()),
        lease_until: None,
        args: None,
        queue: None,
        priority: 0,
        limit_key: None,
        waiting: None,
    }
}

/// A dead-letter entry, as a failed job whose `last_error` is the reason
/// (as record.rs reads one).
pub(super) fn dead_info(id: &str, e: &DeadEntry) -> JobInfo {
    JobInfo {
        job_id: id.to_string(),
        task: e.task.clone(),
        generation: e.generation,
        status: JobStatus::Failed,
        attempts: e.attempts,
        max_attempts: e.max_attempts,
        enqueued_at: None,
        run_at: None,
        started_at: None,
        finished_at: positive_time(Some(e.failed_ms)),
        last_error: Some(e.reason.clone()).filter(|r| !r.is_empty()),
        result: None,
        progress: None,
        lease_until: None,
        args: serde_json::from_slice(&e.payload).ok(),
        queue: Some(
            e.queue
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string()),
        ),
        priority: e.priority,
        limit_key: e.limit_key.clone(),
        waiting: None,
    }
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
        progress: progress_json(rec.progress.as_deref()),
        lease_until: None,
        args: serde_json::from_slice(&rec.payload).ok(),
        queue: Some(
            rec.queue
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string()),
        ),
        priority: rec.priority,
        limit_key: rec.limit_key.clone(),
        waiting: rec
            .parked
            .as_deref()
            .and_then(|park| crate::Waiting::from_park(park, rec.limit_key.as_deref())),
    }
}

/// Stored progress read back as JSON (as record.rs does).
fn progress_json(progress: Option<&str>) -> Option<serde_json::Value> {
    progress.and_then(|p| serde_json::from_str(p).ok())
}
