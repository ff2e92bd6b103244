//! Carries out a plan's fault schedule against the proxies, worker processes
//! and redis-server of a run, and records each fault with when it was lifted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::event::{now_us, Event, Fault};
use super::plan::{FaultClass, Scheduled};
use super::recorder::Recorder;
use super::workers::WorkerProcess;
use crate::proxy::{Fired, Mode, Proxy, TriggerAction};
use crate::RedisServer;

/// Everything a fault can hit.
pub struct Pool {
    pub bin: String,
    pub ns: String,
    pub dir: PathBuf,
    pub server: RedisServer,
    pub workers: Vec<WorkerProcess>,
    pub producer_proxies: Vec<Arc<Proxy>>,
    pub next_worker: usize,
    /// History files of every worker process, live or gone.
    pub files: Vec<PathBuf>,
    /// Triggers that fired on proxies of workers that are gone: (proxy, fired).
    pub retired: Vec<(String, Fired)>,
    pub recorder: Recorder,
}

impl Pool {
    /// Starts one more worker process.
    pub async fn add_worker(&mut self) {
        let name = format!("w{}", self.next_worker);
        self.next_worker += 1;
        let w =
            WorkerProcess::spawn(&self.bin, self.server.port(), &self.ns, &name, &self.dir).await;
        self.files.push(w.file.clone());
        self.workers.push(w);
    }

    fn take_worker(&mut self, target: u64) -> Option<WorkerProcess> {
        if self.workers.is_empty() {
            return None;
        }
        let i = (target % self.workers.len() as u64) as usize;
        let w = self.workers.remove(i);
        for f in w.proxy.fired() {
            self.retired.push((w.name.clone(), f));
        }
        Some(w)
    }

    /// Every trigger that fired, by proxy name.
    pub fn fired(&self) -> Vec<(String, Fired)> {
        let mut all = self.retired.clone();
        for w in &self.workers {
            all.extend(w.proxy.fired().into_iter().map(|f| (w.name.clone(), f)));
        }
        for (i, p) in self.producer_proxies.iter().enumerate() {
            all.extend(p.fired().into_iter().map(|f| (format!("p{i}"), f)));
        }
        all
    }

    /// Lifts every fault: proxies pass, triggers disarmed, workers resumed.
    pub fn heal(&mut self) {
        for w in &mut self.workers {
            w.proxy.disarm();
            w.proxy.set_mode(Mode::Pass);
            w.resume();
        }
        for p in &self.producer_proxies {
            p.disarm();
            p.set_mode(Mode::Pass);
        }
    }
}

/// Records the fired triggers as faults.
pub fn record_fired(rec: &Recorder, fired: &[(String, Fired)]) {
    for (proxy, f) in fired {
        let kind = match f.action {
            TriggerAction::CloseAfter => "close_after",
            TriggerAction::Duplicate(_) => "duplicate",
            TriggerAction::LoseReply => "lose_reply",
        };
        rec.record(Event::Fault(Fault {
            kind: kind.into(),
            target: format!("{proxy}:{}", f.pattern),
            t: f.t,
            until: None,
        }));
    }
}

fn record(rec: &Recorder, kind: &str, target: &str, t: i64, until: Option<i64>) {
    rec.record(Event::Fault(Fault {
        kind: kind.into(),
        target: target.to_string(),
        t,
        until,
    }));
}

/// Whether a command is one workers send (claim, complete, renew).
fn worker_command(command: &str) -> bool {
    ["_claim", "_complete", "_renew"]
        .iter()
        .any(|c| command.starts_with(c))
}

/// Applies one fault; a fault that lasts is lifted by the returned task.
pub async fn apply(pool: &Arc<Mutex<Pool>>, f: &Scheduled) -> Option<JoinHandle<()>> {
    let mut p = pool.lock().await;
    let rec = p.recorder.clone();
    let lasting = Duration::from_millis(f.duration_ms);
    match f.class {
        FaultClass::CloseAfter | FaultClass::Duplicate => {
            let proxy: &Proxy = if worker_command(f.command) && !p.workers.is_empty() {
                let i = (f.target % p.workers.len() as u64) as usize;
                &p.workers[i].proxy
            } else {
                let i = (f.target % p.producer_proxies.len() as u64) as usize;
                &p.producer_proxies[i]
            };
            if f.class == FaultClass::CloseAfter {
                proxy.close_after(f.command.as_bytes());
            } else {
                proxy.duplicate(f.command.as_bytes(), lasting);
            }
            None
        }
        FaultClass::Delay => {
            let n = p.workers.len() + p.producer_proxies.len();
            let i = (f.target % n as u64) as usize;
            let (name, proxy) = if i < p.workers.len() {
                (p.workers[i].name.clone(), None)
            } else {
                let j = i - p.workers.len();
                (format!("p{j}"), Some(Arc::clone(&p.producer_proxies[j])))
            };
            let per_chunk = Mode::Delay(Duration::from_millis(f.duration_ms / 3));
            match &proxy {
                Some(proxy) => proxy.set_mode(per_chunk),
                None => p.workers[i].proxy.set_mode(per_chunk),
            }
            let t = now_us();
            let pool = Arc::clone(pool);
            Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let p = pool.lock().await;
                match proxy {
                    Some(proxy) => proxy.set_mode(Mode::Pass),
                    None => {
                        if let Some(w) = p.workers.iter().find(|w| w.name == name) {
                            w.proxy.set_mode(Mode::Pass);
                        }
                    }
                }
                record(&p.recorder, "delay", &name, t, Some(now_us()));
            }))
        }
        FaultClass::Blackhole | FaultClass::SigStop => {
            if p.workers.is_empty() {
                return None;
            }
            let i = (f.target % p.workers.len() as u64) as usize;
            let blackhole = f.class == FaultClass::Blackhole;
            if blackhole {
                p.workers[i].proxy.set_mode(Mode::Blackhole);
            } else {
                p.workers[i].pause();
            }
            let name = p.workers[i].name.clone();
            let t = now_us();
            let pool = Arc::clone(pool);
            Some(tokio::spawn(async move {
                tokio::time::sleep(lasting).await;
                let mut p = pool.lock().await;
                if let Some(w) = p.workers.iter_mut().find(|w| w.name == name) {
                    if blackhole {
                        w.proxy.set_mode(Mode::Pass);
                    } else {
                        w.resume();
                    }
                }
                let kind = if blackhole { "blackhole" } else { "sigstop" };
                record(&p.recorder, kind, &name, t, Some(now_us()));
            }))
        }
        FaultClass::SigKill => {
            let w = p.take_worker(f.target)?;
            let name = w.name.clone();
            let t = now_us();
            w.kill(&rec);
            record(&rec, "sigkill", &name, t, None);
            p.add_worker().await;
            None
        }
        FaultClass::WorkerClose => {
            let w = p.take_worker(f.target)?;
            let name = w.name.clone();
            let t = now_us();
            p.add_worker().await;
            drop(p);
            // Closing waits for the grace: do not hold up the schedule.
            Some(tokio::spawn(async move {
                w.terminate(&rec).await;
                record(&rec, "worker_close", &name, t, Some(now_us()));
            }))
        }
        FaultClass::RedisRestart => {
            let t = now_us();
            p.server.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::block_in_place(|| p.server.start_again());
            record(&rec, "redis_restart", "redis", t, Some(now_us()));
            None
        }
    }
}
