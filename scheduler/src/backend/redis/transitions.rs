//! Every state transition of the [`Backend`] contract as one script call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;

use crate::backend::redis::decode::{flat_enqueue_replies, parse_claim, uniform_enqueue_replies};
use crate::backend::redis::keys::Keys;
use crate::backend::redis::record::job_info;
use crate::backend::redis::reply::corrupt;
use crate::backend::redis::{reply, RedisBackend};
use crate::ops::health::HealthState;
use crate::{CancelOutcome, DeadLetter, Error, FinishedState, JobCounts, JobInfo, SchedulerConfig};

use crate::backend::{
    Backend, BoxFuture, Claim, ClaimTicket, EnqueueReply, EventNotice, Finished, Listener, NewJob,
    RawPending, Serving, Subscription,
};
use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};

/// Whether `enqueue.lua` gets these jobs in its 'uniform' layout: two or
/// more jobs that share task, attempts, run time and unique flag (a bulk
/// enqueue, usually) send those once, 3 values per job instead of 8, and a
/// created job is answered with its generation alone.
pub(super) fn uniform_batch(mode: &str, jobs: &[NewJob]) -> bool {
    mode == "enqueue"
        && jobs.len() > 1
        && jobs.iter().all(|job| {
            job.task == jobs[0].task
                && job.trace.is_none()
                && !job.is_routed()
                && job.max_attempts == jobs[0].max_attempts
                && job.when == jobs[0].when
                && job.unique_until_result_expires == jobs[0].unique_until_result_expires
        })
}

/// The job of a request `enqueue_one` can take: one job, 'enqueue' mode,
/// without the unique flag (which needs the finished-job lookup it skips),
/// a request id of the caller's (which needs the reply-log lookup), nor a
/// trace context (which only `enqueue.lua` stores).
pub(super) fn first_send_of_one<'a>(mode: &str, jobs: &'a [NewJob]) -> Option<&'a NewJob> {
    match jobs {
        [job]
            if mode == "enqueue"
                && !job.unique_until_result_expires
                && job.request_id.is_none()
                && job.trace.is_none()
                && !job.is_routed() =>
        {
            Some(job)
        }
        _ => None,
    }
}

/// The arguments of `enqueue.lua` (its header documents them).
fn enqueue_args(
    mode: &'static str,
    if_running: &'static str,
    uniform: bool,
    keys: &Keys,
    config: &SchedulerConfig,
    jobs: &[NewJob],
) -> Vec<Value> {
    let unique = |job: &NewJob| {
        if job.unique_until_result_expires {
            "1"
        } else {
            "0"
        }
    };
    let mut args: Vec<Value> = Vec::with_capacity(11 + jobs.len() * if uniform { 3 } else { 8 });
    args.push(mode.into());
    args.push(if_running.into());
    args.push(keys.wake_channel.as_str().into());
    args.push(keys.abort_channel.as_str().into());
    args.push(Value::Integer(i64::from(config.dead_letter_cap)));
    if uniform {
        let first = &jobs[0];
        args.push("uniform".into());
        args.push(first.task.as_str().into());
        args.push(Value::Integer(i64::from(first.max_attempts)));
        args.push(first.when.0.into());
        args.push(Value::Integer(first.when.1));
        args.push(unique(first).into());
        for job in jobs {
            args.push(job.id.as_str().into());
            args.push(Value::Bytes(job.payload.clone().into()));
            args.push(job.nonce.as_str().into());
        }
        return args;
    }
    // Layout 'traced' when a job carries a trace context: a ninth value
    // each; 'routed' when a job has a queue, priority or limit key: three more.
    let routed = jobs.iter().any(NewJob::is_routed);
    let traced = routed || jobs.iter().any(|job| job.trace.is_some());
    let layout = match (routed, traced) {
        (true, _) => "routed",
        (false, true) => "traced",
        (false, false) => "",
    };
    args.push(layout.into());
    for job in jobs {
        push_job_values(&mut args, job);
        args.push(unique(job).into());
        if traced {
            args.push(job.trace.as_deref().unwrap_or("").into());
        }
        if routed {
            args.push(job.queue.as_deref().unwrap_or("").into());
            args.push(Value::Integer(i64::from(job.priority)));
            args.push(job.limit_key.as_deref().unwrap_or("").into());
        }
    }
    args
}

/// One job's values, in the order both `enqueue.lua` (layout '') and
/// `enqueue_one` take them: id, task, payload, max attempts, when kind, when
/// ms, nonce (`enqueue_one` hands them on to `enqueue.lua` in that order).
pub(super) fn push_job_values(args: &mut Vec<Value>, job: &NewJob) {
    args.push(job.id.as_str().into());
    args.push(job.task.as_str().into());
    args.push(Value::Bytes(job.payload.clone().into()));
    args.push(Value::Integer(i64::from(job.max_attempts)));
    args.push(job.when.0.into());
    args.push(Value::Integer(job.when.1));
    args.push(job.nonce.as_str().into());
}

impl Backend for RedisBackend {
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        Box::pin(async move {
            let request = self.enqueue_request(mode, jobs);
            let first_send =
                first_send_of_one(mode, jobs).filter(|_| self.functions.load(Ordering::Relaxed));
            let mut reply = None;
            if let Some(job) = first_send {
                match self.enqueue_first_send(job, &request).await {
                    Ok(sent) => reply = sent,
                    // The connection failed with the request sent or not: ask
                    // again through enqueue.lua, which recognises this request
                    // (its request id, its nonce) in every state its job can
                    // have reached.
                    Err(Error::Unavailable(e)) => {
                        tracing::debug!(job_id = %job.id, error = %e, "enqueue sent again after a connection failure");
                    }
                    Err(e) => return Err(e),
                }
            }
            // One job is never uniform, so enqueue_one's reply (flat, as
            // enqueue.lua's for one job) is read below like enqueue.lua's.
            let uniform = uniform_batch(mode, jobs);
            let reply = match reply {
                Some(reply) => reply,
                None => {
                    let args =
                        || enqueue_args(mode, if_running, uniform, &self.keys, &self.config, jobs);
                    self.call_logged(&self.scripts.enqueue, &request, args)
                        .await?
                }
            };
            self.replicate().await?;
            let values = reply::array(reply, "enqueue")?;
            let replies = if uniform {
                uniform_enqueue_replies(values, jobs.len())?
            } else {
                flat_enqueue_replies(mode, values, jobs.len())?
            };
            if let Some(max) = replies.iter().map(|r| r.generation).max() {
                self.saw_generation(max);
            }
            Ok(replies)
        })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        ticket: &'a ClaimTicket,
        serving: &'a Serving,
    ) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move {
            // claim.lua's header documents the serving arguments.
            let queues = match &serving.queues {
                None => "*".to_string(),
                Some(queues) => queues.join("\n"),
            };
            let tasks = serving
                .tasks
                .as_ref()
                .map(|tasks| tasks.join("\n"))
                .unwrap_or_default();
            let limits = serving.limit_lines();
            let args = || -> Vec<Value> {
                vec![
                    worker.into(),
                    Value::Integer(max as i64),
                    Value::Integer(lease.as_millis() as i64),
                    Value::Integer(self.keep_ms()),
                    Value::Integer(i64::from(self.config.dead_letter_cap)),
                    ticket.nonce.as_str().into(),
                    if ticket.retry { "1" } else { "" }.into(),
                    queues.as_str().into(),
                    tasks.as_str().into(),
                    limits.as_str().into(),
                    self.keys.wake_channel.as_str().into(),
                    if self.global_limits { "1" } else { "" }.into(),
                ]
            };
            // Sent once: the worker sends a failed claim again with the same
            // ticket and the retry flag, and claim.lua's own log answers it.
            let reply = self.send(&self.scripts.claim, args).await?;
            let (claim, unreadable) = parse_claim(reply)?;
            if !unreadable.is_empty() {
                // Best effort: if this fails, their leases expire as before.
                if let Err(e) = self.complete(&unreadable).await {
                    tracing::warn!(error = %e, count = unreadable.len(), "unreadable claimed jobs could not be dead-lettered; they are retried after their lease");
                }
            }
            if let Some(max) = claim.jobs.iter().map(|j| j.generation).max() {
                self.saw_generation(max);
            }
            Ok(claim)
        })
    }

    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let args = || {
                let mut args: Vec<Value> = Vec::with_capacity(2 + finished.len() * 6);
                args.push(Value::Integer(self.keep_ms()));
                args.push(Value::Integer(i64::from(self.config.dead_letter_cap)));
                args.push(self.keys.wake_channel.as_str().into());
                for f in finished {
                    args.push(f.id.as_str().into());
                    args.push(Value::Integer(f.generation as i64));
                    args.push(Value::Integer(i64::from(f.attempt)));
                    args.push(f.outcome.into());
                    args.push(f.text.as_str().into());
                    args.push(Value::Integer(f.retry_delay_ms as i64));
                }
                args
            };
            // Needs no reply log: every entry is fenced by (generation,
            // attempt), never handed out twice, so run again it changes
            // nothing (its entries answer 'stale').
            let reply = self.call(&self.scripts.complete, args).await?;
            Ok(reply::array(reply, "complete")?
                .iter()
                .map(reply::string)
                .collect())
        })
    }

    fn renew<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let args = || {
                let mut args: Vec<Value> = Vec::with_capacity(3 + running.len() * 3);
                args.push(Value::Integer(lease.as_millis() as i64));
                args.push(worker.into());
                args.push(Value::Integer(i64::from(self.config.dead_letter_cap)));
                for (id, generation, attempt) in running {
                    args.push(id.as_str().into());
                    args.push(Value::Integer(*generation as i64));
                    args.push(Value::Integer(i64::from(*attempt)));
                }
                args
            };
            let reply = self.call(&self.scripts.renew, args).await?;
            Ok(reply::array(reply, "renew")?
                .iter()
                .map(reply::string)
                .collect())
        })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(CancelOutcome, Option<String>), Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    id.into(),
                    generation
                        .map(|g| Value::Integer(g as i64))
                        .unwrap_or_else(|| "".into()),
                    Value::Integer(self.keep_ms()),
                    self.keys.abort_channel.as_str().into(),
                    task.unwrap_or("").into(),
                ]
            };
            let reply = reply::array(
                self.call_logged(&self.scripts.cancel, &self.request(), args)
                    .await?,
                "cancel",
            )?;
            self.replicate().await?;
            let code = reply.first().map(reply::string).unwrap_or_default();
            let generation = reply.get(1).and_then(reply::opt_int).unwrap_or(0) as u64;
            let removed_task = reply
                .get(4)
                .filter(|v| !matches!(v, Value::Null | Value::Boolean(false)))
                .map(reply::string)
                .filter(|t| !t.is_empty());
            let outcome = match code.as_str() {
                "removed" => CancelOutcome::Removed { generation },
                "abort_signalled" => CancelOutcome::AbortSignalled {
                    generation,
                    removed_successor: reply.get(3).and_then(reply::opt_int).map(|g| g as u64),
                },
                "wrong_task" => {
                    return Err(Error::WrongTask {
                        job_id: id.to_string(),
                        expected: task.unwrap_or_default().to_string(),
                        found: reply.get(2).map(reply::string).unwrap_or_default(),
                    })
                }
                "finished" => {
                    let state = reply.get(2).map(reply::string).unwrap_or_default();
                    CancelOutcome::AlreadyFinished(
                        FinishedState::parse(&state).ok_or_else(|| corrupt("finished state"))?,
                    )
                }
                _ => CancelOutcome::NotFound,
            };
            Ok((outcome, removed_task))
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        Box::pin(async move {
            let reply = self.call(&self.scripts.inspect, || vec![id.into()]).await?;
            job_info(id, reply)
        })
    }

    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        Box::pin(self.dead_letters_call(offset, count))
    }

    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(self.requeue_dead_call(id, nonce))
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(self.purge_dead_call())
    }

    fn delete_dead<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.delete_dead_call(id))
    }

    fn add_activity<'a>(
        &'a self,
        minutes: &'a [(i64, crate::ops::activity::Tally)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.add_activity_call(minutes))
    }

    fn activity(
        &self,
        first: i64,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::ops::activity::Tally>, Error>> {
        Box::pin(self.activity_call(first, count))
    }

    fn counts(&self) -> BoxFuture<'_, Result<JobCounts, Error>> {
        Box::pin(self.counts_call())
    }

    fn announce_worker<'a>(
        &'a self,
        id: &'a str,
        queues: &'a [String],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.announce_worker_call(id, queues, ttl))
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<crate::QueueInfo>, Error>> {
        Box::pin(self.queues_call())
    }

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        cursor: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        Box::pin(self.list_pending_call(task, cursor, count))
    }

    fn audit(&self, lease: Duration) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        Box::pin(self.audit_call(lease))
    }

    fn list_schedules(&self) -> BoxFuture<'_, Result<(i64, Vec<Stored>), Error>> {
        Box::pin(self.list_schedules_now())
    }

    fn put_schedule<'a>(
        &'a self,
        name: &'a str,
        definition: &'a Definition,
    ) -> BoxFuture<'a, Result<PutOutcome, Error>> {
        Box::pin(self.put_schedule_now(name, definition))
    }

    fn plan_schedule<'a>(
        &'a self,
        plan: &'a PlanCall,
    ) -> BoxFuture<'a, Result<PlanOutcome, Error>> {
        Box::pin(self.plan_schedule_now(plan))
    }

    fn pause_schedule<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        Box::pin(self.pause_schedule_now(name, paused))
    }

    fn remove_schedule<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        Box::pin(self.remove_schedule_now(name))
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        Box::pin(async move { self.subscribe_notices().await })
    }

    fn subscribe_finished<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Subscription<crate::backend::FinishedNotice>, Error>> {
        Box::pin(self.subscribe_finished_channel(token))
    }

    fn listen<'a>(
        &'a self,
        kind: Listener,
        token: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let member = match kind {
                Listener::Finished => self.keys.finished_channel(token),
                Listener::Events => self.keys.events_listener(token),
            };
            let args = || -> Vec<Value> {
                match ttl {
                    Some(ttl) => vec![
                        "add".into(),
                        member.as_str().into(),
                        Value::Integer(ttl.as_millis() as i64),
                    ],
                    None => vec!["remove".into(), member.as_str().into()],
                }
            };
            self.call(&self.scripts.listeners, args).await?;
            Ok(())
        })
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> BoxFuture<'a, Result<(String, u64, i64), Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    id.into(),
                    when.0.into(),
                    Value::Integer(when.1),
                    self.keys.wake_channel.as_str().into(),
                    generation.unwrap_or(0).to_string().into(),
                ]
            };
            let reply = reply::array(
                self.call(&self.scripts.reschedule, args).await?,
                "reschedule",
            )?;
            let get = |i: usize| reply.get(i).cloned().unwrap_or(Value::Null);
            Ok((
                reply::string(&get(0)),
                reply::opt_int(&get(1)).unwrap_or(0) as u64,
                reply::opt_int(&get(2)).unwrap_or(0),
            ))
        })
    }

    fn browse<'a>(
        &'a self,
        query: &'a crate::JobQuery,
    ) -> BoxFuture<'a, Result<crate::JobPage, Error>> {
        Box::pin(async move {
            let (score, id) = match query.position()? {
                Some((score, id)) => (Value::from(score.to_string()), id),
                None => ("".into(), String::new()),
            };
            let args = || -> Vec<Value> {
                vec![
                    query.state.as_str().into(),
                    query.task.as_deref().unwrap_or("").into(),
                    query.outcome.map_or("", |o| o.as_str()).into(),
                    Value::Integer(query.limit as i64),
                    score.clone(),
                    id.as_str().into(),
                    Value::Integer((query.limit * crate::api::listing::SCAN_PER_JOB) as i64),
                    query.queue.as_deref().unwrap_or("").into(),
                ]
            };
            crate::backend::redis::record::job_page(self.call(&self.scripts.browse, args).await?)
        })
    }

    fn subscribe_events(
        &self,
        capacity: usize,
    ) -> BoxFuture<'_, Result<Subscription<EventNotice>, Error>> {
        Box::pin(self.subscribe_events_channel(capacity))
    }

    fn progress<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
        attempt: u32,
        progress: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    id.into(),
                    Value::Integer(generation as i64),
                    Value::Integer(i64::from(attempt)),
                    progress.into(),
                ]
            };
            let reply = self.call(&self.scripts.progress, args).await?;
            Ok(reply::string(&reply) == "ok")
        })
    }

    fn startup_warnings(&self) -> Vec<String> {
        self.warnings.as_ref().clone()
    }

    fn attach_health(&self, health: &HealthState) {
        let _ = self.health.set(health.clone());
    }

    fn drop_old_script_libraries(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(self.drop_old_libraries())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let watches = self.watches.lock().map(|mut w| std::mem::take(&mut *w));
            for watch in watches.unwrap_or_default() {
                watch.abort();
            }
            let _ = self.client.quit().await;
        })
    }
}
