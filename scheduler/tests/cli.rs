//! The `scheduler` binary (feature `cli`) against a real Redis it starts on a
//! free port: every command, `--json`, the exit codes, and one clear line
//! (never a panic) for a bad id, a bad time or an unreachable Redis.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scheduler::{JobStatus, Scheduler, TaskError};
use serde_json::Value;

/// Fails for good: a dead letter to requeue.
#[scheduler::task]
async fn cli_doomed(n: u32) -> Result<(), TaskError> {
    Err(TaskError::permanent(format!("doomed {n}")))
}

/// Does nothing, when its time comes.
#[scheduler::task]
async fn cli_later(user: String) -> Result<(), String> {
    let _ = user;
    Ok(())
}

/// A redis-server of this test's own, without persistence.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("scheduler-cli-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, port, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the binary with `--url` and `--namespace`; its output.
fn cli(url: &str, ns: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["--url", url, "--namespace", ns])
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// A failure: this exit code and one line on stderr naming `about`.
fn refused(out: &Output, code: i32, about: &str) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("scheduler: "), "{err}");
    assert!(err.contains(about), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_against_a_real_redis() {
    let redis = Redis::start();
    let url = redis.url();
    let ns = "cli";
    let worker = Scheduler::builder(url.as_str())
        .namespace(ns)
        .register::<cli_doomed>()
        .register::<cli_later>()
        .start()
        .await
        .unwrap();
    cli_doomed::enqueue(&worker, "doomed-1", 1).await.unwrap();
    cli_doomed::enqueue(&worker, "doomed-2", 2).await.unwrap();
    for id in ["doomed-1", "doomed-2"] {
        worker.wait(id, Duration::from_secs(20)).await.unwrap();
    }
    worker.close().await;
    let s = Scheduler::builder(url.as_str())
        .namespace(ns)
        .register::<cli_later>()
        .producer_only()
        .start()
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    cli_later::defer_by(&s, "later-1", hour, "ada".into())
        .await
        .unwrap();
    cli_later::defer_by(&s, "later-2", hour * 2, "bob".into())
        .await
        .unwrap();

    // stats
    let stats = json(&cli(&url, ns, &["stats", "--json"]));
    assert_eq!(stats["deferred"], 2);
    assert_eq!(stats["dead_lettered"], 2);
    let text = cli(&url, ns, &["stats"]);
    assert!(
        stdout(&text).contains("deferred       2"),
        "{}",
        stdout(&text)
    );

    // queues: every job here is in `default`, and no worker runs
    let queues = json(&cli(&url, ns, &["queues", "--json"]));
    assert_eq!(queues["queues"][0]["queue"], "default");
    assert_eq!(queues["queues"][0]["deferred"], 2);
    assert_eq!(queues["queues"][0]["workers"], 0);
    let text = stdout(&cli(&url, ns, &["queues"]));
    assert!(text.starts_with("QUEUE"), "{text}");

    // list, page by page
    let first = json(&cli(
        &url,
        ns,
        &["list", "--state", "deferred", "--limit", "1", "--json"],
    ));
    assert_eq!(first["jobs"][0]["job_id"], "later-1");
    // As stored, by position: the binary does not know the application's tasks.
    assert_eq!(first["jobs"][0]["args"], serde_json::json!(["ada"]));
    let cursor = first["next"].as_str().unwrap().to_string();
    let second = json(&cli(
        &url,
        ns,
        &["list", "--limit", "1", "--cursor", &cursor, "--json"],
    ));
    assert_eq!(second["jobs"][0]["job_id"], "later-2");
    assert_eq!(second["next"], Value::Null);
    let dead = cli(&url, ns, &["list", "--state", "dead"]);
    assert!(stdout(&dead).contains("doomed 1"), "{}", stdout(&dead));
    refused(
        &cli(&url, ns, &["list", "--state", "sideways"]),
        4,
        "unknown state",
    );
    refused(
        &cli(&url, ns, &["list", "--cursor", "nonsense"]),
        4,
        "cursor",
    );
    refused(
        &cli(&url, ns, &["list", "--queue", "two words"]),
        4,
        "queue",
    );
    refused(
        &cli(
            &url,
            ns,
            &["list", "--state", "finished", "--queue", "emails"],
        ),
        4,
        "queue",
    );
    // Every job here is in `default`: a listing of another queue is empty.
    let emails = json(&cli(
        &url,
        ns,
        &["list", "--state", "deferred", "--queue", "emails", "--json"],
    ));
    assert_eq!(emails["jobs"], serde_json::json!([]));
    let defaults = json(&cli(
        &url,
        ns,
        &[
            "list", "--state", "deferred", "--queue", "default", "--json",
        ],
    ));
    assert_eq!(defaults["jobs"].as_array().map(Vec::len), Some(2));
    assert_eq!(defaults["jobs"][0]["queue"], "default");

    // show
    let shown = json(&cli(&url, ns, &["show", "later-1", "--json"]));
    assert_eq!(shown["state"], "deferred");
    assert_eq!(shown["task"], "cli_later");
    let text = stdout(&cli(&url, ns, &["show", "doomed-1"]));
    assert!(text.contains("state        failed"), "{text}");
    assert!(text.contains("last error   doomed 1"), "{text}");
    refused(&cli(&url, ns, &["show", "nobody"]), 3, "no job");
    refused(&cli(&url, ns, &["show", "a\u{7}b"]), 4, "invalid job id");

    // reschedule
    let moved = json(&cli(
        &url,
        ns,
        &["reschedule", "later-2", "--in", "10m", "--json"],
    ));
    assert_eq!(moved["job_id"], "later-2");
    match s.status("later-2").await.unwrap() {
        JobStatus::Deferred { run_at } => {
            let ahead = run_at - chrono::Utc::now();
            assert!(
                ahead.num_seconds() > 500 && ahead.num_seconds() <= 600,
                "{ahead}"
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = cli(
        &url,
        ns,
        &["reschedule", "later-2", "--at", "2099-01-01T09:00:00Z"],
    );
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout(&ok).contains("2099-01-01 09:00:00"),
        "{}",
        stdout(&ok)
    );
    refused(
        &cli(&url, ns, &["reschedule", "later-2", "--at", "tomorrow"]),
        4,
        "bad time",
    );
    refused(
        &cli(&url, ns, &["reschedule", "later-2", "--in", "soonish"]),
        4,
        "bad duration",
    );
    refused(
        &cli(&url, ns, &["reschedule", "nobody", "--in", "1m"]),
        3,
        "no deferred or queued job",
    );
    let usage = cli(&url, ns, &["reschedule", "later-2"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    // cancel
    let cancelled = cli(&url, ns, &["cancel", "later-1"]);
    assert!(cancelled.status.success(), "{cancelled:?}");
    assert_eq!(s.status("later-1").await.unwrap(), JobStatus::Cancelled);
    refused(&cli(&url, ns, &["cancel", "later-1"]), 3, "already ended");

    // requeue, purge
    let one = json(&cli(&url, ns, &["requeue", "doomed-1", "--json"]));
    assert_eq!(one["requeued"][0]["job_id"], "doomed-1");
    let all = json(&cli(&url, ns, &["requeue", "--all-dead", "--json"]));
    assert_eq!(all["requeued"][0]["job_id"], "doomed-2");
    assert_eq!(s.counts().await.unwrap().queued, 2);
    refused(
        &cli(&url, ns, &["requeue", "--all-dead"]),
        3,
        "dead letter is empty",
    );
    let purged = json(&cli(&url, ns, &["purge-dead", "--json"]));
    assert_eq!(purged["purged"], 0);

    // schedules, watch
    let text = stdout(&cli(&url, ns, &["schedules"]));
    assert!(text.contains("no schedules"), "{text}");
    let watched = cli(
        &url,
        ns,
        &["watch", "--json", "--interval", "0.1", "--refreshes", "2"],
    );
    assert!(watched.status.success(), "{watched:?}");
    let lines: Vec<Value> = stdout(&watched)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["counts"]["deferred"], 1);
    assert_eq!(lines[0]["next"][0]["job_id"], "later-2");
    let screen = stdout(&cli(&url, ns, &["watch", "--refreshes", "1"]));
    assert!(screen.starts_with("\u{1b}[2J"), "{screen:?}");
    assert!(screen.contains("later-2"), "{screen}");
    s.close().await;
}

/// A namespace split over shards is seen whole only with `--shards` (or
/// `SCHEDULER_SHARDS`): counted, listed, shown and cancelled on every shard.
#[tokio::test(flavor = "multi_thread")]
async fn a_sharded_namespace_with_its_number_of_shards() {
    let redis = Redis::start();
    let url = redis.url();
    let ns = "cli-sharded";
    let s = Scheduler::builder(url.as_str())
        .namespace(ns)
        .shards(3)
        .register::<cli_later>()
        .producer_only()
        .start()
        .await
        .unwrap();
    let ids: Vec<String> = (0..9).map(|i| format!("later-{i}")).collect();
    for id in &ids {
        cli_later::defer_by(&s, id, Duration::from_secs(3600), "ada".into())
            .await
            .unwrap();
    }
    let sharded = |args: &[&str]| {
        let mut all = vec!["--shards", "3"];
        all.extend_from_slice(args);
        cli(&url, ns, &all)
    };
    assert_eq!(json(&sharded(&["stats", "--json"]))["deferred"], 9);
    let listed = json(&sharded(&["list", "--limit", "100", "--json"]));
    let mut listed: Vec<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
    for id in &ids {
        assert_eq!(json(&sharded(&["show", id, "--json"]))["state"], "deferred");
    }
    let cancelled = sharded(&["cancel", "later-4"]);
    assert!(cancelled.status.success(), "{cancelled:?}");
    assert_eq!(s.status("later-4").await.unwrap(), JobStatus::Cancelled);
    // The environment variable says the same.
    let by_env = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["--url", &url, "--namespace", ns, "stats", "--json"])
        .env("SCHEDULER_SHARDS", "3")
        .output()
        .unwrap();
    assert_eq!(json(&by_env)["deferred"], 8);
    // Without it, the unsharded layout of the namespace: empty.
    assert_eq!(json(&cli(&url, ns, &["stats", "--json"]))["deferred"], 0);
    let zero = cli(&url, ns, &["--shards", "0", "stats"]);
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
    assert!(stderr(&zero).contains("--shards"), "{}", stderr(&zero));
    s.close().await;
}

#[test]
fn an_unreachable_redis_is_one_clear_line() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli(&format!("redis://127.0.0.1:{port}/0"), "cli", &["stats"]);
    refused(&out, 1, "unavailable");
    // The URL from the environment when --url is not given.
    let out = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["stats"])
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}/0"))
        .output()
        .unwrap();
    refused(&out, 1, "unavailable");
}
