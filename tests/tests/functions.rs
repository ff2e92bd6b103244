//! The scripts as a Redis function library: loaded once and called with
//! FCALL, loaded again when the server loses it, and EVALSHA where the server
//! refuses FUNCTION.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use scheduler_tests::setup::{probe_job, producer, worker};
use scheduler_tests::{namespace, Probe, RedisServer};

/// `calls=` of one command in `INFO commandstats` (0 when never called).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// The names of the libraries loaded in the server.
fn libraries(server: &RedisServer) -> Vec<String> {
    scheduler_tests::libraries::loaded(server.port())
}

#[tokio::test]
async fn the_scripts_run_as_functions_of_a_content_addressed_library() {
    let server = RedisServer::start();
    let probe = Probe::default();
    let s = worker(&server.url(), &namespace("fcall"), &probe).await;
    for i in 0..3 {
        s.enqueue(probe_job(&format!("j{i}"), "x")).await.unwrap();
    }
    assert!(probe.wait_finished(3, Duration::from_secs(10)).await);
    s.status("j0").await.unwrap();

    let names = libraries(&server);
    assert_eq!(names.len(), 1, "{names:?}");
    let hash = names[0].strip_prefix("scheduler_").unwrap();
    assert!(
        hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{names:?}"
    );
    let list = server.cli(&["FUNCTION", "LIST"]).unwrap();
    for function in ["enqueue", "claim", "complete", "inspect"] {
        assert!(list.contains(&format!("{}_{function}", names[0])), "{list}");
    }
    // enqueue x3, claims, completes, inspect: all FCALL, nothing through EVALSHA.
    assert!(calls(&server, "fcall") >= 8, "{}", calls(&server, "fcall"));
    assert_eq!(calls(&server, "evalsha"), 0);
    assert_eq!(calls(&server, "eval"), 0);
    s.close().await;
}

#[tokio::test]
async fn a_user_who_may_not_load_functions_runs_the_scripts_with_evalsha() {
    let server = RedisServer::start();
    let user = server.add_user_without_functions();
    let url = format!("redis://{user}@127.0.0.1:{}", server.port());
    let probe = Probe::default();
    let s = worker(&url, &namespace("nofunction"), &probe).await;
    s.enqueue(probe_job("a", "x")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);

    assert_eq!(libraries(&server), Vec::<String>::new());
    assert!(
        calls(&server, "evalsha") >= 2,
        "{}",
        calls(&server, "evalsha")
    );
    assert_eq!(calls(&server, "fcall"), 0);
    s.close().await;
}

#[tokio::test]
async fn a_flushed_library_is_loaded_again() {
    let server = RedisServer::start();
    let probe = Probe::default();
    let ns = namespace("flush");
    let s = worker(&server.url(), &ns, &probe).await;
    let p = producer(&server.url(), &ns).await;
    p.enqueue(probe_job("before", "x")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);

    assert_eq!(server.cli(&["FUNCTION", "FLUSH"]).unwrap().trim(), "OK");
    assert_eq!(libraries(&server), Vec::<String>::new());
    p.enqueue(probe_job("after", "y")).await.unwrap();
    assert!(
        probe.wait_finished(2, Duration::from_secs(10)).await,
        "the job enqueued after the flush did not run"
    );
    assert_eq!(libraries(&server).len(), 1);
    assert!(s.health().is_healthy(), "{:?}", s.health());
    assert_eq!(calls(&server, "evalsha"), 0);
    s.close().await;
    p.close().await;
}
