//! The workers of a run: `history-worker` processes (Redis), each behind its
//! own proxy and appending its runs to its own file, or in-process workers
//! (memory backend). Every worker that goes away is recorded as a `gone`
//! fault, so the checker knows when its unfinished runs ended.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scheduler::{Scheduler, WorkerConfig};

use super::event::{now_us, Event, Fault};
use super::plan::LEASE_MS;
use super::recorder::{load, Recorder};
use super::task::{HistTask, WorkerName};
use crate::proxy::Proxy;

/// The worker settings of every history run: 1 s lease, 300 ms heartbeat,
/// 4 jobs at once, 300 ms grace, 50–200 ms retries, 1 s `max_idle`.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        lease: Duration::from_millis(LEASE_MS),
        heartbeat: Some(Duration::from_millis(300)),
        shutdown_grace: Duration::from_millis(300),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_idle: Duration::from_secs(1),
        ..WorkerConfig::default()
    }
}

/// A `history-worker` process and its proxy.
pub struct WorkerProcess {
    pub name: String,
    pub file: PathBuf,
    pub proxy: Proxy,
    child: Child,
    pub stopped: bool,
}

impl WorkerProcess {
    /// Starts one behind a new proxy to `redis_port`; waits until it is ready.
    pub async fn spawn(
        bin: &str,
        redis_port: u16,
        ns: &str,
        name: &str,
        dir: &std::path::Path,
    ) -> Self {
        let proxy = Proxy::start(redis_port).await;
        let file = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new(bin)
            .args([&proxy.url(), ns, name, &file.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn history-worker");
        let stdout = child.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(stdout);
            let ok = reader.read_line(&mut line).is_ok() && line.contains("ready");
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                    sink.clear();
                }
            });
            ok
        });
        let ok = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .map(|r| r.unwrap_or(false))
            .unwrap_or(false);
        assert!(ok, "history-worker {name} did not become ready");
        WorkerProcess {
            name: name.to_string(),
            file,
            proxy,
            child,
            stopped: false,
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn pause(&mut self) {
        self.signal("STOP");
        self.stopped = true;
    }

    pub fn resume(&mut self) {
        self.signal("CONT");
        self.stopped = false;
    }

    /// SIGKILL; records `gone`.
    pub fn kill(mut self, rec: &Recorder) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        gone(rec, &self.name);
        self.file.clone()
    }

    /// SIGTERM (the worker calls `close()`), waits up to 5 s, then SIGKILL; records `gone`.
    pub async fn terminate(mut self, rec: &Recorder) -> PathBuf {
        self.resume();
        self.signal("TERM");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        gone(rec, &self.name);
        self.file.clone()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gone(rec: &Recorder, name: &str) {
    rec.record(Event::Fault(Fault {
        kind: "gone".into(),
        target: name.to_string(),
        t: now_us(),
        until: None,
    }));
}

/// The events of the worker files, merged.
pub fn merge(files: &[PathBuf]) -> Vec<Event> {
    files.iter().flat_map(|f| load(f)).collect()
}

/// An in-process worker on the memory backend (it shares the test's recorder).
pub struct MemoryWorker {
    pub name: String,
    pub scheduler: Scheduler,
}

impl MemoryWorker {
    pub async fn start(url: &str, ns: &str, name: &str, rec: &Recorder) -> Self {
        let scheduler = Scheduler::builder(url)
            .namespace(ns)
            .register::<HistTask>()
            .provide(rec.clone())
            .provide(WorkerName(name.to_string()))
            .worker(worker_config())
            .start()
            .await
            .expect("in-process worker starts");
        MemoryWorker {
            name: name.to_string(),
            scheduler,
        }
    }

    /// `close()`; records `gone` (its dropped runs record their own ends).
    pub async fn close(self, rec: &Recorder) {
        self.scheduler.close().await;
        gone(rec, &self.name);
    }
}
