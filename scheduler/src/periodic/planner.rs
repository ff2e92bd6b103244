//! The planner: turns stored schedules into tick jobs, with no leader.
//!
//! Every worker process runs one. Each tick is planned ahead as a deferred
//! job due at the tick's instant (`schedule:<name>:<unix ms>`), so a tick
//! starts through the ordinary claim path, as late as any deferred job and
//! no later. When that tick becomes due, any planner plans the next one.
//! Planning one schedule is one atomic backend call that moves the
//! schedule's cursor only if it is still where the planner read it: when
//! several planners race, one wins and the others change nothing, so each
//! tick is created once.
//!
//! # When a planner plans
//!
//! A planner sleeps until the earliest cursor among the schedules it knows,
//! so the next tick of each is planned by the instant of the one planned
//! before (a tick's grace is short: 1 s for an every-second schedule). It
//! must also learn at once of a schedule it does not know, or whose cursor
//! moved back: a put that stores something, and a resume, publish a notice
//! ([`Notice::Schedules`](crate::backend::Notice::Schedules), also sent when
//! notices may have been lost), and the worker pokes its planner with it.
//! A tick that starts on the worker for a schedule its planner does not
//! track up to that tick (stored by an older binary that sends no notice)
//! pokes it too. Otherwise it reads the schedules every `max_idle`.
//!
//! # Missed ticks
//!
//! A planned tick that no worker started within its grace, `min(period, 60 s)`
//! after its instant (the period being the gap to the schedule's next tick),
//! counts as missed: every worker was down, or too busy, when it came due.
//! The schedule's [`MissedTicks`](crate::MissedTicks) policy then chooses
//! among it and every later tick up to now: `Skip` removes it and runs none;
//! `RunOnce` runs the latest one; `RunAll { max }` runs the latest `max`,
//! oldest first. A kept tick that is the planned one keeps its job; the
//! others are created due now. A worker runs its planner's first pass before
//! it starts claiming, so it does not start a missed tick the policy drops.
//! A tick that a worker already started is never removed.
//!
//! # Deploys
//!
//! At start-up a process stores the schedules of its `#[task(cron = ...)]`
//! tasks (named after the task; see [`sync_code_schedules`](Planner::sync_code_schedules)).
//! During a rolling deploy, a process whose own definition of a code
//! schedule differs from the stored one (an older binary, or a newer one
//! that has not stored its own yet) plans nothing for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::config::SchedulerConfig;
use crate::api::error::Error;
use crate::api::registry::{Registry, TaskRegistration};
use crate::backend::Backend;
use crate::clock::time_from_ms;
use crate::periodic::store::{
    parse_tick_id, Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleSource, Stored,
};
use crate::periodic::Schedule;

/// The longest lateness of a planned tick before it counts as missed.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(60);
/// How many late (not missed) ticks one planning step creates at most.
const MAX_LATE_TICKS: usize = 100;
/// The cursor of a schedule with no more ticks: planned through the end.
const END_MS: i64 = 1 << 53;
/// How long a planner waits after a failed pass.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The grace of the tick at `tick`: `min(period, 60 s)`, the period being
/// the gap to the next tick.
pub(crate) fn grace_ms(schedule: &Schedule, tick: DateTime<Utc>) -> i64 {
    let max = MAX_GRACE.as_millis() as i64;
    schedule
        .next_after(tick)
        .map_or(max, |next| (next - tick).num_milliseconds().min(max))
}

/// The planning step of one schedule at `now_ms`, or `None` when its next
/// tick is not due yet.
pub(crate) fn step(stored: &Stored, schedule: &Schedule, now_ms: i64) -> Option<PlanCall> {
    let now = time_from_ms(now_ms);
    let mut ticks = Vec::new();
    let mut cancel_cursor_tick = false;
    if let Some(cursor_ms) = stored.cursor_ms {
        if cursor_ms > now_ms {
            return None;
        }
        let cursor = time_from_ms(cursor_ms);
        let has_job = stored.cursor_generation != 0;
        if now_ms - cursor_ms <= grace_ms(schedule, cursor) {
            // On time, or late within the grace: nothing was missed.
            ticks.extend(
                std::iter::successors(schedule.next_after(cursor), |t| schedule.next_after(*t))
                    .take_while(|t| *t <= now)
                    .take(MAX_LATE_TICKS),
            );
        } else {
            // Missed: the policy picks among the planned tick (when it has a
            // job) and the ticks after it up to now.
            let from = if has_job {
                cursor - TimeDelta::milliseconds(1)
            } else {
                cursor
            };
            let plan = schedule.plan(Some(from), now);
            let keeps_cursor = has_job && plan.run_now.first() == Some(&cursor);
            cancel_cursor_tick = has_job && !keeps_cursor;
            ticks.extend(plan.run_now.into_iter().filter(|t| *t != cursor));
        }
    }
    let next = schedule.next_after(now);
    ticks.extend(next);
    let new_cursor_ms = next.map_or(END_MS, |t| t.timestamp_millis());
    Some(PlanCall {
        name: stored.name.clone(),
        version: stored.definition.version.clone(),
        expected_cursor_ms: stored.cursor_ms,
        cancel_cursor_tick,
        ticks: ticks
            .into_iter()
            .map(|t| (t.timestamp_millis(), nonce()))
            .collect(),
        new_cursor_ms,
    })
}

/// A request nonce for a tick job (see `JOB_NONCE`).
fn nonce() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(8)
        .collect()
}

/// The definition of the schedule of a `#[task(cron = ...)]` task, or
/// `None` for a task without one.
pub(crate) fn code_definition(
    task: &TaskRegistration,
    config: &SchedulerConfig,
) -> Result<Option<Definition>, Error> {
    let Some(spec) = &task.schedule else {
        return Ok(None);
    };
    let schedule = spec.schedule()?;
    // A periodic task takes no arguments: an empty array by position, or
    // `()` for a task registered by hand.
    let payload = match task.params {
        Some(_) => b"[]".to_vec(),
        None => b"null".to_vec(),
    };
    let max_attempts = task
        .options
        .max_attempts
        .unwrap_or(config.default_max_attempts)
        .max(1);
    Ok(Some(
        Definition::new(
            task.name,
            payload,
            max_attempts,
            schedule.spec(),
            ScheduleSource::Code,
        )
        .in_queue(task.options.queue_name()),
    ))
}

/// One process's planner.
#[derive(Clone)]
pub(crate) struct Planner {
    backend: Arc<dyn Backend>,
    registry: Registry,
    /// The code schedules still need storing (the start-up call failed).
    code_schedules_pending: Arc<AtomicBool>,
    /// The schedules this planner will plan by itself, with the instant
    /// (ms) it wakes for each: their cursors at its last pass.
    tracked: Arc<Mutex<HashMap<String, i64>>>,
    /// Wakes [`run`](Self::run) for a pass now.
    poke: Arc<Notify>,
}

/// What one pass saw: the backend's time and the next instant a schedule
/// needs planning (ms).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pass {
    pub(crate) now_ms: i64,
    pub(crate) next_ms: Option<i64>,
}

impl Planner {
    pub(crate) fn new(backend: Arc<dyn Backend>, registry: Registry) -> Self {
        Planner {
            backend,
            registry,
            code_schedules_pending: Arc::new(AtomicBool::new(false)),
            tracked: Arc::new(Mutex::new(HashMap::new())),
            poke: Arc::new(Notify::new()),
        }
    }

    /// Asks [`run`](Self::run) for a pass now: the schedules changed.
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }

    /// Job `job_id` started on this process's worker. When it is the tick of
    /// a schedule this planner does not track up to that tick (it learnt of
    /// no change: the schedule was stored, or resumed, by a process that
    /// sent no notice), a pass runs now, so that the next tick is planned.
    pub(crate) fn job_started(&self, job_id: &str) {
        let Some((name, tick)) = parse_tick_id(job_id) else {
            return;
        };
        let tracked = self
            .tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|wakes_at| *wakes_at >= tick.timestamp_millis());
        if !tracked {
            debug!(
                schedule = name,
                "a tick of a schedule the planner does not track started; planning now"
            );
            self.poke();
        }
    }

    /// A planner that stores the code schedules before its first pass.
    pub(crate) fn with_code_schedules_pending(self) -> Self {
        self.code_schedules_pending.store(true, Ordering::Relaxed);
        self
    }

    /// Stores the schedules of this binary's `#[task(cron = ...)]` tasks,
    /// named after their task. A stored code schedule with another version
    /// is replaced in place (its tick that has not started is removed, and
    /// the new expression's next tick comes after now, or after the old
    /// tick that started: no tick of the old expression is left, and no
    /// instant gets two). A stored code schedule of a task this binary
    /// registers without a cron attribute is removed, with its tick that has
    /// not started. One of a task this binary does not know is left alone
    /// (another binary sharing the namespace may own it).
    pub(crate) async fn sync_code_schedules(&self) -> Result<(), Error> {
        let (_, stored) = self.backend.list_schedules().await?;
        let config = self.backend.config();
        for task in self.registry.tasks() {
            let Some(definition) = code_definition(task, config)? else {
                continue;
            };
            match self.backend.put_schedule(task.name, &definition).await? {
                PutOutcome::Unchanged => {}
                PutOutcome::Created => {
                    info!(schedule = task.name, spec = %definition.spec, "periodic task scheduled")
                }
                PutOutcome::Replaced => {
                    info!(schedule = task.name, spec = %definition.spec, "periodic task redefined; its pending tick was replaced")
                }
            }
        }
        for schedule in stored
            .iter()
            .filter(|s| s.definition.source == ScheduleSource::Code)
        {
            match self.registry.get(&schedule.definition.task) {
                Some(task) if task.schedule.is_none() => {
                    self.backend.remove_schedule(&schedule.name).await?;
                    info!(schedule = %schedule.name, "periodic task no longer has a schedule in this binary; schedule removed");
                }
                Some(_) => {}
                None => {
                    info!(schedule = %schedule.name, task = %schedule.definition.task, "schedule of a task this binary does not know left alone")
                }
            }
        }
        Ok(())
    }

    /// Whether this process may plan a stored schedule: not when its own
    /// definition of a code schedule differs (another binary's version).
    fn owns_version(&self, stored: &Stored) -> bool {
        if stored.definition.source != ScheduleSource::Code {
            return true;
        }
        let Some(task) = self.registry.get(&stored.definition.task) else {
            return true;
        };
        match code_definition(task, self.backend.config()) {
            Ok(Some(mine)) if mine.version == stored.definition.version => true,
            _ => {
                debug!(schedule = %stored.name, "stored schedule differs from this binary's definition; not planned here");
                false
            }
        }
    }

    /// Plans every schedule whose next tick is due.
    pub(crate) async fn pass(&self) -> Result<Pass, Error> {
        if self.code_schedules_pending.load(Ordering::Relaxed) {
            self.sync_code_schedules().await?;
            self.code_schedules_pending.store(false, Ordering::Relaxed);
        }
        let (now_ms, stored) = self.backend.list_schedules().await?;
        let mut next_ms: Option<i64> = None;
        let mut tracked = HashMap::new();
        let mut later = |name: &str, at: i64| {
            next_ms = Some(next_ms.map_or(at, |n| n.min(at)));
            tracked.insert(name.to_string(), at);
        };
        for schedule in stored.iter().filter(|s| !s.paused) {
            if !self.owns_version(schedule) {
                continue;
            }
            let parsed = match Schedule::from_spec(&schedule.definition.spec) {
                Ok(parsed) => parsed,
                Err(e) => {
                    debug!(schedule = %schedule.name, error = %e, "stored schedule not understood by this binary; not planned here");
                    continue;
                }
            };
            let Some(call) = step(schedule, &parsed, now_ms) else {
                later(&schedule.name, schedule.cursor_ms.unwrap_or(now_ms));
                continue;
            };
            let outcome = self.backend.plan_schedule(&call).await?;
            match outcome {
                PlanOutcome::Planned { created, cancelled } => {
                    debug!(schedule = %call.name, created, cancelled, next = %time_from_ms(call.new_cursor_ms), "ticks planned");
                    if cancelled > 0 {
                        info!(schedule = %call.name, generation = cancelled, "missed tick dropped by its policy");
                    }
                    if call.new_cursor_ms < END_MS {
                        later(&call.name, call.new_cursor_ms);
                    }
                }
                // Another planner was first: read where it moved the cursor.
                PlanOutcome::CursorMoved => later(&call.name, now_ms),
                other => {
                    debug!(schedule = %call.name, ?other, "schedule changed meanwhile; nothing planned")
                }
            }
        }
        *self.tracked.lock().unwrap_or_else(|p| p.into_inner()) = tracked;
        Ok(Pass { now_ms, next_ms })
    }

    /// Plans until `stop`: after each pass, sleeps until the next tick needs
    /// planning, or until [`poke`](Self::poke)d, `idle` at most (in case a
    /// change came with no notice).
    pub(crate) async fn run(self, idle: Duration, stop: CancellationToken) {
        loop {
            let wait = match self.pass().await {
                Ok(pass) => pass.next_ms.map_or(idle, |next| {
                    Duration::from_millis(next.saturating_sub(pass.now_ms).max(0) as u64).min(idle)
                }),
                Err(e) => {
                    warn!(error = %e, "planning periodic tasks failed; trying again");
                    RETRY_AFTER
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.poke.notified() => {}
            }
        }
    }
}
