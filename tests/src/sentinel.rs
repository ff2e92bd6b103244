//! A private Sentinel setup: one master, two replicas (so that after a
//! failover the new master still has one), three sentinels.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{free_port, RedisServer};

pub const SERVICE: &str = "mymaster";

pub struct SentinelSetup {
    pub master: RedisServer,
    pub replicas: Vec<RedisServer>,
    sentinels: Vec<(Child, u16)>,
    dir: PathBuf,
}

impl SentinelSetup {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let master_port = master.port().to_string();
        let replicas: Vec<RedisServer> = (0..2)
            .map(|_| {
                RedisServer::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--replicaof",
                    "127.0.0.1",
                    &master_port,
                ])
            })
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "scheduler-sentinel-{}-{}",
            std::process::id(),
            master.port()
        ));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 3000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir.display()
                ),
            )
            .expect("sentinel conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            sentinels.push((child, port));
        }
        let setup = SentinelSetup {
            master,
            replicas,
            sentinels,
            dir,
        };
        setup.wait_replica_in_sync();
        setup
    }

    fn wait_replica_in_sync(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let synced = self.replicas.iter().all(|r| {
                r.cli(&["INFO", "replication"])
                    .is_some_and(|i| i.contains("master_link_status:up"))
            });
            let watched = self.sentinels.iter().all(|(_, port)| {
                crate::redis_server::cli_at(*port, &["SENTINEL", "replicas", SERVICE]).is_some_and(
                    |o| {
                        self.replicas
                            .iter()
                            .all(|r| o.contains(&r.port().to_string()))
                    },
                )
            });
            if synced && watched {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sentinel setup did not settle");
    }

    pub fn url(&self) -> String {
        let first = self.sentinels[0].1;
        let others: Vec<String> = self.sentinels[1..]
            .iter()
            .map(|(_, p)| format!("node=127.0.0.1:{p}"))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{first}?sentinelServiceName={SERVICE}&{}",
            others.join("&")
        )
    }

    /// The port sentinels currently name as master.
    pub fn master_port(&self) -> Option<u16> {
        let out = crate::redis_server::cli_at(
            self.sentinels[0].1,
            &["SENTINEL", "get-master-addr-by-name", SERVICE],
        )?;
        out.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
