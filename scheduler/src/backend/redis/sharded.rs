//! A namespace split over several hash tags ([`keys::shard_tags`]): one
//! [`RedisBackend`] per shard on one connection, and a router in front.
//!
//! A job id belongs to one shard ([`keys::shard_of`]), so every per-id
//! transition (enqueue, dedup, replace, cancel, reschedule, fencing, outcome)
//! is still one script on one slot: as atomic as in an unsharded namespace.
//! A worker claims from the shards one after another until its batch is full,
//! starting at a random one, and sleeps until the earliest due job of any
//! shard; one subscriber hears the wake and abort channels of all of them.
//!
//! What must be global lives in shard 0, one slot: the schedules and their
//! ticks (a tick is created by the step that moves its schedule's cursor),
//! the per-minute activity counts, and the worker registry behind
//! [`Scheduler::queues`](crate::Scheduler::queues). Those are written once a
//! minute or once per tick, not once per job. So are the counts of the
//! concurrency and rate limits, written once per start and end of a limited
//! job only ([`super::global_limits`]).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use fred::types::scripts::Script;
use futures_util::future::try_join_all;

use super::global_limits::GlobalLimits;
use super::keys::{self, Keys};
use super::RedisBackend;
use crate::api::listing::JobPage;
use crate::backend::{
    Backend, BoxFuture, Claim, ClaimTicket, EnqueueReply, EventNotice, Finished, FinishedNotice,
    Listener, NewJob, RawPending, Serving, Subscription,
};
use crate::ops::activity::Tally;
use crate::ops::health::HealthState;
use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};
use crate::{
    CancelOutcome, DeadLetter, Error, JobCounts, JobInfo, JobQuery, QueueInfo, SchedulerConfig,
};

/// The shards of one namespace, and those of its earlier layout while that
/// one is drained.
#[derive(Clone, Debug)]
pub(crate) struct ShardedBackend {
    shards: Vec<RedisBackend>,
    /// The layout being drained (`SchedulerConfig::draining_from`), empty
    /// when none: its live jobs stay where they are, run by workers that
    /// claim from it too, and every call about one of them goes there.
    old: Vec<RedisBackend>,
    /// Every shard, the drained layout's after the current one's: what
    /// listings, counts and subscriptions cover.
    all: Vec<RedisBackend>,
    /// The jobs this process claimed from the drained layout, until their
    /// outcome is recorded: their renewals and outcomes go there.
    claimed_old: Arc<Mutex<HashSet<String>>>,
    /// The slots this process's limited jobs hold in the home shard.
    limits: GlobalLimits,
}

impl ShardedBackend {
    /// Connects to the `shards` shards of the configured namespace (and, while
    /// a change of their number is rolled out, to the `draining` shards of
    /// the layout before).
    pub(crate) async fn connect(
        url: &str,
        config: SchedulerConfig,
        shards: u16,
        draining: Option<u16>,
    ) -> Result<Self, Error> {
        let mut tags = keys::shard_tags(&config.namespace, shards);
        let current = tags.len();
        if let Some(old) = draining.filter(|&old| old != shards) {
            tags.extend(keys::shard_tags(&config.namespace, old));
        }
        let mut all = RedisBackend::connect_tags(url, config, &tags).await?;
        for shard in &mut all {
            shard.global_limits = true;
        }
        let backend = ShardedBackend {
            shards: all[..current].to_vec(),
            old: all[current..].to_vec(),
            all,
            claimed_old: Arc::new(Mutex::new(HashSet::new())),
            limits: GlobalLimits::default(),
        };
        backend.take_over_from_old().await?;
        Ok(backend)
    }

    fn home(&self) -> &RedisBackend {
        &self.shards[0]
    }

    /// The shard of the current layout that holds job `id`.
    fn of(&self, id: &str) -> &RedisBackend {
        &self.shards[keys::shard_of(id, self.shards.len())]
    }

    /// The shard of the drained layout that held job `id`.
    fn old_of(&self, id: &str) -> Option<&RedisBackend> {
        (!self.old.is_empty()).then(|| &self.old[keys::shard_of(id, self.old.len())])
    }

    /// Where a call about job `id` goes: the drained layout's shard while
    /// the id is pending or running there, else the current one's. Once no
    /// process creates jobs in the drained layout (every process of the
    /// namespace is on the new one), an id absent from it stays absent, so
    /// the one look is enough: the call itself is atomic on the shard it
    /// reaches. One extra round trip, while a layout is drained only.
    async fn locate(&self, id: &str) -> Result<&RedisBackend, Error> {
        match self.old_of(id) {
            Some(old) if old.holds_live(&[id]).await?.first() == Some(&true) => Ok(old),
            _ => Ok(self.of(id)),
        }
    }

    /// Whether this process claimed job `id` from the drained layout.
    fn claimed_from_old(&self, id: &str) -> bool {
        !self.old.is_empty()
            && self
                .claimed_old
                .lock()
                .map(|c| c.contains(id))
                .unwrap_or(false)
    }

    /// Before the first call on a new layout: its generation counters start
    /// above the drained layout's (so that an id that moves never sees its
    /// generation go back), and the schedules move to the new shard 0. Each
    /// schedule is removed from the old home first, with its tick that has
    /// not started (which would otherwise run beside the same tick planned
    /// anew), then stored in the new home if it is not there, planning from
    /// now on. A tick already due at that instant and not yet started is
    /// skipped. Every process of the new layout does this at start; the
    /// second finds nothing left to move.
    async fn take_over_from_old(&self) -> Result<(), Error> {
        if self.old.is_empty() {
            return Ok(());
        }
        let mut highest = 0;
        for old in &self.old {
            highest = highest.max(old.generation_counter().await.unwrap_or(0));
        }
        for shard in &self.shards {
            shard.raise_generation_counter(highest).await?;
        }
        let (_, moving) = self.old[0].list_schedules().await?;
        if moving.is_empty() {
            return Ok(());
        }
        let (_, present) = self.home().list_schedules().await?;
        for stored in moving {
            self.old[0].remove_schedule(&stored.name).await?;
            if present.iter().any(|p| p.name == stored.name) {
                continue;
            }
            self.home()
                .put_schedule(&stored.name, &stored.definition)
                .await?;
            if stored.paused {
                self.home().pause_schedule(&stored.name, true).await?;
            }
            tracing::info!(schedule = %stored.name, "schedule moved to the namespace's new layout");
        }
        Ok(())
    }

    fn keys(&self) -> Vec<&Keys> {
        self.all.iter().map(|s| &s.keys).collect()
    }

    /// Runs `call` on each shard's part of `items` at once (`targets[i]`:
    /// the index in `all` of the shard item `i` goes to) and puts the answers
    /// back in the order of `items`.
    async fn per_shard<T, R, F>(
        &self,
        items: &[T],
        targets: &[usize],
        call: F,
    ) -> Result<Vec<R>, Error>
    where
        T: Clone,
        F: for<'b> Fn(&'b RedisBackend, &'b [T]) -> BoxFuture<'b, Result<Vec<R>, Error>>,
    {
        let mut parts: Vec<(Vec<usize>, Vec<T>)> = vec![(Vec::new(), Vec::new()); self.all.len()];
        for (i, (item, &target)) in items.iter().zip(targets).enumerate() {
            parts[target].0.push(i);
            parts[target].1.push(item.clone());
        }
        let calls = parts
            .iter()
            .zip(&self.all)
            .filter(|(p, _)| !p.0.is_empty())
            .map(|((positions, part), shard)| {
                let answers = call(shard, part);
                async move { answers.await.map(|a| (positions, a)) }
            });
        let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (positions, answers) in try_join_all(calls).await? {
            if answers.len() != positions.len() {
                return Err(Error::Config(format!(
                    "a shard answered {} entries for {}",
                    answers.len(),
                    positions.len()
                )));
            }
            for (&i, answer) in positions.iter().zip(answers) {
                out[i] = Some(answer);
            }
        }
        out.into_iter()
            .collect::<Option<Vec<R>>>()
            .ok_or_else(|| Error::Config("a shard left an entry unanswered".into()))
    }

    /// The shard (index in `all`) of each id in the current layout.
    fn current_targets<'i>(&self, ids: impl Iterator<Item = &'i str>) -> Vec<usize> {
        ids.map(|id| keys::shard_of(id, self.shards.len()))
            .collect()
    }

    /// Where calls about these ids go ([`Self::locate`] for many: one look
    /// per shard of the drained layout).
    async fn locate_all(&self, ids: &[&str]) -> Result<Vec<usize>, Error> {
        let mut targets = self.current_targets(ids.iter().copied());
        if self.old.is_empty() {
            return Ok(targets);
        }
        let n = self.old.len();
        let looks = self.old.iter().enumerate().map(|(o, old)| {
            let mine: Vec<usize> = (0..ids.len())
                .filter(|&i| keys::shard_of(ids[i], n) == o)
                .collect();
            async move {
                let asked: Vec<&str> = mine.iter().map(|&i| ids[i]).collect();
                let live = if asked.is_empty() {
                    Vec::new()
                } else {
                    old.holds_live(&asked).await?
                };
                Ok::<_, Error>((o, mine, live))
            }
        });
        for (o, mine, live) in try_join_all(looks).await? {
            for (i, live) in mine.into_iter().zip(live) {
                if live {
                    targets[i] = self.shards.len() + o;
                }
            }
        }
        Ok(targets)
    }

    /// Where the renewal, progress or outcome of a claimed job goes (its
    /// index in `all`): the layout it was claimed from.
    fn claimed_target(&self, id: &str) -> usize {
        if self.claimed_from_old(id) {
            self.shards.len() + keys::shard_of(id, self.old.len())
        } else {
            keys::shard_of(id, self.shards.len())
        }
    }

    /// [`Self::claimed_target`] of each id.
    fn claimed_targets<'i>(&self, ids: impl Iterator<Item = &'i str>) -> Vec<usize> {
        ids.map(|id| self.claimed_target(id)).collect()
    }
}

/// A cursor of a sharded listing, `<score>:<shard>/<id>`: the shard's own
/// cursor (`<score>:<id>`) with the shard in front of the id, so that it
/// reads as a cursor; an empty id starts that shard.
fn shard_cursor(query: &JobQuery) -> Result<(usize, Option<String>), Error> {
    let Some((score, id)) = query.position()? else {
        return Ok((0, None));
    };
    let (shard, id) = id
        .split_once('/')
        .and_then(|(s, id)| Some((s.parse::<usize>().ok()?, id)))
        .ok_or_else(|| Error::InvalidCursor(format!("{score}:{id}")))?;
    if id.is_empty() {
        return Ok((shard, None));
    }
    Ok((shard, Some(crate::api::listing::cursor(score, id))))
}

impl Backend for ShardedBackend {
    fn config(&self) -> &SchedulerConfig {
        self.home().config()
    }

    fn startup_warnings(&self) -> Vec<String> {
        self.home().startup_warnings()
    }

    fn attach_health(&self, health: &HealthState) {
        for shard in &self.all {
            shard.attach_health(health);
        }
    }

    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        Box::pin(async move {
            if let [job] = jobs {
                return self
                    .locate(&job.id)
                    .await?
                    .enqueue(mode, if_running, jobs)
                    .await;
            }
            let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            let targets = self.locate_all(&ids).await?;
            self.per_shard(jobs, &targets, |shard, part| {
                shard.enqueue(mode, if_running, part)
            })
            .await
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
            // One shard after another from a start the nonce picks (at
            // random, and the same when the claim is sent again), each asked
            // for what is still wanted, until the batch is full. Under load
            // the first shard fills it: one script per claim, as unsharded
            // (asking every shard for a share cost a script per shard per
            // claim, and Redis CPU per job grew with the shards). Shards not
            // visited may have due jobs: the worker is told to claim again
            // as soon as it can, as after any full batch.
            let n = self.all.len();
            let start = keys::shard_of(&ticket.nonce, n);
            let mut merged: Option<Claim> = None;
            let mut left = max;
            let mut unvisited = false;
            for k in 0..n {
                if left == 0 && max > 0 {
                    unvisited = true;
                    break;
                }
                let i = (start + k) % n;
                let mut claim = self.all[i]
                    .claim(worker, left, lease, ticket, serving)
                    .await?;
                if !claim.candidates.is_empty() {
                    let candidates = std::mem::take(&mut claim.candidates);
                    let started = self
                        .limits
                        .grant(
                            self.home(),
                            &self.all[i],
                            &candidates,
                            worker,
                            lease,
                            &ticket.nonce,
                            serving,
                        )
                        .await?;
                    claim.jobs.extend(started);
                }
                left -= claim.jobs.len().min(left);
                if i >= self.shards.len() && !claim.jobs.is_empty() {
                    if let Ok(mut claimed) = self.claimed_old.lock() {
                        claimed.extend(claim.jobs.iter().map(|j| j.id.clone()));
                    }
                }
                match &mut merged {
                    None => merged = Some(claim),
                    Some(m) => {
                        m.next_wake_us = match (m.next_wake_us, claim.next_wake_us) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        m.jobs.extend(claim.jobs);
                        m.rejected.extend(claim.rejected);
                    }
                }
            }
            let mut merged =
                merged.ok_or_else(|| Error::Config("a namespace without shards".into()))?;
            if unvisited {
                merged.next_wake_us = Some(merged.now_us);
            }
            Ok(merged)
        })
    }

    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let targets = self.claimed_targets(finished.iter().map(|f| f.id.as_str()));
            let codes = self
                .per_shard(finished, &targets, |shard, part| shard.complete(part))
                .await?;
            self.limits
                .ended(self.home(), &self.all, finished, &codes)
                .await;
            if !self.old.is_empty() {
                if let Ok(mut claimed) = self.claimed_old.lock() {
                    for (f, code) in finished.iter().zip(&codes) {
                        // A run that goes on (never answered so) keeps its shard.
                        if !code.is_empty() {
                            claimed.remove(&f.id);
                        }
                    }
                }
            }
            Ok(codes)
        })
    }

    fn renew<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let targets = self.claimed_targets(running.iter().map(|r| r.0.as_str()));
            let mut codes = self
                .per_shard(running, &targets, move |shard, part| {
                    let worker = worker.to_string();
                    Box::pin(async move { shard.renew(&worker, lease, part).await })
                })
                .await?;
            self.limits
                .renew(self.home(), lease, running, &mut codes)
                .await?;
            Ok(codes)
        })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(CancelOutcome, Option<String>), Error>> {
        Box::pin(async move { self.locate(id).await?.cancel(id, generation, task).await })
    }

    /// Walks the shards one after another, each in the state's order (a
    /// listing of a sharded namespace is ordered within each shard only).
    fn browse<'a>(&'a self, query: &'a JobQuery) -> BoxFuture<'a, Result<JobPage, Error>> {
        Box::pin(async move {
            let (mut shard, mut cursor) = shard_cursor(query)?;
            let mut page = JobPage {
                jobs: Vec::new(),
                unreadable: Vec::new(),
                next: None,
            };
            while let Some(backend) = self.all.get(shard) {
                let mut part = query.clone();
                part.cursor = cursor.take();
                part.limit = query.limit - page.jobs.len();
                let found = backend.browse(&part).await?;
                page.jobs.extend(found.jobs);
                page.unreadable.extend(found.unreadable);
                // Where the walk goes on: within this shard, or at the start
                // of the next one (none after the last).
                let (next_shard, inner) = match found.next {
                    Some(next) => (shard, next),
                    None if shard + 1 < self.all.len() => (shard + 1, String::new()),
                    None => break,
                };
                let (score, id) = inner.split_once(':').unwrap_or(("0", ""));
                if page.jobs.len() >= query.limit || next_shard == shard {
                    // Full, or short because the filter matched few of the
                    // entries looked at: the caller goes on from here.
                    page.next = Some(crate::api::listing::cursor(
                        score.parse().unwrap_or(0.0),
                        &format!("{next_shard}/{id}"),
                    ));
                    break;
                }
                shard = next_shard;
            }
            Ok(page)
        })
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> BoxFuture<'a, Result<(String, u64, i64), Error>> {
        Box::pin(async move {
            self.locate(id)
                .await?
                .reschedule(id, generation, when)
                .await
        })
    }

    /// A job live in the drained layout is read there; else the current
    /// layout's record or outcome, else an outcome the drained layout kept.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        Box::pin(async move {
            let found = self.locate(id).await?.inspect(id).await?;
            match (found, self.old_of(id)) {
                (None, Some(old)) => old.inspect(id).await,
                (found, _) => Ok(found),
            }
        })
    }

    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            let wanted = offset.saturating_add(count);
            let parts = try_join_all(self.all.iter().map(|s| s.dead_letters(0, wanted))).await?;
            let mut all: Vec<DeadLetter> = parts.into_iter().flatten().collect();
            // Newest first, as in one shard.
            all.sort_by(|a, b| b.failed_at.cmp(&a.failed_at).then(a.job_id.cmp(&b.job_id)));
            Ok(all.into_iter().skip(offset).take(count).collect())
        })
    }

    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async move {
            // Re-queued into the current layout's dead letter first; one
            // left in the drained layout is re-queued there (and drained).
            match (self.of(id).requeue_dead(id, nonce).await?, self.old_of(id)) {
                (None, Some(old)) => old.requeue_dead(id, nonce).await,
                (done, _) => Ok(done),
            }
        })
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let purged = try_join_all(self.all.iter().map(|s| s.purge_dead())).await?;
            Ok(purged.into_iter().sum())
        })
    }

    fn delete_dead<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let here = self.of(id).delete_dead(id).await?;
            let there = match self.old_of(id) {
                Some(old) => old.delete_dead(id).await?,
                None => false,
            };
            Ok(here || there)
        })
    }

    fn add_activity<'a>(&'a self, minutes: &'a [(i64, Tally)]) -> BoxFuture<'a, Result<(), Error>> {
        self.home().add_activity(minutes)
    }

    fn activity(&self, first: i64, count: usize) -> BoxFuture<'_, Result<Vec<Tally>, Error>> {
        self.home().activity(first, count)
    }

    fn counts(&self) -> BoxFuture<'_, Result<JobCounts, Error>> {
        Box::pin(async move {
            let parts = try_join_all(self.all.iter().map(|s| s.counts())).await?;
            let mut total = JobCounts::default();
            for part in parts {
                total.deferred += part.deferred;
                total.queued += part.queued;
                total.running += part.running;
                total.dead_lettered += part.dead_lettered;
            }
            Ok(total)
        })
    }

    fn announce_worker<'a>(
        &'a self,
        id: &'a str,
        queues: &'a [String],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.home().announce_worker(id, queues, ttl)
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueInfo>, Error>> {
        Box::pin(async move {
            let parts = try_join_all(self.all.iter().map(|s| s.queues())).await?;
            let mut merged: Vec<QueueInfo> = Vec::new();
            for info in parts.into_iter().flatten() {
                match merged.iter_mut().find(|q| q.name == info.name) {
                    Some(q) => {
                        q.deferred += info.deferred;
                        q.queued += info.queued;
                        q.waiting += info.waiting;
                        // Workers announce themselves to shard 0 only.
                        q.workers = q.workers.max(info.workers);
                    }
                    None => merged.push(info),
                }
            }
            merged.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(merged)
        })
    }

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        cursor: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        Box::pin(async move {
            // "0" starts (and ends) the walk; else "<shard>|<the shard's cursor>".
            let (shard, inner) = match cursor {
                "0" => (0, "0"),
                other => other
                    .split_once('|')
                    .and_then(|(s, c)| Some((s.parse::<usize>().ok()?, c)))
                    .ok_or_else(|| Error::InvalidCursor(other.chars().take(64).collect()))?,
            };
            let Some(backend) = self.all.get(shard) else {
                return Ok(("0".to_string(), Vec::new()));
            };
            let (next, jobs) = backend.list_pending(task, inner, count).await?;
            let next = match next.as_str() {
                "0" if shard + 1 < self.all.len() => format!("{}|0", shard + 1),
                "0" => "0".to_string(),
                _ => format!("{shard}|{next}"),
            };
            Ok((next, jobs))
        })
    }

    fn audit(&self, lease: Duration) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        Box::pin(async move {
            let parts = try_join_all(self.all.iter().map(|s| s.audit(lease))).await?;
            Ok(parts.into_iter().flatten().collect())
        })
    }

    fn list_schedules(&self) -> BoxFuture<'_, Result<(i64, Vec<Stored>), Error>> {
        self.home().list_schedules()
    }

    fn put_schedule<'a>(
        &'a self,
        name: &'a str,
        definition: &'a Definition,
    ) -> BoxFuture<'a, Result<PutOutcome, Error>> {
        self.home().put_schedule(name, definition)
    }

    fn plan_schedule<'a>(
        &'a self,
        plan: &'a PlanCall,
    ) -> BoxFuture<'a, Result<PlanOutcome, Error>> {
        self.home().plan_schedule(plan)
    }

    fn pause_schedule<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        self.home().pause_schedule(name, paused)
    }

    fn remove_schedule<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        self.home().remove_schedule(name)
    }

    fn drop_old_script_libraries(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        self.home().drop_old_script_libraries()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        Box::pin(async move { self.home().subscribe_notices_of(&self.keys()).await })
    }

    fn subscribe_finished<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Subscription<FinishedNotice>, Error>> {
        Box::pin(async move { self.home().subscribe_finished_of(&self.keys(), token).await })
    }

    fn listen<'a>(
        &'a self,
        kind: Listener,
        token: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            try_join_all(self.all.iter().map(|s| s.listen(kind, token, ttl))).await?;
            Ok(())
        })
    }

    fn subscribe_events(
        &self,
        capacity: usize,
    ) -> BoxFuture<'_, Result<Subscription<EventNotice>, Error>> {
        Box::pin(async move {
            self.home()
                .subscribe_events_of(&self.keys(), capacity)
                .await
        })
    }

    fn progress<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
        attempt: u32,
        progress: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        self.all[self.claimed_target(id)].progress(id, generation, attempt, progress)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        // One connection for all: each shard stops its watches, the
        // connection closes with the first.
        Box::pin(async move {
            for shard in &self.all {
                shard.close().await;
            }
        })
    }
}

/// Whether each id is pending or running, in one script call.
const HOLDS_LIVE: &str = "local out = {} \
for i, id in ipairs(ARGV) do \
  out[i] = (redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', KEYS[2], id) == 1) and 1 or 0 \
end \
return out";

/// Sets the generation counter to at least ARGV[1].
const RAISE_COUNTER: &str = "local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 \
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end \
return 1";

/// The two scripts above, sent by their SHA1 (EVALSHA, loaded again on
/// NOSCRIPT): the text crosses the wire once per server, not once a call.
static HOLDS_LIVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(HOLDS_LIVE));
static RAISE_COUNTER_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(RAISE_COUNTER));

impl RedisBackend {
    /// Whether each of `ids` is pending or running in this namespace.
    async fn holds_live(&self, ids: &[&str]) -> Result<Vec<bool>, Error> {
        let keys = vec![
            self.keys.script_keys[1].clone(),
            self.keys.script_keys[2].clone(),
        ];
        let flags: Vec<i64> = HOLDS_LIVE_SCRIPT
            .evalsha_with_reload(&self.client, keys, ids.to_vec())
            .await
            .map_err(|e| self.error(e))?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// Raises the generation counter to at least `floor`.
    async fn raise_generation_counter(&self, floor: u64) -> Result<(), Error> {
        let _: i64 = RAISE_COUNTER_SCRIPT
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.script_keys[8].clone()],
                vec![floor.to_string()],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}
