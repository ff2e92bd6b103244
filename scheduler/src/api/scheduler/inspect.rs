//! Reading jobs: status, details, results, the pending list, and the dead
//! letters with their requeue, purge and deletion, and the workers' activity
//! per minute.

use chrono::Utc;
use serde::de::DeserializeOwned;

use crate::api::job::PendingJob;
use crate::api::listing::{JobPage, JobQuery};
use crate::api::scheduler::enqueue::nonce;
use crate::backend::RawPending;
use crate::ops::activity::{activity_minute, minute_of_ms, KEEP_MINUTES};
use crate::payload::positional;
use crate::payload::positional::to_named;
use crate::{
    validate_job_id, ActivityMinute, DeadLetter, Error, JobCounts, JobInfo, JobResult, JobStatus,
    Scheduler, Task,
};

/// [`Error::WrongTask`] unless the job is one of task `T`.
fn check_task<T: Task>(job_id: &str, info: &JobInfo) -> Result<(), Error> {
    if info.task == T::NAME {
        return Ok(());
    }
    Err(Error::WrongTask {
        job_id: job_id.to_string(),
        expected: T::NAME.to_string(),
        found: info.task.clone(),
    })
}

impl Scheduler {
    /// Where a job is now.
    pub async fn status(&self, job_id: &str) -> Result<JobStatus, Error> {
        Ok(self
            .info(job_id)
            .await?
            .map(|i| i.status)
            .unwrap_or(JobStatus::NotFound))
    }

    /// Where job `job_id` of task `T` is now (what `#[task]`'s `status` helper
    /// calls): [`Error::WrongTask`] when the id is held by a job of another task.
    pub async fn status_typed<T: Task>(&self, job_id: &str) -> Result<JobStatus, Error> {
        let Some(info) = self.info(job_id).await? else {
            return Ok(JobStatus::NotFound);
        };
        check_task::<T>(job_id, &info)?;
        Ok(info.status)
    }

    /// Everything known about a job (`None` if unknown or expired).
    pub async fn info(&self, job_id: &str) -> Result<Option<JobInfo>, Error> {
        validate_job_id(job_id)?;
        let info = self.observe(self.inner.backend.inspect(job_id).await)?;
        Ok(info.map(|info| self.with_named_args(info)))
    }

    /// One page of the jobs in a state, in the state's order, read from the
    /// index that holds them (never a scan of the keyspace nor of the
    /// namespace): deferred jobs soonest first, queued ones longest waiting
    /// first, running ones with their worker and lease, finished ones (kept
    /// for `keep_result`) and dead-lettered ones (with the reason) most
    /// recent first. A page looks at no more than 10 index entries per job
    /// asked for: with a filter that matches few of them, it is short and
    /// [`JobPage::next`] goes on. Jobs that change state between two pages
    /// may be listed twice or not at all; each listing is a fresh look.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::{JobQuery, ListState};
    ///
    /// #[scheduler::task]
    /// async fn remind(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://list-doc")
    ///     .register::<remind>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// for user in 0..5u64 {
    ///     let later = Duration::from_secs(60 * (user + 1));
    ///     s.enqueue(remind::job(user).id(format!("r-{user}")).after(later)).await?;
    /// }
    /// let first = s.list(&JobQuery::new(ListState::Deferred).limit(3)).await?;
    /// let ids: Vec<&str> = first.jobs.iter().map(|j| j.job_id.as_str()).collect();
    /// assert_eq!(ids, ["r-0", "r-1", "r-2"]);
    /// assert_eq!(first.jobs[0].args, Some(serde_json::json!({ "user": 0 })));
    /// let cursor = first.next.expect("more follow");
    /// let rest = s.list(&JobQuery::new(ListState::Deferred).limit(3).after(cursor)).await?;
    /// assert_eq!(rest.jobs.len(), 2);
    /// assert_eq!(rest.next, None);
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, query: &JobQuery) -> Result<JobPage, Error> {
        query.check()?;
        let mut page = self.observe(self.inner.backend.browse(query).await)?;
        page.jobs = page
            .jobs
            .into_iter()
            .map(|info| self.with_named_args(info))
            .collect();
        Ok(page)
    }

    /// A job's info with its arguments named ([`named_args`](Self::named_args)).
    fn with_named_args(&self, mut info: JobInfo) -> JobInfo {
        info.args = info.args.map(|args| self.named_args(&info.task, args));
        info
    }

    /// Stored arguments by parameter name, for a `#[task]` registered here
    /// (an array with one element per parameter); anything else as stored.
    fn named_args(&self, task: &str, stored: serde_json::Value) -> serde_json::Value {
        match self.inner.registry.get(task).and_then(|r| r.params) {
            Some(params) => to_named(params, stored),
            None => stored,
        }
    }

    /// What became of job `job_id` of task `T`: pending, running, completed
    /// with its result decoded as the task's output, failed with its reason,
    /// cancelled, or unknown (one [`JobResult`]); the `result` helper of
    /// `#[task]` calls it. [`Error::WrongTask`] when the id is held by a job
    /// of another task.
    ///
    /// ```
    /// use scheduler::JobResult;
    ///
    /// #[scheduler::task]
    /// async fn add(a: u32, b: u32) -> Result<u32, String> {
    ///     Ok(a + b)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let test = scheduler::testing::TestScheduler::builder().register::<add>().start().await?;
    /// add::enqueue(&test, "sum", 2, 3).await?;
    /// assert!(matches!(add::result(&test, "sum").await?, JobResult::Pending { .. }));
    /// test.run_until_idle().await?;
    /// assert_eq!(add::result(&test, "sum").await?, JobResult::Completed(5));
    /// assert_eq!(test.result::<add>("no-such-job").await?, JobResult::Unknown);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn result<T>(&self, job_id: &str) -> Result<JobResult<T::Output>, Error>
    where
        T: Task,
        T::Output: DeserializeOwned,
    {
        typed_result::<T>(job_id, self.info(job_id).await?)
    }

    /// What became of job `job_id`, of whatever task, with a completed job's
    /// result as JSON (for tools that do not know the task's types).
    pub async fn result_untyped(
        &self,
        job_id: &str,
    ) -> Result<JobResult<serde_json::Value>, Error> {
        untyped_result(self.info(job_id).await?)
    }

    /// Every queue with jobs or live workers: its deferred, queued and
    /// waiting jobs and how many worker processes serve it, sorted by name
    /// on the in-memory backend, in the namespace's order on Redis. A queue
    /// with jobs and no worker is what a deploy that forgot a queue looks
    /// like.
    ///
    /// ```
    /// use scheduler::{Queues, WorkerConfig};
    ///
    /// #[scheduler::task(queue = "emails")]
    /// async fn welcome(to: String) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://queues-doc")
    ///     .worker(WorkerConfig { queues: Queues::strict(["default"]), ..WorkerConfig::default() })
    ///     .start()
    ///     .await?;
    /// s.enqueue(welcome::job("ada@example.com".into())).await?;
    /// # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    /// let emails = s.queues().await?.into_iter().find(|q| q.name == "emails").expect("listed");
    /// assert_eq!((emails.queued, emails.workers), (1, 0)); // nobody serves it
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn queues(&self) -> Result<Vec<crate::QueueInfo>, Error> {
        self.observe(self.inner.backend.queues().await)
    }

    /// How many jobs of the namespace are deferred, queued, running and
    /// dead-lettered, at one instant, from the sizes of the namespace's own
    /// indexes (one script call, no scan: cheap enough for every scrape).
    /// Also sets the `scheduler_jobs` gauges (see the README's "Metrics"),
    /// which a worker refreshes every 5 s on its own.
    ///
    /// ```
    /// #[scheduler::task]
    /// async fn remind(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://counts")
    ///     .register::<remind>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// s.enqueue(remind::job(1).id("now")).await?;
    /// s.enqueue(remind::job(2).id("later").after(std::time::Duration::from_secs(3600))).await?;
    /// let counts = s.counts().await?;
    /// assert_eq!((counts.queued, counts.deferred, counts.running), (1, 1, 0));
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn counts(&self) -> Result<JobCounts, Error> {
        let counts = self.observe(self.inner.backend.counts().await)?;
        self.metrics().set_counts(&counts);
        Ok(counts)
    }

    /// The deferred and queued jobs of task `T`, with typed arguments, sorted by
    /// run time. Walks this namespace's pending jobs (never the keyspace).
    /// Arguments stored by position and objects written by earlier versions
    /// both decode.
    pub async fn pending<T: Task>(&self) -> Result<Vec<PendingJob<T::Args>>, Error> {
        let params = T::registration().params;
        let mut jobs = Vec::new();
        for raw in self.pending_raw(Some(T::NAME)).await? {
            let args = positional::decode(T::NAME, params, &raw.payload)?;
            jobs.push(PendingJob {
                job_id: raw.id,
                task: raw.task,
                generation: raw.generation,
                run_at: crate::clock::time_from_ms(raw.run_at_ms),
                attempts: raw.attempts,
                args,
            });
        }
        Ok(jobs)
    }

    /// Every deferred and queued job, with its arguments as JSON, sorted by run time.
    ///
    /// Arguments are stored by position; for a `#[task]` registered in this
    /// binary, a stored array with one element per parameter is shown as an
    /// object by parameter name (`{"user": "ada", "n": 3}`), the shape
    /// [`enqueue_untyped`](Self::enqueue_untyped) takes. Anything else (a task
    /// this binary does not know, an object written by an earlier version, an
    /// array of another length) is returned as stored.
    pub async fn pending_untyped(&self) -> Result<Vec<PendingJob<serde_json::Value>>, Error> {
        self.pending_raw(None)
            .await?
            .into_iter()
            .map(|raw| {
                let stored: serde_json::Value = positional::decode(&raw.task, None, &raw.payload)?;
                let args = self.named_args(&raw.task, stored);
                Ok(PendingJob {
                    job_id: raw.id,
                    task: raw.task,
                    generation: raw.generation,
                    run_at: crate::clock::time_from_ms(raw.run_at_ms),
                    attempts: raw.attempts,
                    args,
                })
            })
            .collect()
    }

    async fn pending_raw(&self, task: Option<&str>) -> Result<Vec<RawPending>, Error> {
        let mut cursor = "0".to_string();
        let mut all = Vec::new();
        loop {
            let (next, mut page) = self.inner.backend.list_pending(task, &cursor, 500).await?;
            all.append(&mut page);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        all.sort_by(|a, b| (a.run_at_ms, &a.id).cmp(&(b.run_at_ms, &b.id)));
        Ok(all)
    }

    /// Dead-lettered jobs, newest first: at most `count` of them, after
    /// skipping the `offset` newest (`count` 0 returns none).
    pub async fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.inner.backend.dead_letters(offset, count).await
    }

    /// Puts a dead-lettered job back in the queue with fresh attempts; returns its
    /// new [generation](crate#generations) (the next number of the namespace's
    /// counter), or `None` if the id is not in the dead letter or pending.
    pub async fn requeue_dead_letter(&self, job_id: &str) -> Result<Option<u64>, Error> {
        validate_job_id(job_id)?;
        self.inner.backend.requeue_dead(job_id, &nonce()).await
    }

    /// Empties the dead letter; returns how many entries it held.
    pub async fn purge_dead_letters(&self) -> Result<u64, Error> {
        self.inner.backend.purge_dead().await
    }

    /// Removes one dead-lettered job for good; returns whether the dead
    /// letter held it.
    pub async fn delete_dead_letter(&self, job_id: &str) -> Result<bool, Error> {
        validate_job_id(job_id)?;
        self.inner.backend.delete_dead(job_id).await
    }

    /// What the namespace's workers did in the last `minutes` minutes (at
    /// most [`ACTIVITY_MINUTES`](crate::ACTIVITY_MINUTES)), oldest first,
    /// ending with the current minute: every minute is there, with zeros
    /// where nothing happened. Each worker adds its counts every few
    /// seconds, so the last minute is still filling; see [`ActivityMinute`]
    /// for what the counts mean and how exact they are.
    ///
    /// ```
    /// #[scheduler::task]
    /// async fn ping() -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://activity-doc")
    ///     .register::<ping>()
    ///     .start()
    ///     .await?;
    /// s.enqueue(ping::job()).await?;
    /// let last_hour = s.activity(60).await?;
    /// assert_eq!(last_hour.len(), 60);
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn activity(&self, minutes: usize) -> Result<Vec<ActivityMinute>, Error> {
        let minutes = minutes.min(ACTIVITY_MINUTES);
        let last = minute_of_ms(Utc::now().timestamp_millis());
        let first = last - minutes as i64 + 1;
        let tallies = self.observe(self.inner.backend.activity(first, minutes).await)?;
        Ok((first..)
            .zip(&tallies)
            .map(|(minute, tally)| activity_minute(minute, tally))
            .collect())
    }
}

/// The most minutes [`Scheduler::activity`] reads back: what the backend keeps.
pub const ACTIVITY_MINUTES: usize = KEEP_MINUTES as usize;

/// What became of job `job_id` of task `T`, from its `info`
/// ([`Error::WrongTask`] when the id holds a job of another task).
pub(super) fn typed_result<T>(
    job_id: &str,
    info: Option<JobInfo>,
) -> Result<JobResult<T::Output>, Error>
where
    T: Task,
    T::Output: DeserializeOwned,
{
    if let Some(info) = &info {
        check_task::<T>(job_id, info)?;
    }
    JobResult::from_info(info, |json| {
        serde_json::from_str(json).map_err(|source| Error::Payload {
            task: T::NAME.to_string(),
            source,
        })
    })
}

/// What became of a job, from its `info`, the result as JSON.
pub(super) fn untyped_result(info: Option<JobInfo>) -> Result<JobResult<serde_json::Value>, Error> {
    let task = info.as_ref().map(|i| i.task.clone()).unwrap_or_default();
    JobResult::from_info(info, |json| {
        serde_json::from_str(json).map_err(|source| Error::Payload { task, source })
    })
}
