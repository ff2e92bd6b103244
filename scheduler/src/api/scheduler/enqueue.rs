//! Writing jobs: enqueue (one, untyped, many) and replace.

use chrono::{DateTime, Utc};
use tracing::{debug, info};

use crate::api::job::validate_request_id;
use crate::backend::{EnqueueReply, NewJob};
use crate::payload::encode::encode_args;
use crate::payload::positional::to_positional;
use crate::periodic::store::refuse_tick_id;

use crate::{
    validate_job_id, EnqueueOutcome, Error, FinishedState, IfRunning, JobRequest, PendingState,
    ReplaceOutcome, Scheduler, Task, TaskOptions, When,
};

/// Most jobs written by one script call of [`Scheduler::enqueue_many`].
const BULK_BATCH: usize = 250;
/// How many of those calls [`Scheduler::enqueue_many`] keeps in flight on the
/// connection: while Redis runs one batch, the next is encoded, sent and the
/// previous reply decoded, instead of each side waiting for the other.
const BULK_IN_FLIGHT: usize = 4;
/// Largest time a score can hold exactly (2^53 ms).
const MAX_MS: i64 = 1 << 53;

/// An instant in whole microseconds since the epoch, rounded up, so that a
/// job asked for at `when` never runs before it; its millisecond must fit a
/// score exactly.
fn ceil_us(when: DateTime<Utc>) -> Result<i64, Error> {
    let invalid = || Error::InvalidRunTime(when.to_rfc3339());
    let rest = i64::from(when.timestamp_subsec_nanos() % 1000 != 0);
    let micros = when
        .timestamp_micros()
        .checked_add(rest)
        .ok_or_else(invalid)?;
    if !(-MAX_MS..MAX_MS).contains(&micros.div_euclid(1000)) {
        return Err(invalid());
    }
    Ok(micros)
}

pub(super) fn when_arg(when: When) -> Result<(&'static str, i64), Error> {
    match when {
        When::Now => Ok(("now", 0)),
        When::At(at) => Ok(("at", ceil_us(at)?)),
        // In whole microseconds, rounded up: the scripts add it to Redis time
        // to the microsecond.
        When::After(delay) => {
            let micros = delay.as_nanos().div_ceil(1000);
            if micros >= (MAX_MS as u128) * 1000 {
                return Err(Error::InvalidRunTime(format!("{delay:?} from now")));
            }
            Ok(("after", micros as i64))
        }
    }
}

/// The characters of a request nonce: 64 of them, 6 bits each.
const NONCE_ALPHABET: &[u8; 64] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// A random tag stored in the job record, so that an enqueue re-sent after a
/// lost reply is recognised as the same request. 8 characters (48 random bits)
/// rather than 16 hex digits: it sits in every pending record, and a clash only
/// matters between two requests for the same id while the first one's job
/// exists (odds 2^-48 per such pair).
pub(super) fn nonce() -> String {
    let mut bits = fastrand::u64(..);
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        out.push(char::from(NONCE_ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

/// The calls of a bulk enqueue, in order: runs of jobs in batches of
/// [`BULK_BATCH`], and each job with a request id alone (its reply is logged
/// per call).
fn bulk_calls(jobs: &[NewJob]) -> Vec<&[NewJob]> {
    let mut calls = Vec::new();
    let mut rest = jobs;
    while !rest.is_empty() {
        let run = rest
            .iter()
            .take(BULK_BATCH)
            .take_while(|job| job.request_id.is_none())
            .count()
            .max(1);
        let (call, tail) = rest.split_at(run);
        calls.push(call);
        rest = tail;
    }
    calls
}

fn enqueue_outcome(reply: EnqueueReply, job_id: &str) -> Result<EnqueueOutcome, Error> {
    let run_at = crate::clock::time_from_ms(reply.run_at_ms);
    let job_id = job_id.to_string();
    match reply.code.as_str() {
        "enqueued" => Ok(EnqueueOutcome::Enqueued {
            job_id,
            generation: reply.generation,
            run_at,
        }),
        "duplicate" => {
            let state = match reply.state.as_str() {
                "running" => PendingState::Running,
                "queued" => PendingState::Queued,
                _ => PendingState::Deferred,
            };
            Ok(EnqueueOutcome::Duplicate {
                job_id,
                task: reply.task,
                state,
                generation: reply.generation,
                run_at,
            })
        }
        "finished" => Ok(EnqueueOutcome::RecentlyFinished {
            job_id,
            state: FinishedState::parse(&reply.state).ok_or_else(|| {
                Error::Corrupt(format!("unexpected finished state {:?}", reply.state))
            })?,
            generation: reply.generation,
            finished_at: run_at,
        }),
        other => Err(Error::Corrupt(format!(
            "unexpected enqueue outcome {other:?}"
        ))),
    }
}

impl Scheduler {
    /// Serializes and checks one typed request.
    pub(super) fn prepare<T: Task>(&self, request: JobRequest<T>) -> Result<NewJob, Error> {
        if let Some(request_id) = &request.request_id {
            validate_request_id(request_id)?;
        }
        let id = match request.id.or_else(|| request.request_id.clone()) {
            Some(id) => {
                validate_job_id(&id)?;
                refuse_tick_id(&id)?;
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let payload = encode_args(T::NAME, T::registration().params, &request.args)?;
        let mut job = self.prepare_raw(
            id,
            T::NAME,
            payload,
            request.when,
            request.max_attempts.or(T::OPTIONS.max_attempts),
            &T::OPTIONS,
        )?;
        job.priority = request.priority;
        if let Some(key) = request.limit_key {
            crate::api::routing::validate_limit_key(&key)?;
            job.limit_key = Some(key);
        }
        job.unique_until_result_expires = request.unique_until_result_expires;
        if let Some(request_id) = request.request_id {
            // Random nonces never start with ':': the job this request
            // created is recognised by it while it exists.
            job.nonce = format!(":{request_id}");
            job.request_id = Some(request_id);
        }
        Ok(job)
    }

    fn prepare_raw(
        &self,
        id: String,
        task: &str,
        payload: Vec<u8>,
        when: When,
        max_attempts: Option<u32>,
        options: &TaskOptions,
    ) -> Result<NewJob, Error> {
        // A hand-written registration's queue is checked here (the
        // attribute checks its own at compile time).
        if let Some(queue) = options.queue {
            crate::api::routing::validate_queue_name(queue)?;
        }
        let limit = self.inner.backend.config().max_payload_bytes;
        if payload.len() > limit {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                limit,
            });
        }
        let max_attempts = max_attempts
            .unwrap_or(self.inner.backend.config().default_max_attempts)
            .max(1);
        Ok(NewJob {
            id,
            task: task.to_string(),
            payload,
            max_attempts,
            when: when_arg(when)?,
            nonce: nonce(),
            unique_until_result_expires: false,
            request_id: None,
            trace: crate::ops::trace::current(),
            queue: options
                .queue
                .filter(|queue| *queue != crate::DEFAULT_QUEUE)
                .map(str::to_string),
            priority: 0,
            limit_key: None,
        })
    }

    /// Enqueues a typed job. If a job with this id is already deferred, queued or
    /// running, nothing changes and [`EnqueueOutcome::Duplicate`] says where it is
    /// and which task it belongs to (job ids are shared by all tasks).
    /// A finished job's id is free at once, unless the request asks for
    /// [`unique_until_result_expires`](JobRequest::unique_until_result_expires)
    /// ([`EnqueueOutcome::RecentlyFinished`] while its outcome is kept).
    pub async fn enqueue<T: Task>(&self, request: JobRequest<T>) -> Result<EnqueueOutcome, Error> {
        let job = self.prepare(request)?;
        self.enqueue_prepared(job).await
    }

    async fn enqueue_prepared(&self, job: NewJob) -> Result<EnqueueOutcome, Error> {
        let replies = self.observe(
            self.inner
                .backend
                .enqueue("enqueue", "keep", std::slice::from_ref(&job))
                .await,
        )?;
        let reply = replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("empty enqueue reply".into()))?;
        let outcome = enqueue_outcome(reply, &job.id)?;
        self.metrics().enqueued(&job.task, &outcome);
        match &outcome {
            EnqueueOutcome::Enqueued {
                generation, run_at, ..
            } => {
                debug!(job_id = %job.id, task = %job.task, generation, %run_at, "job enqueued")
            }
            EnqueueOutcome::Duplicate {
                state, generation, ..
            } => {
                debug!(job_id = %job.id, task = %job.task, generation, ?state, "duplicate enqueue ignored")
            }
            EnqueueOutcome::RecentlyFinished {
                state, generation, ..
            } => {
                debug!(job_id = %job.id, task = %job.task, generation, ?state, "enqueue of a recently finished id ignored")
            }
        }
        Ok(outcome)
    }

    /// Enqueues a job of a task known only by name, with JSON arguments (the
    /// untyped path: prefer the typed helpers of `#[task]`).
    ///
    /// `args` is a JSON object by parameter name (`{"user": "ada", "n": 3}`) or
    /// an array in the parameters' order (`["ada", 3]`). For a `#[task]`
    /// registered in this binary, an object is stored as the array (arguments
    /// are stored by position) and is checked first: an unknown or missing name,
    /// or an array of the wrong length, is [`Error::Arguments`] instead of a job
    /// that fails when it runs. For a task this binary does not know (or one
    /// registered by hand with `params: None`), `args` is stored unchanged.
    pub async fn enqueue_untyped(
        &self,
        task: &str,
        job_id: Option<&str>,
        args: &serde_json::Value,
        when: When,
    ) -> Result<EnqueueOutcome, Error> {
        let id = match job_id {
            Some(id) => {
                validate_job_id(id)?;
                refuse_tick_id(id)?;
                id.to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let registration = self.inner.registry.get(task);
        let payload = match registration.and_then(|r| r.params) {
            Some(params) => encode_args(task, None, &to_positional(task, params, args)?)?,
            None => encode_args(task, None, args)?,
        };
        let max_attempts = registration.and_then(|t| t.options.max_attempts);
        let options = registration.map_or(TaskOptions::DEFAULT, |t| t.options);
        let job = self.prepare_raw(id, task, payload, when, max_attempts, &options)?;
        self.enqueue_prepared(job).await
    }

    /// Enqueues many typed jobs; each is deduplicated on its own, as by
    /// [`Scheduler::enqueue`]. Outcomes come back in order.
    ///
    /// The jobs go to Redis in batches of 250, one atomic script call each,
    /// with up to 4 batches in flight at once (pipelined on the connection).
    /// The call as a whole is not atomic: when it returns an error, the
    /// batches that Redis had answered are enqueued. Calling again with the
    /// same job ids is safe: those jobs are reported as duplicates, and the
    /// rest are enqueued.
    ///
    /// ```
    /// #[scheduler::task]
    /// async fn notify(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://enqueue-many")
    ///     .register::<notify>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let requests = (0..1_000u64).map(|user| notify::job(user).id(format!("notify-{user}")));
    /// let outcomes = s.enqueue_many(requests).await?;
    /// assert!(outcomes.iter().all(|o| o.is_enqueued()));
    /// // Sent again, every job is a duplicate: nothing runs twice.
    /// let again = s.enqueue_many((0..1_000u64).map(|user| notify::job(user).id(format!("notify-{user}")))).await?;
    /// assert!(again.iter().all(|o| !o.is_enqueued()));
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_many<T: Task>(
        &self,
        requests: impl IntoIterator<Item = JobRequest<T>>,
    ) -> Result<Vec<EnqueueOutcome>, Error> {
        use futures_util::stream::{self, StreamExt};
        let jobs = requests
            .into_iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<_> = stream::iter(bulk_calls(&jobs))
            .map(|chunk| self.inner.backend.enqueue("enqueue", "keep", chunk))
            .buffered(BULK_IN_FLIGHT)
            .collect()
            .await;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut ids = jobs.iter().map(|j| j.id.as_str());
        for batch in batches {
            for reply in self.observe(batch)? {
                let id = ids
                    .next()
                    .ok_or_else(|| Error::Corrupt("more enqueue replies than jobs".into()))?;
                let outcome = enqueue_outcome(reply, id)?;
                self.metrics().enqueued(T::NAME, &outcome);
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    /// Replaces the pending job with this id by the new request in one atomic
    /// step (the seed's "cancel, then queue", without its race). When the job is
    /// running, `if_running` decides. The answer names every generation it
    /// affected: the pending one it replaced, the running one it aborted or
    /// queued after, and a replacement already waiting behind the running one
    /// whose place it took (see [`ReplaceOutcome`]).
    ///
    /// ```
    /// use chrono::{TimeDelta, Utc};
    /// use scheduler::{EnqueueOutcome, IfRunning, ReplaceOutcome};
    ///
    /// #[scheduler::task]
    /// async fn remind(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://replace")
    ///     .register::<remind>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let at = Utc::now() + TimeDelta::hours(1);
    /// let EnqueueOutcome::Enqueued { generation: first, .. } =
    ///     s.enqueue(remind::job(7).id("remind-7").at(at)).await?
    /// else {
    ///     panic!("the id was free");
    /// };
    /// // Re-planned half an hour later: the first job never runs, and the
    /// // answer names it.
    /// let request = remind::job(7).id("remind-7").at(at + TimeDelta::minutes(30));
    /// match s.replace(request, IfRunning::Abort).await? {
    ///     ReplaceOutcome::Replaced { replaced_generation, .. } => {
    ///         assert_eq!(replaced_generation, first)
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// It acts only on a job of task `T`: when the id is held by a pending or
    /// running job of another task, nothing changes and the answer is
    /// [`Error::WrongTask`] (job ids are shared by all tasks).
    pub async fn replace<T: Task>(
        &self,
        request: JobRequest<T>,
        if_running: IfRunning,
    ) -> Result<ReplaceOutcome, Error> {
        let job = self.prepare(request)?;
        let policy = match if_running {
            IfRunning::Abort => "abort",
            IfRunning::QueueAfter => "after",
            IfRunning::Keep => "keep",
        };
        let replies = self.observe(
            self.inner
                .backend
                .enqueue("replace", policy, std::slice::from_ref(&job))
                .await,
        )?;
        let reply = replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("empty replace reply".into()))?;
        let run_at = crate::clock::time_from_ms(reply.run_at_ms);
        let generation = reply.generation;
        let other = reply.other;
        let replaced_waiting = (reply.replaced > 0).then_some(reply.replaced);
        let outcome = match reply.code.as_str() {
            "enqueued" => ReplaceOutcome::Enqueued { generation, run_at },
            "replaced" => ReplaceOutcome::Replaced {
                generation,
                run_at,
                previous_run_at: crate::clock::time_from_ms(other),
                replaced_generation: reply.replaced,
            },
            "aborted" => ReplaceOutcome::AbortedRunning {
                generation,
                run_at,
                aborted_generation: other as u64,
                replaced_waiting,
            },
            "queued_after" => ReplaceOutcome::QueuedAfterRunning {
                generation,
                run_at,
                running_generation: other as u64,
                replaced_waiting,
            },
            "running" => ReplaceOutcome::Running { generation },
            "wrong_task" => {
                return Err(Error::WrongTask {
                    job_id: job.id,
                    expected: job.task,
                    found: reply.task,
                })
            }
            code => {
                return Err(Error::Corrupt(format!(
                    "unexpected replace outcome {code:?}"
                )))
            }
        };
        info!(job_id = %job.id, task = %job.task, ?outcome, "job replaced");
        self.metrics().replaced(&job.task, &outcome);
        Ok(outcome)
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn run_times_round_up_to_the_microsecond() {
        let at = DateTime::from_timestamp_micros(1_000_000_300).expect("valid");
        assert_eq!(ceil_us(at).ok(), Some(1_000_000_300));
        let nanos = DateTime::from_timestamp_nanos(1_000_000_300_001);
        assert_eq!(ceil_us(nanos).ok(), Some(1_000_000_301));
        let before_1970 = DateTime::from_timestamp_nanos(-1_500_500);
        assert_eq!(ceil_us(before_1970).ok(), Some(-1_500));
        // chrono's whole range fits in a score (2^53 ms is about 285,000 years).
        assert!(ceil_us(DateTime::<Utc>::MAX_UTC).is_ok());
        assert!(ceil_us(DateTime::<Utc>::MIN_UTC).is_ok());
        // Where whole milliseconds are kept, rounded up.
        assert_eq!(crate::backend::ms_up(1_000_000_300), 1_000_001);
        assert_eq!(crate::backend::ms_up(5_000_000), 5_000);
        assert_eq!(crate::backend::ms_up(-1_500), -1);
        assert!(when_arg(When::After(Duration::from_secs(u64::MAX))).is_err());
        assert_eq!(
            when_arg(When::After(Duration::from_micros(1500))).ok(),
            Some(("after", 1500))
        );
        assert_eq!(
            when_arg(When::After(Duration::from_nanos(1500))).ok(),
            Some(("after", 2))
        );
    }

    #[test]
    fn nonces_are_eight_url_safe_characters_and_differ() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| NONCE_ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
    }
}
