//! Worker processes the tests can kill, pause and resume, with the events they report.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One line a child worker printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub job_id: String,
    pub generation: u64,
    pub attempt: u32,
    pub pid: u32,
    /// Microseconds since the epoch.
    pub t: i64,
}

/// Events of every child worker of one test, in arrival order.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event == event)
            .count()
    }

    /// Waits for an event of one process.
    pub async fn wait_pid(&self, event: &str, pid: u32, limit: Duration) -> bool {
        crate::wait_until(limit, || {
            self.0
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.event == event && e.pid == pid)
        })
        .await
    }

    /// Waits for an event of one job, from any process.
    pub async fn wait_job(&self, event: &str, job_id: &str, limit: Duration) -> bool {
        crate::wait_until(limit, || {
            self.0
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.event == event && e.job_id == job_id)
        })
        .await
    }

    /// Waits for an event of one job in one process.
    pub async fn wait_job_pid(&self, event: &str, job_id: &str, pid: u32, limit: Duration) -> bool {
        crate::wait_until(limit, || {
            self.0
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.event == event && e.job_id == job_id && e.pid == pid)
        })
        .await
    }

    pub async fn wait(&self, event: &str, n: usize, limit: Duration) -> bool {
        crate::wait_until(limit, || self.count(event) >= n).await
    }
}

pub struct ChildWorker {
    child: Child,
}

impl ChildWorker {
    /// Spawns `probe-worker` (path from `CARGO_BIN_EXE_probe-worker`) and waits until it is ready.
    pub async fn spawn(
        bin: &str,
        url: &str,
        namespace: &str,
        lease_ms: u64,
        heartbeat_ms: u64,
        concurrency: usize,
        events: &Events,
    ) -> Self {
        Self::spawn_with_env(
            bin,
            url,
            namespace,
            (lease_ms, heartbeat_ms, concurrency),
            &[],
            events,
        )
        .await
    }

    /// [`spawn`](Self::spawn) with extra environment variables (e.g. `SSL_CERT_FILE`);
    /// `worker` is (lease ms, heartbeat ms, concurrency).
    pub async fn spawn_with_env(
        bin: &str,
        url: &str,
        namespace: &str,
        worker: (u64, u64, usize),
        env: &[(&str, &str)],
        events: &Events,
    ) -> Self {
        let (lease_ms, heartbeat_ms, concurrency) = worker;
        let mut child = Command::new(bin)
            .envs(env.iter().copied())
            .args([
                url,
                namespace,
                &lease_ms.to_string(),
                &heartbeat_ms.to_string(),
                &concurrency.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn probe-worker");
        let stdout = child.stdout.take().expect("stdout");
        let pid = child.id();
        let ready = Arc::new(Mutex::new(false));
        let ready_flag = Arc::clone(&ready);
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let event = v["event"].as_str().unwrap_or_default().to_string();
                if event == "ready" {
                    *ready_flag.lock().unwrap() = true;
                    continue;
                }
                sink.0.lock().unwrap().push(Event {
                    event,
                    job_id: v["job_id"].as_str().unwrap_or_default().to_string(),
                    generation: v["generation"].as_u64().unwrap_or(0),
                    attempt: v["attempt"].as_u64().unwrap_or(0) as u32,
                    pid: v["pid"].as_u64().unwrap_or(u64::from(pid)) as u32,
                    t: v["t"].as_i64().unwrap_or(0),
                });
            }
        });
        assert!(
            crate::wait_until(Duration::from_secs(20), || *ready.lock().unwrap()).await,
            "probe-worker did not become ready"
        );
        ChildWorker { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended (crashed, aborted, killed).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
