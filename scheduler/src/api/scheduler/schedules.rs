//! Periodic schedules at run time: define, list, pause, resume and remove.
//! They are stored in the namespace and survive restarts; every worker's
//! planner turns them into tick jobs (see `periodic/planner.rs`).

use chrono::{DateTime, Utc};
use tracing::info;

use crate::api::job::JobStatus;
use crate::periodic::planner::Planner;
use crate::periodic::store::{
    tick_id, validate_schedule_name, Definition, ScheduleChange, ScheduleSource, Stored,
};
use crate::{Error, JobRequest, Schedule, ScheduleInfo, Scheduler, Task};

/// How many upcoming ticks [`Scheduler::schedules`] lists.
const NEXT_RUNS: usize = 3;

impl Scheduler {
    /// Runs `request`'s task with its arguments at every tick of `schedule`,
    /// under the name `name` (1 to 200 bytes, no control characters, no `{`
    /// or `}`). Each tick is an ordinary job with the id
    /// `schedule:<name>:<tick in unix ms>`, so it is deduplicated, leased,
    /// retried and cancellable like any job, and
    /// [`JobContext::planned_tick`](crate::JobContext::planned_tick) tells it
    /// which tick it runs for. The request's id and run time are not used.
    ///
    /// The schedule is stored in Redis: it survives restarts, and any worker
    /// sharing the namespace plans and runs its ticks, each once. Defining a
    /// name again replaces the schedule in place: the pending tick of the old
    /// definition is removed, and the new one's next tick is planned after
    /// now (a paused schedule stays paused). An invalid name is
    /// [`Error::InvalidSchedule`]; the request is checked as for
    /// [`enqueue`](Self::enqueue).
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::testing::TestScheduler;
    /// use scheduler::{JobContext, Schedule};
    ///
    /// #[scheduler::task]
    /// async fn sweep(ctx: JobContext, bucket: String) -> Result<(), String> {
    ///     assert!(ctx.planned_tick().is_some());
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let test = TestScheduler::builder()
    ///     .start_at("2026-01-01T00:00:00Z".parse().unwrap())
    ///     .start()
    ///     .await?;
    /// let every_10_min = Schedule::every(Duration::from_secs(600))?;
    /// test.schedule("sweep-tmp", sweep::job("tmp".into()), every_10_min).await?;
    /// // An hour later, six ticks ran: 00:10, 00:20, ... 01:00.
    /// assert_eq!(test.advance(Duration::from_secs(3600)).await?, 6);
    /// let listed = test.schedules().await?;
    /// assert_eq!(listed[0].next_runs[0].to_rfc3339(), "2026-01-01T01:10:00+00:00");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn schedule<T: Task>(
        &self,
        name: &str,
        request: JobRequest<T>,
        schedule: Schedule,
    ) -> Result<(), Error> {
        validate_schedule_name(name)?;
        let job = self.prepare(request)?;
        let definition = Definition::new(
            &job.task,
            job.payload,
            job.max_attempts,
            schedule.spec(),
            ScheduleSource::Runtime,
        )
        .in_queue(job.queue.as_deref().unwrap_or(crate::DEFAULT_QUEUE));
        let outcome = self.observe(self.inner.backend.put_schedule(name, &definition).await)?;
        info!(schedule = name, task = %definition.task, %schedule, ?outcome, "schedule stored");
        // Plans its first tick now, whether or not a worker runs here.
        self.plan_now().await
    }

    /// Every stored schedule, by name: its task, expression and zone, the
    /// next few ticks, the latest tick's job and where it is, and whether it
    /// is paused. Schedules of `#[task(cron = ...)]` tasks are listed too.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        let (now_ms, stored) = self.observe(self.inner.backend.list_schedules().await)?;
        let now = crate::clock::time_from_ms(now_ms);
        let mut out = Vec::with_capacity(stored.len());
        for s in stored {
            out.push(self.describe(s, now).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn describe(&self, stored: Stored, now: DateTime<Utc>) -> Result<ScheduleInfo, Error> {
        let definition = stored.definition;
        let Ok(schedule) = Schedule::from_spec(&definition.spec) else {
            // Written by another version of the library: shown as stored.
            return Ok(ScheduleInfo {
                name: stored.name,
                task: definition.task,
                expression: definition.spec,
                zone: String::new(),
                source: definition.source,
                paused: stored.paused,
                next_runs: Vec::new(),
                last_run: None,
            });
        };
        let cursor = stored.cursor_ms.map(crate::clock::time_from_ms);
        let next_runs = match cursor {
            _ if stored.paused => Vec::new(),
            Some(cursor) if cursor > now && stored.cursor_generation != 0 => {
                std::iter::once(cursor)
                    .chain(schedule.upcoming(cursor, NEXT_RUNS - 1))
                    .collect()
            }
            Some(cursor) => schedule.upcoming(cursor.max(now), NEXT_RUNS),
            None => schedule.upcoming(now, NEXT_RUNS),
        };
        let latest = schedule.at_or_before(cursor.map_or(now, |c| c.min(now)));
        let mut last_run = None;
        if let Some(tick) = latest {
            let status = self
                .status(&tick_id(&stored.name, tick.timestamp_millis()))
                .await?;
            if status != JobStatus::NotFound {
                last_run = Some((tick, status));
            }
        }
        Ok(ScheduleInfo {
            name: stored.name,
            task: definition.task,
            expression: schedule.expression().to_string(),
            zone: schedule.zone().name().to_string(),
            source: definition.source,
            paused: stored.paused,
            next_runs,
            last_run,
        })
    }

    /// Pauses a schedule: its pending tick is removed, and none runs until
    /// [`resume_schedule`](Self::resume_schedule). A tick already running
    /// goes on. Pausing a paused schedule changes nothing;
    /// [`Error::ScheduleNotFound`] when no schedule has the name.
    pub async fn pause_schedule(&self, name: &str) -> Result<(), Error> {
        let change = self.observe(self.inner.backend.pause_schedule(name, true).await)?;
        info!(schedule = name, ?change, "schedule paused");
        found(name, change)
    }

    /// Resumes a paused schedule from now on: the ticks of the paused period
    /// do not run, whatever its [`MissedTicks`](crate::MissedTicks) policy.
    /// [`Error::ScheduleNotFound`] when no schedule has the name.
    pub async fn resume_schedule(&self, name: &str) -> Result<(), Error> {
        let change = self.observe(self.inner.backend.pause_schedule(name, false).await)?;
        info!(schedule = name, ?change, "schedule resumed");
        found(name, change)?;
        self.plan_now().await
    }

    /// Removes a schedule and its pending tick (a tick already running goes
    /// on). A schedule of a `#[task(cron = ...)]` task comes back when a
    /// process of a binary that defines it starts. [`Error::ScheduleNotFound`]
    /// when no schedule has the name.
    pub async fn remove_schedule(&self, name: &str) -> Result<(), Error> {
        let change = self.observe(self.inner.backend.remove_schedule(name).await)?;
        info!(schedule = name, ?change, "schedule removed");
        found(name, change)
    }

    /// One planning pass from this handle (the first tick of a new or
    /// resumed schedule exists at once, even in a producer-only process).
    pub(crate) async fn plan_now(&self) -> Result<(), Error> {
        let planner = Planner::new(
            std::sync::Arc::clone(&self.inner.backend),
            self.inner.registry.clone(),
        );
        self.observe(planner.pass().await).map(|_| ())
    }
}

fn found(name: &str, change: ScheduleChange) -> Result<(), Error> {
    match change {
        ScheduleChange::Gone => Err(Error::ScheduleNotFound(name.to_string())),
        _ => Ok(()),
    }
}
