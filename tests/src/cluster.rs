//! A private 3-master Redis Cluster on free ports, for the scale-out tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters, no replicas, all 16,384 slots assigned.
    pub fn start() -> Self {
        Self::start_nodes(3, 0)
    }

    /// Three masters with one replica each (six nodes), every replica in sync.
    pub fn start_with_replicas() -> Self {
        let cluster = Self::start_nodes(6, 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let synced = cluster.masters().iter().all(|&m| {
                cluster.nodes[m]
                    .cli(&["INFO", "replication"])
                    .is_some_and(|i| i.contains("connected_slaves:1") && i.contains("state=online"))
            });
            if synced {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replicas did not come online");
    }

    fn start_nodes(count: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                // The cluster bus on a free port of its own: by default it is
                // the port + 10,000, which may be taken (or above 65,535).
                let bus = crate::redis_server::free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-port",
                    &bus,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "cluster create failed");
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// The nodes (indices) that are masters.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .cli(&["INFO", "replication"])
                    .is_some_and(|info| info.contains("role:master"))
            })
            .collect()
    }

    /// The node (index) that replicates `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let port = format!("master_port:{}", self.nodes[master].port());
        (0..self.nodes.len())
            .find(|&i| {
                self.nodes[i]
                    .cli(&["INFO", "replication"])
                    .is_some_and(|info| info.contains("role:slave") && info.contains(&port))
            })
            .expect("a replica of that master")
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = self.nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not reach state ok");
    }

    /// A URL with every node, for fred's cluster client.
    pub fn url(&self) -> String {
        let first = self.nodes[0].port();
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|n| format!("node=127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", others.join("&"))
    }

    /// The node (index) that serves the slot of `key`.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("keyslot");
        let slots = self.nodes[0].cli(&["CLUSTER", "SLOTS"]).expect("slots");
        // redis-cli prints: start, end, ip, port, id, per range (one value per line).
        let lines: Vec<&str> = slots.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if let Ok(port) = lines[i + 3].parse::<u16>() {
                    if (start..=end).contains(&slot) {
                        return self
                            .nodes
                            .iter()
                            .position(|n| n.port() == port)
                            .expect("known node");
                    }
                    i += 4;
                    continue;
                }
            }
            i += 1;
        }
        panic!("slot {slot} not found in {slots}");
    }

    /// Moves the slot of `key`, with its keys, to node `to`, as a resharding
    /// does: IMPORTING and MIGRATING, MIGRATE of every key, then SETSLOT NODE
    /// on every master. Returns when the slot map says so.
    pub fn migrate_slot_of(&self, key: &str, to: usize) {
        let from = self.node_of(key);
        assert_ne!(from, to, "{key} is already on node {to}");
        let slot = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .expect("keyslot")
            .trim()
            .to_string();
        let id = |n: usize| {
            self.nodes[n]
                .cli(&["CLUSTER", "MYID"])
                .expect("myid")
                .trim()
                .to_string()
        };
        let (from_id, to_id) = (id(from), id(to));
        let ok = |node: usize, args: &[&str]| {
            let out = self.nodes[node].cli(args).unwrap_or_default();
            assert!(out.contains("OK"), "{args:?} on node {node}: {out}");
        };
        ok(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        ok(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        let port = self.nodes[to].port().to_string();
        loop {
            let listed = self.nodes[from]
                .cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
                .expect("getkeysinslot");
            let keys: Vec<&str> = listed
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            ok(from, &args);
        }
        ok(to, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        ok(from, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        for node in self.masters() {
            if node != to && node != from {
                ok(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.node_of(key) != to {
            assert!(Instant::now() < deadline, "slot {slot} did not move");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Namespaces whose keys live on every master, one each (in master order).
    pub fn namespaces_on_every_node(&self, prefix: &str) -> Vec<String> {
        let masters = self.masters();
        let mut found: Vec<Option<String>> = vec![None; masters.len()];
        for i in 0..1000 {
            let ns = format!("{prefix}-{i}");
            let node = self.node_of(&format!("{{{ns}}}:due"));
            if let Some(m) = masters.iter().position(|&n| n == node) {
                if found[m].is_none() {
                    found[m] = Some(ns);
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        found
            .into_iter()
            .map(|n| n.expect("a namespace per master"))
            .collect()
    }
}
