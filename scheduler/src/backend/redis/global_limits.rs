//! Concurrency and rate limits across the shards of a sharded namespace.
//!
//! The counts live in one slot, the home shard's (`grants.lua`): which
//! attempts hold a slot, each under a lease like the job's own, and the
//! starts counted against each rate. The jobs stay in their shards. A claim
//! on a shard parks each limited job it meets and returns it as a candidate
//! (`claim.lua`); the worker asks the home shard, which grants or refuses
//! each; the shard then starts the granted ones and moves each refused one to
//! the park of what it waits for (`granted.lua`). Ending a run releases its
//! slot in the home shard, which names the parks waiting for one; the worker
//! lets a job out of each. A release that is lost (the process stopped in
//! between) costs a second: every such park has a timer that lets one job
//! out, and a slot whose lease runs out is free again.
//!
//! The cost: a claim that meets limited jobs takes two more round trips (the
//! home, then the shard again), and ending or renewing a run that holds a
//! slot one more each. Jobs of tasks without limits pay nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::types::Value;

use super::{reply, RedisBackend};
use crate::backend::{Candidate, ClaimedJob, Finished, Serving};
use crate::Error;

/// What the home shard answered for one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Granted, holding a slot (to renew and release).
    Slot,
    /// Granted, holding none (its task has rates only).
    Free,
    /// Refused: the park it waits in (`gs`, `gk`, `gr`, `grk`) and the
    /// instant a rate allows it (0 for a slot).
    Wait { park: String, at_ms: i64 },
}

/// Room for more starts now, for one task (`kind` `t`) or key (`k`).
#[derive(Clone, Debug)]
pub(super) struct Room {
    kind: String,
    task: String,
    key: String,
    starts: i64,
}

/// One attempt holding a slot in the home shard.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    task: String,
    key: String,
    generation: u64,
    attempt: u32,
}

impl Held {
    /// grants.lua's token.
    fn token(&self, id: &str) -> String {
        format!("{id}\0{}\0{}", self.generation, self.attempt)
    }
}

/// The slots this process's running attempts hold, by job id.
#[derive(Clone, Debug, Default)]
pub(super) struct HeldSlots(Arc<Mutex<HashMap<String, Held>>>);

impl HeldSlots {
    fn insert(&self, candidate: &Candidate) {
        if let Ok(mut held) = self.0.lock() {
            held.insert(
                candidate.id.clone(),
                Held {
                    task: candidate.task.clone(),
                    key: candidate.key.clone(),
                    generation: candidate.generation,
                    attempt: candidate.attempt,
                },
            );
        }
    }

    /// The slot attempt (`id`, `generation`, `attempt`) holds, if any.
    fn of(&self, id: &str, generation: u64, attempt: u32) -> Option<Held> {
        let held = self.0.lock().ok()?;
        held.get(id)
            .filter(|h| h.generation == generation && h.attempt == attempt)
            .cloned()
    }

    /// Takes out the slot of attempt (`id`, `generation`, `attempt`).
    fn take(&self, id: &str, generation: u64, attempt: u32) -> Option<Held> {
        let mut held = self.0.lock().ok()?;
        match held.get(id) {
            Some(h) if h.generation == generation && h.attempt == attempt => held.remove(id),
            _ => None,
        }
    }

    /// Takes out the slots of granted candidates that were not started.
    fn take_ids(&self, ids: &[String]) -> Vec<(String, Held)> {
        let Ok(mut held) = self.0.lock() else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| held.remove(id).map(|h| (id.clone(), h)))
            .collect()
    }
}

/// grants.lua's (task, key, token) triples.
fn triples(slots: &[(String, Held)]) -> Vec<Value> {
    let mut args = Vec::with_capacity(slots.len() * 3);
    for (id, held) in slots {
        args.push(held.task.as_str().into());
        args.push(held.key.as_str().into());
        args.push(held.token(id).into());
    }
    args
}

impl RedisBackend {
    /// Asks this (home) shard to grant `candidates`, parked on the shard whose
    /// keys start with `prefix`.
    pub(super) async fn acquire_grants(
        &self,
        lease: Duration,
        serving: &Serving,
        prefix: &str,
        candidates: &[Candidate],
    ) -> Result<(Vec<Verdict>, Vec<Room>), Error> {
        let limits = serving.limit_lines();
        let args = || {
            let mut args: Vec<Value> = Vec::with_capacity(4 + candidates.len() * 5);
            args.push("acquire".into());
            args.push(Value::Integer(lease.as_millis() as i64));
            args.push(limits.as_str().into());
            args.push(prefix.into());
            for c in candidates {
                args.push(c.id.as_str().into());
                args.push(c.task.as_str().into());
                args.push(c.key.as_str().into());
                args.push(Value::Integer(c.generation as i64));
                args.push(Value::Integer(i64::from(c.attempt)));
            }
            args
        };
        let reply = self.call(&self.scripts.grants, args).await?;
        let mut parts = reply::array(reply, "grants")?.into_iter();
        let verdicts = reply::array(parts.next().unwrap_or(Value::Null), "grant verdicts")?
            .into_iter()
            .map(|v| {
                let f = reply::array(v, "grant verdict")?;
                let (kind, at_ms) = match f.as_slice() {
                    [kind, at] => (reply::string(kind), reply::int(at, "grant instant")?),
                    _ => return Err(reply::corrupt("grant verdict")),
                };
                Ok(match kind.as_str() {
                    "slot" => Verdict::Slot,
                    "free" => Verdict::Free,
                    _ => Verdict::Wait { park: kind, at_ms },
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if verdicts.len() != candidates.len() {
            return Err(reply::corrupt("grant verdicts"));
        }
        let rooms = reply::array(parts.next().unwrap_or(Value::Null), "grant rooms")?
            .into_iter()
            .map(|v| {
                let f = reply::array(v, "grant room")?;
                match f.as_slice() {
                    [kind, task, key, starts] => Ok(Room {
                        kind: reply::string(kind),
                        task: reply::string(task),
                        key: reply::string(key),
                        starts: reply::int(starts, "grant room")?,
                    }),
                    _ => Err(reply::corrupt("grant room")),
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((verdicts, rooms))
    }

    /// Starts the granted candidates on this shard, parks the refused ones
    /// and lets jobs out where there is room: the jobs started, and the ids
    /// of granted candidates no longer parked as the claim left them.
    /// Sent once (as a claim): a claim retried with the nonce gets the jobs
    /// back from the claim log.
    pub(super) async fn take_granted(
        &self,
        worker: &str,
        lease: Duration,
        nonce: &str,
        granted: &[&Candidate],
        refused: &[(&Candidate, String, i64)],
        rooms: &[Room],
    ) -> Result<(Vec<ClaimedJob>, Vec<String>), Error> {
        let args = || {
            let mut args: Vec<Value> = vec![
                "take".into(),
                worker.into(),
                Value::Integer(lease.as_millis() as i64),
                nonce.into(),
                self.keys.wake_channel.as_str().into(),
                Value::Integer(granted.len() as i64),
            ];
            for c in granted {
                args.push(c.id.as_str().into());
                args.push(Value::Integer(c.generation as i64));
                args.push(Value::Integer(i64::from(c.attempt)));
            }
            args.push(Value::Integer(refused.len() as i64));
            for (c, park, at) in refused {
                args.push(c.id.as_str().into());
                args.push(park.as_str().into());
                args.push(Value::Integer(*at));
            }
            for room in rooms {
                args.push(room.kind.as_str().into());
                args.push(room.task.as_str().into());
                args.push(room.key.as_str().into());
                args.push(Value::Integer(room.starts));
            }
            args
        };
        let reply = self.send(&self.scripts.granted, args).await?;
        let mut parts = reply::array(reply, "granted")?;
        let lost = match parts.len() {
            6 => parts.pop().unwrap_or(Value::Null),
            _ => return Err(reply::corrupt("granted")),
        };
        let lost = reply::array(lost, "granted lost")?
            .iter()
            .map(reply::string)
            .collect();
        let (claim, _) = super::decode::parse_claim(Value::Array(parts))?;
        Ok((claim.jobs, lost))
    }

    /// Renews the slots of running attempts: 'ok' or 'lost' each.
    async fn renew_grants(
        &self,
        lease: Duration,
        slots: &[(String, Held)],
    ) -> Result<Vec<String>, Error> {
        let args = || {
            let mut args: Vec<Value> =
                vec!["renew".into(), Value::Integer(lease.as_millis() as i64)];
            args.extend(triples(slots));
            args
        };
        let reply = self.call(&self.scripts.grants, args).await?;
        Ok(reply::array(reply, "grant renewals")?
            .iter()
            .map(reply::string)
            .collect())
    }

    /// Releases slots: the parks (of any shard) to let one job out of each.
    async fn release_grants(&self, slots: &[(String, Held)]) -> Result<Vec<String>, Error> {
        let args = || {
            let mut args: Vec<Value> = vec!["release".into()];
            args.extend(triples(slots));
            args
        };
        let reply = self.call(&self.scripts.grants, args).await?;
        Ok(reply::array(reply, "grant releases")?
            .iter()
            .map(reply::string)
            .collect())
    }

    /// Lets up to n jobs out of each of this shard's parks.
    async fn unpark(&self, parks: &[(String, i64)]) -> Result<(), Error> {
        let args = || {
            let mut args: Vec<Value> =
                vec!["unpark".into(), self.keys.wake_channel.as_str().into()];
            for (park, n) in parks {
                args.push(park.as_str().into());
                args.push(Value::Integer(*n));
            }
            args
        };
        self.call(&self.scripts.granted, args).await?;
        Ok(())
    }
}

/// The limits of a sharded namespace as its router applies them: `home`
/// keeps the counts, `shards` are every shard a claim visits.
#[derive(Clone, Debug, Default)]
pub(super) struct GlobalLimits {
    held: HeldSlots,
}

impl GlobalLimits {
    /// Has the candidates of a claim on `shard` granted and starts those it
    /// may: the jobs started.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn grant(
        &self,
        home: &RedisBackend,
        shard: &RedisBackend,
        candidates: &[Candidate],
        worker: &str,
        lease: Duration,
        nonce: &str,
        serving: &Serving,
    ) -> Result<Vec<ClaimedJob>, Error> {
        let prefix = shard.keys.prefix();
        let (verdicts, rooms) = home
            .acquire_grants(lease, serving, &prefix, candidates)
            .await?;
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (c, verdict) in candidates.iter().zip(verdicts) {
            match verdict {
                // Known before the shard is asked: if its reply is lost, a
                // retried claim gets the job back and renews the slot.
                Verdict::Slot => {
                    self.held.insert(c);
                    granted.push(c);
                }
                Verdict::Free => granted.push(c),
                Verdict::Wait { park, at_ms } => refused.push((c, park, at_ms)),
            }
        }
        let (jobs, lost) = shard
            .take_granted(worker, lease, nonce, &granted, &refused, &rooms)
            .await?;
        let unused = self.held.take_ids(&lost);
        if !unused.is_empty() {
            if let Err(e) = self
                .release(home, std::slice::from_ref(shard), &unused)
                .await
            {
                tracing::warn!(error = %e, count = unused.len(), "unused grants could not be released; they are free once their lease runs out");
            }
        }
        Ok(jobs)
    }

    /// Releases the slots of ended attempts (outcome recorded: `codes[i]`
    /// not empty) and lets a waiting job out for each, on whichever of
    /// `shards` waits.
    pub(super) async fn ended(
        &self,
        home: &RedisBackend,
        shards: &[RedisBackend],
        finished: &[Finished],
        codes: &[String],
    ) {
        let ended: Vec<(String, Held)> = finished
            .iter()
            .zip(codes)
            .filter(|(_, code)| !code.is_empty())
            .filter_map(|(f, _)| {
                self.held
                    .take(&f.id, f.generation, f.attempt)
                    .map(|h| (f.id.clone(), h))
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        if let Err(e) = self.release(home, shards, &ended).await {
            tracing::warn!(error = %e, count = ended.len(), "slots could not be released; they are free once their lease runs out");
        }
    }

    async fn release(
        &self,
        home: &RedisBackend,
        shards: &[RedisBackend],
        slots: &[(String, Held)],
    ) -> Result<(), Error> {
        let parks = home.release_grants(slots).await?;
        if parks.is_empty() {
            return Ok(());
        }
        let prefixes: Vec<String> = shards.iter().map(|s| s.keys.prefix()).collect();
        let mut by_shard: HashMap<usize, Vec<(String, i64)>> = HashMap::new();
        for park in parks {
            let Some(at) = prefixes.iter().position(|p| park.starts_with(p.as_str())) else {
                continue;
            };
            let entries = by_shard.entry(at).or_default();
            match entries.iter_mut().find(|(p, _)| *p == park) {
                Some((_, n)) => *n += 1,
                None => entries.push((park, 1)),
            }
        }
        for (at, parks) in by_shard {
            shards[at].unpark(&parks).await?;
        }
        Ok(())
    }

    /// Renews the slots of the running attempts among `running` whose shard
    /// answered `codes`: a slot that ran out turns its code to 'lost' (the
    /// run stops), as a lease that ran out does.
    pub(super) async fn renew(
        &self,
        home: &RedisBackend,
        lease: Duration,
        running: &[(String, u64, u32)],
        codes: &mut [String],
    ) -> Result<(), Error> {
        let mut at = Vec::new();
        let mut slots = Vec::new();
        for (i, (id, generation, attempt)) in running.iter().enumerate() {
            if codes[i] == "lost" {
                continue;
            }
            if let Some(held) = self.held.of(id, *generation, *attempt) {
                at.push(i);
                slots.push((id.clone(), held));
            }
        }
        if slots.is_empty() {
            return Ok(());
        }
        let answers = home.renew_grants(lease, &slots).await?;
        for (i, answer) in at.into_iter().zip(answers) {
            if answer == "lost" {
                codes[i] = answer;
            }
        }
        Ok(())
    }
}
