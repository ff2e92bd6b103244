//! Reading the dead letters and the pending list, the operator's requeue and
//! purge or deletion of dead letters, the workers' activity counts, and the
//! audit walk: the script calls behind the
//! [`Backend`](crate::backend::Backend) methods that are not job transitions.

use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;

use crate::backend::redis::calls::Request;
use crate::backend::redis::reply::corrupt;
use crate::backend::redis::{reply, RedisBackend, AUDIT_PAGE};
use crate::backend::RawPending;
use crate::ops::activity::{Tally, FIELDS, FIELD_COUNT, KEEP_MINUTES};
use crate::{DeadLetter, Error, JobCounts};

impl RedisBackend {
    pub(super) async fn dead_letters_call(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        // The dead letter holds at most dead_letter_cap (a u32) entries:
        // larger values mean the same and stay exact in Lua's doubles.
        let bound = |n: usize| Value::Integer(n.min(u32::MAX as usize) as i64);
        let args = || -> Vec<Value> { vec!["list".into(), bound(offset), bound(count)] };
        // Read-only: nothing to record (ttl 0).
        let read = Request {
            id: String::new(),
            ttl_ms: 0,
        };
        let reply = reply::array(
            self.call_logged(&self.scripts.dead_letters, &read, args)
                .await?,
            "dead",
        )?;
        reply
            .into_iter()
            .map(|entry| {
                let f = reply::array(entry, "dead entry")?;
                let get = |i: usize| f.get(i).cloned().unwrap_or(Value::Null);
                Ok(DeadLetter {
                    job_id: reply::string(&get(0)),
                    task: Some(reply::string(&get(1))).filter(|s| !s.is_empty()),
                    generation: reply::opt_int(&get(2)).filter(|g| *g > 0).map(|g| g as u64),
                    attempts: reply::opt_int(&get(3)).unwrap_or(0) as u32,
                    reason: reply::string(&get(4)),
                    failed_at: reply::opt_time(&get(5)),
                })
            })
            .collect()
    }

    pub(super) async fn requeue_dead_call(
        &self,
        id: &str,
        nonce: &str,
    ) -> Result<Option<u64>, Error> {
        let args = || -> Vec<Value> {
            vec![
                "requeue".into(),
                id.into(),
                nonce.into(),
                self.keys.wake_channel.as_str().into(),
            ]
        };
        let reply = reply::array(
            self.call_logged(&self.scripts.dead_letters, &self.request(), args)
                .await?,
            "requeue",
        )?;
        let code = reply.first().map(reply::string).unwrap_or_default();
        Ok((code == "requeued").then(|| reply.get(1).and_then(reply::opt_int).unwrap_or(0) as u64))
    }

    pub(super) async fn purge_dead_call(&self) -> Result<u64, Error> {
        let reply = reply::array(
            self.call_logged(&self.scripts.dead_letters, &self.request(), || {
                vec!["purge".into()]
            })
            .await?,
            "purge",
        )?;
        Ok(reply.first().and_then(reply::opt_int).unwrap_or(0) as u64)
    }

    pub(super) async fn delete_dead_call(&self, id: &str) -> Result<bool, Error> {
        let reply = reply::array(
            self.call_logged(&self.scripts.dead_letters, &self.request(), || {
                vec!["delete".into(), id.into()]
            })
            .await?,
            "delete",
        )?;
        Ok(reply.first().and_then(reply::opt_int).unwrap_or(0) > 0)
    }

    /// One pipeline of `HINCRBY`s per minute's hash, each kept
    /// [`KEEP_MINUTES`] from its last addition. Not re-sent: a lost reply
    /// loses (or, applied, keeps) these counts, as documented.
    pub(super) async fn add_activity_call(&self, minutes: &[(i64, Tally)]) -> Result<(), Error> {
        let pipeline = self.client.pipeline();
        for (minute, tally) in minutes {
            let key = self.keys.activity(*minute);
            for (field, n) in FIELDS.iter().zip(tally).filter(|(_, n)| **n > 0) {
                let _: () = pipeline
                    .hincrby(&key, *field, *n as i64)
                    .await
                    .map_err(|e| self.error(e))?;
            }
            let _: () = pipeline
                .pexpire(&key, KEEP_MINUTES * 60_000, None)
                .await
                .map_err(|e| self.error(e))?;
        }
        let _: Vec<Value> = pipeline.all().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// One pipeline of `HMGET`s, a minute each.
    pub(super) async fn activity_call(
        &self,
        first: i64,
        count: usize,
    ) -> Result<Vec<Tally>, Error> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        for minute in first..first + count as i64 {
            let _: () = pipeline
                .hmget(self.keys.activity(minute), FIELDS.to_vec())
                .await
                .map_err(|e| self.error(e))?;
        }
        let replies: Vec<Value> = pipeline.all().await.map_err(|e| self.error(e))?;
        replies
            .iter()
            .map(|minute| {
                let mut tally = [0; FIELD_COUNT];
                let fields = match minute {
                    Value::Array(fields) => fields.as_slice(),
                    _ => return Err(corrupt("activity")),
                };
                for (sum, field) in tally.iter_mut().zip(fields) {
                    *sum = reply::opt_int(field).unwrap_or(0).max(0) as u64;
                }
                Ok(tally)
            })
            .collect()
    }

    /// Announces (or with `None` withdraws) worker `id` and its queues:
    /// one pipeline, not a script (nothing else depends on it atomically).
    /// The expiry is this process's clock, compared with Redis time when
    /// read: a few seconds of skew shift when a stopped worker drops out.
    pub(super) async fn announce_worker_call(
        &self,
        id: &str,
        queues: &[String],
        ttl: Option<std::time::Duration>,
    ) -> Result<(), Error> {
        let workers = self.keys.named("workers");
        let served = self.keys.named("worker_queues");
        // Workers that stopped without withdrawing (killed) drop out here, a
        // minute after their last announcement: both structures stay as
        // small as the set of live workers.
        let now = chrono::Utc::now().timestamp_millis();
        let stale: Vec<String> = match ttl {
            Some(_) => self
                .client
                .zrangebyscore(
                    &workers,
                    f64::NEG_INFINITY,
                    (now - 60_000) as f64,
                    false,
                    None,
                )
                .await
                .map_err(|e| self.error(e))?,
            None => Vec::new(),
        };
        let pipeline = self.client.pipeline();
        if !stale.is_empty() {
            let _: () = pipeline
                .zrem(&workers, stale.clone())
                .await
                .map_err(|e| self.error(e))?;
            let _: () = pipeline
                .hdel(&served, stale)
                .await
                .map_err(|e| self.error(e))?;
        }
        match ttl {
            Some(ttl) => {
                let until = now + ttl.as_millis() as i64;
                let _: () = pipeline
                    .zadd(&workers, None, None, false, false, (until as f64, id))
                    .await
                    .map_err(|e| self.error(e))?;
                let _: () = pipeline
                    .hset(&served, (id, queues.join("\n")))
                    .await
                    .map_err(|e| self.error(e))?;
            }
            None => {
                let _: () = pipeline
                    .zrem(&workers, id)
                    .await
                    .map_err(|e| self.error(e))?;
                let _: () = pipeline
                    .hdel(&served, id)
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        let _: Vec<Value> = pipeline.all().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn queues_call(&self) -> Result<Vec<crate::QueueInfo>, Error> {
        let rows = reply::array(
            self.call(&self.scripts.counts, || vec!["queues".into()])
                .await?,
            "queues",
        )?;
        rows.into_iter()
            .map(|row| {
                let fields = reply::array(row, "queue")?;
                let [name, deferred, queued, waiting, workers] = fields.as_slice() else {
                    return Err(corrupt("queue"));
                };
                let n = |v: &Value| reply::opt_int(v).unwrap_or(0).max(0) as u64;
                Ok(crate::QueueInfo {
                    name: reply::string(name),
                    deferred: n(deferred),
                    queued: n(queued),
                    waiting: n(waiting),
                    workers: n(workers),
                })
            })
            .collect()
    }

    pub(super) async fn counts_call(&self) -> Result<JobCounts, Error> {
        let reply = reply::array(self.call(&self.scripts.counts, Vec::new).await?, "counts")?;
        let [deferred, queued, running, dead_lettered] = reply.as_slice() else {
            return Err(corrupt("counts"));
        };
        let count = |v: &Value| reply::int(v, "count").map(|n| n.max(0) as u64);
        Ok(JobCounts {
            deferred: count(deferred)?,
            queued: count(queued)?,
            running: count(running)?,
            dead_lettered: count(dead_lettered)?,
        })
    }

    pub(super) async fn list_pending_call(
        &self,
        task: Option<&str>,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<RawPending>), Error> {
        let args = || -> Vec<Value> {
            vec![
                task.unwrap_or("").into(),
                cursor.into(),
                Value::Integer(count as i64),
            ]
        };
        let reply = reply::array(self.call(&self.scripts.list, args).await?, "list")?;
        let mut items = reply.into_iter();
        let next = reply::string(&items.next().unwrap_or(Value::Null));
        let mut entries = Vec::new();
        for entry in items {
            let f = reply::array(entry, "list entry")?;
            if f.len() < 6 {
                return Err(corrupt("list entry fields"));
            }
            let mut f = f.into_iter();
            let mut next_field = || f.next().unwrap_or(Value::Null);
            entries.push(RawPending {
                id: reply::string(&next_field()),
                task: reply::string(&next_field()),
                generation: reply::opt_int(&next_field()).unwrap_or(0) as u64,
                run_at_ms: reply::opt_int(&next_field()).unwrap_or(0),
                attempts: reply::opt_int(&next_field()).unwrap_or(0) as u32,
                payload: reply::bytes(next_field()),
            });
        }
        Ok((next, entries))
    }

    pub(super) async fn audit_call(&self, lease: Duration) -> Result<Vec<(String, String)>, Error> {
        // A namespace moved to a newer layout under this process: nothing
        // here may be read or repaired with this version's idea of it.
        self.check_layout().await?;
        let args = |mode: &'static str, cursor: &str| -> Vec<Value> {
            vec![
                mode.into(),
                cursor.into(),
                Value::Integer(AUDIT_PAGE),
                Value::Integer(i64::from(self.config.dead_letter_cap)),
                Value::Integer(self.keep_ms()),
                Value::Integer(lease.as_millis() as i64),
            ]
        };
        let counts: Vec<i64> = reply::array(
            self.call(&self.scripts.audit, || args("count", "0"))
                .await?,
            "audit counts",
        )?
        .iter()
        .map(|v| reply::opt_int(v).unwrap_or(0))
        .collect();
        let [pending, due, active, leases] = counts[..] else {
            return Err(corrupt("audit counts"));
        };
        // Every script keeps these pairs in step: only a difference is
        // worth a walk over the namespace.
        // The slot counts are checked against the running records every
        // time (a page of its own: the running jobs, a bounded set).
        let mut walks = vec!["slots"];
        if pending != due {
            walks.extend(["pending", "due", "far"]);
        }
        if active != leases {
            walks.extend(["active", "leases", "held"]);
        }
        let mut repaired = Vec::new();
        for mode in walks {
            let mut cursor = "0".to_string();
            loop {
                let reply = reply::array(
                    self.call(&self.scripts.audit, || args(mode, &cursor))
                        .await?,
                    "audit",
                )?;
                let mut items = reply.into_iter();
                cursor = reply::string(&items.next().unwrap_or(Value::Null));
                for entry in items {
                    let fields = reply::array(entry, "audit entry")?;
                    let text = |i: usize| fields.get(i).map(reply::string).unwrap_or_default();
                    repaired.push((text(0), text(1)));
                }
                if cursor == "0" {
                    break;
                }
            }
        }
        Ok(repaired)
    }
}
