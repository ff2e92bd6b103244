//! From a seed to what a run does: each producer's operations (drawn as it
//! goes, from its own generator) and the fault schedule. The same seed gives
//! the same operations and faults; the interleaving with the scheduler's own
//! timing is not replayed exactly, so a failing seed is re-run a few times.

use scheduler::IfRunning;

use super::rng::Rng;
use super::task::HistArgs;

/// The kinds of fault a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultClass {
    /// A proxy forwards one chosen command, then closes the connection: its reply is lost.
    CloseAfter,
    /// A proxy delivers one chosen command a second time, a little later, on another connection.
    Duplicate,
    /// A proxy delays every chunk for a while.
    Delay,
    /// A worker's proxy swallows all traffic for longer than a lease.
    Blackhole,
    /// A worker process is stopped (SIGSTOP) for longer than a lease, then resumed.
    SigStop,
    /// A worker process is killed (SIGKILL) and a new one started.
    SigKill,
    /// A worker process is closed gracefully (SIGTERM: `close()`) and a new one started.
    WorkerClose,
    /// redis-server is killed and started again (AOF, `appendfsync always`).
    RedisRestart,
}

impl FaultClass {
    pub const ALL: [FaultClass; 8] = [
        FaultClass::CloseAfter,
        FaultClass::Duplicate,
        FaultClass::Delay,
        FaultClass::Blackhole,
        FaultClass::SigStop,
        FaultClass::SigKill,
        FaultClass::WorkerClose,
        FaultClass::RedisRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultClass::CloseAfter => "close_after",
            FaultClass::Duplicate => "duplicate",
            FaultClass::Delay => "delay",
            FaultClass::Blackhole => "blackhole",
            FaultClass::SigStop => "sigstop",
            FaultClass::SigKill => "sigkill",
            FaultClass::WorkerClose => "worker_close",
            FaultClass::RedisRestart => "redis_restart",
        }
    }

    pub fn parse(name: &str) -> Option<FaultClass> {
        FaultClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether it needs the network (proxies, processes, a server): the
    /// in-memory backend only closes workers.
    pub fn needs_redis(self) -> bool {
        self != FaultClass::WorkerClose
    }
}

/// The scripts a proxy fault can pick, by the function name's tail as it
/// appears in the RESP bytes of an `FCALL`.
pub const COMMANDS: [&str; 7] = [
    "_claim\r\n",
    "_complete\r\n",
    "_renew\r\n",
    "_enqueue\r\n",
    "_enqueue_one\r\n",
    "_cancel_one\r\n",
    "_dead_letters\r\n",
];

/// The scripts a `Duplicate` fault can pick: every one but `enqueue_one`.
/// The transport never delivers a request twice (TCP does not), and the
/// library's own re-sends carry their request id; a plain
/// first enqueue carries no request id (it would cost a write per enqueue), so
/// a byte-for-byte replay of one that arrives after its job was replaced or
/// finished is not recognised. README states that assumption; every other
/// script is safe under a replay (reply log, claim log, or fencing).
pub const DUPLICABLE: [&str; 6] = [
    "_claim\r\n",
    "_complete\r\n",
    "_renew\r\n",
    "_enqueue\r\n",
    "_cancel_one\r\n",
    "_dead_letters\r\n",
];

/// One fault at a time offset of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub at_ms: u64,
    pub class: FaultClass,
    /// Which worker (index among the live ones) or proxy it hits.
    pub target: u64,
    /// The command it waits for (`CloseAfter`, `Duplicate`).
    pub command: &'static str,
    /// How long it lasts (`Delay`, `Blackhole`, `SigStop`), or the delay of a duplicate.
    pub duration_ms: u64,
}

/// What one seed does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    /// How long producers issue operations.
    pub duration_ms: u64,
    pub producers: usize,
    pub workers: usize,
    /// Job ids are `j0..j{ids}`: few, so operations on one id race.
    pub ids: u64,
    pub faults: Vec<Scheduled>,
}

/// The lease of every worker in a history run.
pub const LEASE_MS: u64 = 1000;

impl Plan {
    /// The plan of `seed` with faults of `classes` (none for an empty list).
    pub fn new(seed: u64, duration_ms: u64, classes: &[FaultClass]) -> Plan {
        let mut rng = Rng::new(seed);
        let producers = rng.range(2, 3) as usize;
        let workers = rng.range(2, 3) as usize;
        let ids = rng.range(6, 12);
        let mut faults = Vec::new();
        if !classes.is_empty() {
            // Every class at least once, then more at random, spread over the
            // run but ending a little before it so the last ones can play out.
            let window = duration_ms.saturating_sub(1500).max(1000);
            let mut kinds: Vec<FaultClass> = classes.to_vec();
            let extra = duration_ms / 1500;
            for _ in 0..extra {
                kinds.push(*rng.pick(classes));
            }
            for class in kinds {
                let duration_ms = match class {
                    FaultClass::Delay => rng.range(200, 1500),
                    FaultClass::Blackhole | FaultClass::SigStop => {
                        rng.range(LEASE_MS * 3 / 2, LEASE_MS * 3)
                    }
                    FaultClass::Duplicate => rng.range(0, 400),
                    _ => 0,
                };
                faults.push(Scheduled {
                    at_ms: rng.range(300, window),
                    class,
                    target: rng.next_u64(),
                    command: if class == FaultClass::Duplicate {
                        DUPLICABLE[rng.below(DUPLICABLE.len() as u64) as usize]
                    } else {
                        COMMANDS[rng.below(COMMANDS.len() as u64) as usize]
                    },
                    duration_ms,
                });
            }
            faults.sort_by_key(|f| f.at_ms);
        }
        Plan {
            seed,
            duration_ms,
            producers,
            workers,
            ids,
            faults,
        }
    }
}

/// One producer operation.
#[derive(Clone, Debug)]
pub enum Op {
    Enqueue {
        id: String,
        args: HistArgs,
    },
    Defer {
        id: String,
        delay_ms: u64,
        args: HistArgs,
    },
    Replace {
        id: String,
        delay_ms: u64,
        policy: IfRunning,
        args: HistArgs,
    },
    Cancel {
        id: String,
    },
    /// Cancel the newest generation of the id this run has seen acknowledged.
    CancelGeneration {
        id: String,
    },
    CancelThenEnqueue {
        id: String,
        args: HistArgs,
    },
    Requeue {
        id: String,
    },
    Observe {
        id: String,
    },
}

/// Arguments of a new job: mostly short, some longer than a lease, some failing.
pub fn job_args(rng: &mut Rng) -> HistArgs {
    let sleep_ms = *rng.pick(&[0, 5, 20, 100, 300, 600, 1200, 1800]);
    HistArgs {
        sleep_ms,
        fail_times: if rng.chance(20) {
            rng.range(1, 2) as u32
        } else {
            0
        },
        permanent: rng.chance(8),
    }
}

/// The next operation of a producer.
pub fn next_op(rng: &mut Rng, ids: u64) -> Op {
    let id = format!("j{}", rng.below(ids));
    let roll = rng.below(100);
    let policies = [IfRunning::Abort, IfRunning::QueueAfter, IfRunning::Keep];
    match roll {
        0..=24 => Op::Enqueue {
            id,
            args: job_args(rng),
        },
        25..=39 => Op::Defer {
            id,
            delay_ms: rng.range(50, 2500),
            args: job_args(rng),
        },
        40..=59 => Op::Replace {
            id,
            delay_ms: if rng.chance(50) {
                0
            } else {
                rng.range(50, 1500)
            },
            policy: *rng.pick(&policies),
            args: job_args(rng),
        },
        60..=69 => Op::Cancel { id },
        70..=77 => Op::CancelGeneration { id },
        78..=84 => Op::CancelThenEnqueue {
            id,
            args: job_args(rng),
        },
        85..=91 => Op::Requeue { id },
        _ => Op::Observe { id },
    }
}
