//! The state of one in-memory store: the Redis layout as Rust collections.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::backend::EnqueueReply;
use crate::FinishedState;

/// A sorted set: the `ZSET` of the Redis layout (score, then id).
#[derive(Debug, Default)]
pub(super) struct ScoreSet {
    pub(super) by_id: HashMap<String, i64>,
    pub(super) ordered: BTreeSet<(i64, String)>,
}

impl ScoreSet {
    pub(super) fn add(&mut self, id: &str, score: i64) {
        if let Some(old) = self.by_id.insert(id.to_string(), score) {
            self.ordered.remove(&(old, id.to_string()));
        }
        self.ordered.insert((score, id.to_string()));
    }

    pub(super) fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            self.ordered.remove(&(old, id.to_string()));
        }
    }

    pub(super) fn score(&self, id: &str) -> Option<i64> {
        self.by_id.get(id).copied()
    }

    /// Up to `limit` entries with a score at most `max`, lowest first.
    pub(super) fn up_to(&self, max: i64, limit: usize) -> Vec<(String, i64)> {
        self.ordered
            .iter()
            .take_while(|(score, _)| *score <= max)
            .take(limit)
            .map(|(score, id)| (id.clone(), *score))
            .collect()
    }

    /// How many entries have a score at most `max`.
    pub(super) fn count_up_to(&self, max: i64) -> usize {
        self.ordered
            .iter()
            .take_while(|(score, _)| *score <= max)
            .count()
    }

    pub(super) fn first(&self) -> Option<i64> {
        self.ordered.iter().next().map(|(score, _)| *score)
    }

    pub(super) fn len(&self) -> usize {
        self.ordered.len()
    }

    pub(super) fn pop_min(&mut self, n: usize) -> Vec<String> {
        let ids: Vec<String> = self
            .ordered
            .iter()
            .take(n)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    pub(super) fn clear(&mut self) {
        self.by_id.clear();
        self.ordered.clear();
    }
}

/// A job's queue, priority and limit key (`None`, 0, `None` by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Route {
    pub(super) queue: Option<String>,
    pub(super) priority: i8,
    pub(super) limit_key: Option<String>,
}

/// The park names of common.lua (`{ns}:` left out).
pub(super) fn task_park(task: &str) -> String {
    format!(":park:t:{task}")
}
pub(super) fn key_park(task: &str, key: &str) -> String {
    format!(":park:k:{}:{task}:{key}", task.len())
}
pub(super) fn unserved_park(queue: &str, task: &str) -> String {
    format!(":park:u:{}:{queue}:{task}", queue.len())
}
pub(super) fn rate_park(task: &str) -> String {
    format!(":park:r:{task}")
}
pub(super) fn key_rate_park(task: &str, key: &str) -> String {
    format!(":park:rk:{}:{task}:{key}", task.len())
}
pub(super) fn rate_log(task: &str) -> String {
    format!(":rate:t:{task}")
}
pub(super) fn key_rate_log(task: &str, key: &str) -> String {
    format!(":rate:k:{}:{task}:{key}", task.len())
}
pub(super) fn task_slot(task: &str) -> String {
    format!("t:{task}")
}
pub(super) fn key_slot(task: &str, key: &str) -> String {
    format!("k:{}:{task}:{key}", task.len())
}

/// A job record (the msgpack array of `common.lua`).
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub(super) task: String,
    pub(super) payload: Vec<u8>,
    pub(super) generation: u64,
    pub(super) attempts: u32,
    pub(super) max_attempts: u32,
    pub(super) enqueued_ms: i64,
    pub(super) nonce: String,
    pub(super) last_error: Option<String>,
    pub(super) run_at: Option<i64>,
    pub(super) started_ms: Option<i64>,
    pub(super) worker: Option<String>,
    pub(super) cancel: bool,
    pub(super) blocked: Option<i64>,
    /// The last progress the running attempt reported (JSON).
    pub(super) progress: Option<String>,
    /// The `traceparent` it was enqueued in.
    pub(super) trace: Option<String>,
    /// Its queue (`None`: the default queue).
    pub(super) queue: Option<String>,
    pub(super) priority: i8,
    pub(super) limit_key: Option<String>,
    /// The park a pending job waits in (common.lua's park key names).
    pub(super) parked: Option<String>,
    /// A running job's slots: 1 its task's, 2 also its key's.
    pub(super) slots: u8,
}

#[derive(Clone, Debug)]
pub(super) struct Outcome {
    pub(super) generation: u64,
    pub(super) state: FinishedState,
    pub(super) result: String,
    pub(super) error: String,
    pub(super) task: String,
    pub(super) attempts: u32,
    pub(super) enqueued_ms: i64,
    pub(super) started_ms: Option<i64>,
    pub(super) finished_ms: i64,
    pub(super) run_at: Option<i64>,
    pub(super) max_attempts: u32,
    /// The nonce of the request that created the job.
    pub(super) nonce: String,
    /// The last progress its attempts reported (JSON).
    pub(super) progress: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct DeadEntry {
    pub(super) task: String,
    pub(super) generation: u64,
    pub(super) attempts: u32,
    pub(super) reason: String,
    pub(super) failed_ms: i64,
    pub(super) payload: Vec<u8>,
    pub(super) max_attempts: u32,
    pub(super) queue: Option<String>,
    pub(super) priority: i8,
    pub(super) limit_key: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) due: ScoreSet,
    pub(super) pending: HashMap<String, Record>,
    pub(super) active: HashMap<String, Record>,
    pub(super) leases: ScoreSet,
    pub(super) results: HashMap<String, Outcome>,
    pub(super) results_exp: ScoreSet,
    pub(super) dead: HashMap<String, DeadEntry>,
    pub(super) dead_order: ScoreSet,
    /// Workers' activity counts per minute (the `activity:<minute>` hashes).
    pub(super) activity: BTreeMap<i64, crate::ops::activity::Tally>,
    pub(super) seq: u64,
    /// The reply log of requests with the caller's request id (common.lua
    /// `logged`): key -> the first reply, and when it expires.
    pub(super) replies: HashMap<String, EnqueueReply>,
    pub(super) replies_exp: ScoreSet,
    /// Periodic schedules by name (`{ns}:schedules`).
    pub(super) schedules: HashMap<String, crate::periodic::store::Stored>,
    /// The jobs waiting for a slot or a worker, by park (common.lua's park
    /// key names); a parked job has no `due` entry.
    pub(super) parks: BTreeMap<String, ScoreSet>,
    /// Running jobs holding a slot, per `slots` field ('t:<task>', 'k:...').
    pub(super) slots: HashMap<String, i64>,
    /// (queue, task) of the jobs parked for want of a worker that runs them.
    pub(super) unserved: BTreeSet<(String, String)>,
    /// Start times per rate log (common.lua's `rate:` lists), newest first.
    pub(super) rate_logs: HashMap<String, std::collections::VecDeque<i64>>,
    /// Rate parks' timers (`timers`).
    pub(super) timers: ScoreSet,
    /// Rate park -> (count, window ms, log) (`rates`).
    pub(super) rates: HashMap<String, (u32, i64, String)>,
    /// Every queue but `default` a job was ever enqueued to (`{ns}:queues`).
    pub(super) known_queues: BTreeSet<String>,
    /// Live workers: id -> (the queues they serve, until when).
    pub(super) workers: HashMap<String, (Vec<String>, i64)>,
}
