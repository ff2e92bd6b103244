//! The steps transitions share, on one transaction's view of the state
//! (the helpers of `common.lua`).

use crate::api::events::{JobEvent, JobEventKind};
use crate::backend::memory::state::{
    key_park, key_rate_log, key_rate_park, key_slot, rate_log, rate_park, task_park, task_slot,
    DeadEntry, Outcome, Record, Route,
};
use crate::backend::memory::Tx;
use crate::backend::TaskLimits;
use crate::clock::time_from_ms;
use crate::FinishedState;

/// Expired outcomes one claim drops at most (`SWEEP` in claim.lua).
pub(super) const SWEEP: usize = 2000;

/// The earlier of two optional instants.
pub(super) fn earlier(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Tx<'_> {
    pub(super) fn wake_if_earliest(&mut self, run_at: i64) {
        if self.s.due.first().is_none_or(|head| run_at <= head) {
            self.wake = true;
        }
    }

    /// The score of a pending job's entry: in `due`, or in its park.
    pub(super) fn pending_score(&self, id: &str, rec: &Record) -> Option<i64> {
        match &rec.parked {
            Some(park) => self.s.parks.get(park).and_then(|p| p.score(id)),
            None => self.s.due.score(id),
        }
    }

    /// Moves a pending job from `due` to a park (common.lua `park_job`).
    pub(super) fn park_job(&mut self, id: &str, rec: &mut Record, run_at: i64, park: String) {
        self.s.due.remove(id);
        self.s
            .parks
            .entry(park.clone())
            .or_default()
            .add(id, run_at);
        rec.parked = Some(park);
    }

    /// Moves up to n jobs of a park back to `due` (common.lua `unpark`): the
    /// earliest run time moved.
    pub(super) fn unpark(&mut self, park: &str, n: usize) -> Option<i64> {
        let set = self.s.parks.get_mut(park)?;
        let moved: Vec<(String, i64)> = set.up_to(i64::MAX, n);
        for (id, _) in &moved {
            set.remove(id);
        }
        if set.len() == 0 {
            self.s.parks.remove(park);
        }
        let mut earliest: Option<i64> = None;
        for (id, score) in moved {
            if let Some(rec) = self.s.pending.get_mut(&id) {
                rec.parked = None;
                self.s.due.add(&id, score);
                earliest = Some(earliest.map_or(score, |e| e.min(score)));
            }
        }
        earliest
    }

    fn release_slot(&mut self, field: &str) {
        if let Some(count) = self.s.slots.get_mut(field) {
            *count -= 1;
            if *count <= 0 {
                self.s.slots.remove(field);
            }
        }
    }

    /// Gives back a running job's slots and lets a waiting job of each park
    /// out (common.lua `release_slots`).
    pub(super) fn release_slots(&mut self, rec: &mut Record) -> Option<i64> {
        let held = std::mem::take(&mut rec.slots);
        if held == 0 {
            return None;
        }
        self.release_slot(&task_slot(&rec.task));
        let mut moved = self.unpark(&task_park(&rec.task), 1);
        if let (2, Some(key)) = (held, &rec.limit_key) {
            self.release_slot(&key_slot(&rec.task, key));
            let by_key = self.unpark(&key_park(&rec.task, key), 1);
            moved = earlier(moved, by_key);
        }
        moved
    }

    /// Takes a pending job's entry out of its index (common.lua
    /// `drop_pending_entry`).
    pub(super) fn drop_pending_entry(&mut self, id: &str, rec: &Record) -> Option<i64> {
        match &rec.parked {
            Some(park) => {
                if let Some(set) = self.s.parks.get_mut(park) {
                    set.remove(id);
                    if set.len() == 0 {
                        self.s.parks.remove(park);
                    }
                }
                None
            }
            None => {
                self.s.due.remove(id);
                let key = rec.limit_key.as_ref()?;
                self.unpark(&key_park(&rec.task, key), 1)
            }
        }
    }

    /// The earliest instant (at least now) a start fits n per w ms
    /// (common.lua `rate_next`).
    pub(super) fn rate_next(&self, log: &str, n: u32, w: i64) -> i64 {
        let oldest = self
            .s
            .rate_logs
            .get(log)
            .and_then(|starts| starts.get(n as usize - 1));
        match oldest {
            Some(t) if t + w > self.now => t + w,
            _ => self.now,
        }
    }

    /// How many more starts fit now (common.lua `rate_left`).
    pub(super) fn rate_left(&self, log: &str, n: u32, w: i64) -> u32 {
        let now = self.now;
        let used = self.s.rate_logs.get(log).map_or(0, |starts| {
            starts
                .iter()
                .take(n as usize)
                .filter(|t| **t > now - w)
                .count()
        });
        n.saturating_sub(used as u32)
    }

    pub(super) fn rate_record(&mut self, log: &str, n: u32) {
        let now = self.now;
        let starts = self.s.rate_logs.entry(log.to_string()).or_default();
        starts.push_front(now);
        starts.truncate(n as usize);
    }

    /// Sets a park's timer, unless it is set earlier (common.lua `arm_timer`).
    pub(super) fn arm_timer(&mut self, park: &str, at: i64) {
        if self.s.timers.score(park).is_none_or(|t| t > at) {
            self.s.timers.add(park, at);
        }
    }

    /// The park a job of a limited task waits in, if its rate or its slots
    /// do not let it start now (claim.lua: rates first, then slots); a rate
    /// park gets its timer.
    pub(super) fn limit_park(
        &mut self,
        l: &TaskLimits,
        task: &str,
        key: Option<&str>,
    ) -> Option<String> {
        let now = self.now;
        // The key's rate first, then the task's: the first that has no
        // start left now names the park, with the instant it allows one.
        let mut rates = Vec::new();
        if let (Some(key), (kn, kw)) = (key, l.key_rate) {
            if kn > 0 {
                rates.push((key_rate_park(task, key), key_rate_log(task, key), kn, kw));
            }
        }
        if l.rate.0 > 0 {
            rates.push((rate_park(task), rate_log(task), l.rate.0, l.rate.1));
        }
        for (park, log, n, w) in rates {
            let at = self.rate_next(&log, n, w);
            if at > now {
                self.s.rates.insert(park.clone(), (n, w, log));
                self.arm_timer(&park, at);
                return Some(park);
            }
        }
        let count = |field: &str| self.s.slots.get(field).copied().unwrap_or(0);
        match key {
            Some(key)
                if l.key_concurrency > 0
                    && count(&key_slot(task, key)) >= i64::from(l.key_concurrency) =>
            {
                Some(key_park(task, key))
            }
            _ if l.concurrency > 0 && count(&task_slot(task)) >= i64::from(l.concurrency) => {
                Some(task_park(task))
            }
            _ => None,
        }
    }

    /// A start counts against its task's (and key's) rate; jobs waiting for
    /// the budget get a timer for the instant it allows the next.
    pub(super) fn count_start(&mut self, l: &TaskLimits, task: &str, key: Option<&str>) {
        if l.rate.0 > 0 {
            self.count_one_start(&rate_log(task), &rate_park(task), l.rate);
        }
        if let (Some(key), (kn, _)) = (key, l.key_rate) {
            if kn > 0 {
                self.count_one_start(
                    &key_rate_log(task, key),
                    &key_rate_park(task, key),
                    l.key_rate,
                );
            }
        }
    }

    /// One rate's share of [`count_start`](Self::count_start) (common.lua
    /// `count_start`).
    fn count_one_start(&mut self, log: &str, park: &str, (n, w): (u32, i64)) {
        self.rate_record(log, n);
        if self.s.parks.contains_key(park) {
            let at = self.rate_next(log, n, w);
            self.arm_timer(park, at);
        }
    }

    pub(super) fn live_result(&self, id: &str) -> Option<&Outcome> {
        if self.s.results_exp.score(id).is_some_and(|e| e <= self.now) {
            return None;
        }
        self.s.results.get(id)
    }

    pub(super) fn sweep_results(&mut self) {
        self.sweep_results_up_to(20);
    }

    /// Mirrors `sweep_results(now, limit)` of common.lua.
    pub(super) fn sweep_results_up_to(&mut self, limit: usize) -> usize {
        let expired = self.s.results_exp.up_to(self.now, limit);
        for (id, _) in &expired {
            self.s.results.remove(id);
            self.s.results_exp.remove(id);
        }
        expired.len()
    }

    pub(super) fn record_result(
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
                progress: rec.and_then(|r| r.progress.clone()),
            };
            self.s.results.insert(id.to_string(), outcome);
            let expires = self.now + self.keep_ms;
            self.s.results_exp.add(id, expires);
        } else {
            self.s.results.remove(id);
            self.s.results_exp.remove(id);
        }
        self.sweep_results();
        // As announce_finished in common.lua.
        self.finished
            .push((id.to_string(), rec.map(|r| r.generation).unwrap_or(0)));
        self.emit(id, rec, || {
            let reason = error.to_string();
            match state {
                FinishedState::Completed => JobEventKind::Completed,
                FinishedState::Failed => JobEventKind::Failed { reason },
                FinishedState::Cancelled => JobEventKind::Cancelled { reason },
            }
        });
    }

    /// Records a job event when a stream of events is open (common.lua
    /// `emit`): `kind` is only built then.
    pub(super) fn emit(
        &mut self,
        id: &str,
        rec: Option<&Record>,
        kind: impl FnOnce() -> JobEventKind,
    ) {
        let at = time_from_ms(self.now);
        if let Some(events) = &mut self.events {
            events.push(JobEvent {
                kind: kind(),
                job_id: id.to_string(),
                task: rec.map(|r| r.task.clone()).unwrap_or_default(),
                generation: rec.map_or(0, |r| r.generation),
                attempt: rec.map_or(0, |r| r.attempts),
                at,
            });
        }
    }

    pub(super) fn dead_letter(&mut self, id: &str, rec: Option<&Record>, reason: &str) {
        self.emit(id, rec, || JobEventKind::DeadLettered {
            reason: reason.to_string(),
        });
        let entry = DeadEntry {
            task: rec.map(|r| r.task.clone()).unwrap_or_default(),
            generation: rec.map(|r| r.generation).unwrap_or(0),
            attempts: rec.map(|r| r.attempts).unwrap_or(0),
            reason: reason.to_string(),
            failed_ms: self.now,
            payload: rec.map(|r| r.payload.clone()).unwrap_or_default(),
            max_attempts: rec.map(|r| r.max_attempts).unwrap_or(0),
            queue: rec.and_then(|r| r.queue.clone()),
            priority: rec.map(|r| r.priority).unwrap_or(0),
            limit_key: rec.and_then(|r| r.limit_key.clone()),
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
    pub(super) fn unblock_pending(&mut self, id: &str) -> Option<i64> {
        let now = self.now;
        let rec = self.s.pending.get_mut(id)?;
        let blocked = rec.blocked.take()?;
        let run_at = blocked.max(now);
        self.s.due.add(id, run_at);
        Some(run_at)
    }

    pub(super) fn finish_active(
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
        let moved = self.release_slots(&mut rec.clone());
        earlier(moved, self.unblock_pending(id))
    }

    pub(super) fn requeue_active(
        &mut self,
        id: &str,
        mut rec: Record,
        run_at: i64,
        error: Option<String>,
    ) -> Option<i64> {
        self.s.active.remove(id);
        self.s.leases.remove(id);
        let moved = self.release_slots(&mut rec);
        if error.is_some() {
            rec.last_error = error.clone();
        }
        rec.run_at = None;
        rec.started_ms = None;
        rec.worker = None;
        rec.cancel = false;
        rec.blocked = None;
        self.emit(id, Some(&rec), || match error {
            Some(error) => JobEventKind::Retried {
                error,
                run_at: time_from_ms(run_at),
            },
            None => JobEventKind::Released {
                run_at: time_from_ms(run_at),
            },
        });
        self.s.pending.insert(id.to_string(), rec);
        self.s.due.add(id, run_at);
        moved
    }

    /// Creates one pending job due at `run_at` (common.lua `new_job`): its
    /// generation. The caller has checked that the id is free.
    pub(super) fn new_job(
        &mut self,
        id: &str,
        (task, payload, max_attempts): (&str, &[u8], u32),
        run_at: i64,
        nonce: &str,
        route: Route,
    ) -> u64 {
        self.s.seq += 1;
        let generation = self.s.seq;
        let record = Record {
            task: task.to_string(),
            payload: payload.to_vec(),
            generation,
            attempts: 0,
            max_attempts,
            enqueued_ms: self.now,
            nonce: nonce.to_string(),
            last_error: None,
            run_at: None,
            started_ms: None,
            worker: None,
            cancel: false,
            blocked: None,
            progress: None,
            trace: None,
            queue: route.queue,
            priority: route.priority,
            limit_key: route.limit_key,
            parked: None,
            slots: 0,
        };
        if let Some(queue) = &record.queue {
            self.s.known_queues.insert(queue.clone());
        }
        self.emit(id, Some(&record), || JobEventKind::Enqueued {
            run_at: time_from_ms(run_at),
            replaced: None,
        });
        self.s.pending.insert(id.to_string(), record);
        self.s.due.add(id, run_at);
        generation
    }

    pub(super) fn expire_lease(&mut self, id: &str) {
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
