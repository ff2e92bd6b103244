//! A `redis-server` process owned by one test: started on a free port, killed,
//! paused and restarted at will, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// A port nothing listens on right now (for a server about to start).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// A fresh server without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A fresh server with extra arguments (e.g. `--appendonly yes`).
    ///
    /// A port found free can be taken before redis-server binds it: by
    /// another test's connection, or by the cluster bus port an argument
    /// names, which was found free the same way and can be the same number.
    /// The server then exits at once, and another free port is tried.
    pub fn start_with(args: &[&str]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            if args.contains(&port.to_string().as_str()) {
                continue;
            }
            let dir =
                std::env::temp_dir().join(format!("scheduler-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create redis dir");
            let mut server = RedisServer {
                child: None,
                port,
                dir,
                extra: args.iter().map(|s| s.to_string()).collect(),
            };
            server.launch();
            if server.ready_within(Duration::from_secs(10)) {
                return server;
            }
            // Dropped: killed, its directory removed.
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts the process on this server's port and waits until it answers.
    fn spawn(&mut self) {
        self.launch();
        if !self.ready_within(Duration::from_secs(10)) {
            panic!("redis-server on port {} did not start", self.port);
        }
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--enable-debug-command")
            .arg("local")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Whether it answers PING within `limit`; false at once when the
    /// process exited (its port was taken).
    fn ready_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .cli(&["PING"])
                .map(|o| o.trim() == "PONG")
                .unwrap_or(false)
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Runs `redis-cli` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli_at(self.port, args)
    }

    /// Adds the user `limited` (password `pw`) who may run everything but
    /// `FUNCTION`, so a scheduler connecting as it calls its scripts with
    /// EVALSHA; returns the `user:password` to put in a URL.
    pub fn add_user_without_functions(&self) -> &'static str {
        self.cli(&[
            "ACL",
            "SETUSER",
            "limited",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-function",
        ])
        .expect("ACL SETUSER");
        "limited:pw"
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGKILL, no shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server hangs with connections open.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts again on the same port and directory (data survives only with persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts a killed server again on the same port and directory (after
    /// [`kill`](Self::kill), to stay down for a while without blocking the runtime).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `redis-cli` against a port on loopback; its stdout.
pub fn cli_at(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that exits at once is noticed at once (five waits of 10 s
    /// each would take 50 s), tried on other ports, then reported; one that
    /// starts is returned.
    #[test]
    fn a_server_that_exits_is_tried_again_then_reported() {
        let started = Instant::now();
        let failed = std::panic::catch_unwind(|| RedisServer::start_with(&["--no-such-option"]));
        assert!(failed.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        let server = RedisServer::start();
        assert_eq!(
            server.cli(&["PING"]).map(|o| o.trim().to_string()),
            Some("PONG".into())
        );
    }
}
