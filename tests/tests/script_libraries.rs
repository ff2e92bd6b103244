//! The function libraries of versions no longer running are deleted: a
//! library nobody recorded as in use for an hour goes, at start-up or on
//! `drop_old_script_libraries`; the current one, one recorded recently, one
//! never recorded yet and another application's stay; and a scheduler whose
//! library is deleted under it keeps working.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scheduler::Scheduler;
use scheduler_tests::libraries::{load_fake, loaded, record_seen, seen, server_time_ms};
use scheduler_tests::redis_server::cli_at;
use scheduler_tests::setup::{probe_job, producer, worker};
use scheduler_tests::{namespace, Probe, RedisServer};

const HOUR_MS: i64 = 3_600_000;

/// The library this version loads: the one of the server's libraries that
/// is not a fake of the test.
fn current(port: u16, fakes: &[&str]) -> String {
    let names: Vec<String> = loaded(port)
        .into_iter()
        .filter(|n| n.starts_with("scheduler_") && !fakes.contains(&n.as_str()))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

#[tokio::test]
async fn old_libraries_are_dropped_and_the_current_and_recently_seen_ones_kept() {
    let server = RedisServer::start();
    let port = server.port();
    let now = server_time_ms(port);
    let old = "scheduler_00000000000a";
    let recent = "scheduler_00000000000b";
    let unknown = "scheduler_00000000000c";
    // Another application's library that merely shares the prefix.
    let foreign = "scheduler_jobs";
    for name in [old, recent, unknown, foreign] {
        load_fake(port, name);
    }
    record_seen(port, old, now - 2 * HOUR_MS);
    record_seen(port, recent, now - 60_000);

    // Database 3: the registry is server-wide all the same (database 0).
    let s = producer(&format!("{}/3", server.url()), &namespace("libs")).await;
    let fakes = [old, recent, unknown, foreign];
    let mine = current(port, &fakes);
    // Done when `start` returns.
    let mut expected = vec![mine.clone(), recent.into(), unknown.into(), foreign.into()];
    expected.sort();
    assert_eq!(loaded(port), expected);
    assert!(
        seen(port, &mine).unwrap() >= now,
        "the current library is recorded"
    );
    assert_eq!(
        seen(port, old),
        None,
        "a dropped library leaves the registry"
    );
    assert_eq!(
        seen(port, foreign),
        None,
        "another application's library is not this crate's"
    );
    assert_eq!(
        cli_at(
            port,
            &["-n", "3", "EXISTS", scheduler_tests::libraries::REGISTRY]
        )
        .unwrap()
        .trim(),
        "0"
    );

    // Nothing else is stale now.
    assert_eq!(
        s.drop_old_script_libraries().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(loaded(port), expected);

    // Once the other libraries have not been seen for over an hour, the call
    // drops them; the current one and the foreign one stay.
    let now = server_time_ms(port);
    record_seen(port, recent, now - HOUR_MS - 1_000);
    record_seen(port, unknown, now - 2 * HOUR_MS);
    // Even an entry for the foreign library does not make it ours.
    record_seen(port, foreign, now - 2 * HOUR_MS);
    let mut dropped = s.drop_old_script_libraries().await.unwrap();
    dropped.sort();
    assert_eq!(dropped, vec![recent.to_string(), unknown.to_string()]);
    let mut left = vec![mine.clone(), foreign.to_string()];
    left.sort();
    assert_eq!(loaded(port), left);

    // Still working.
    s.enqueue(probe_job("after", "x")).await.unwrap();
    assert!(s.health().is_healthy(), "{:?}", s.health());
    s.close().await;
}

#[tokio::test]
async fn a_scheduler_whose_library_is_dropped_keeps_working() {
    let server = RedisServer::start();
    let port = server.port();
    let ns = namespace("dropped");
    let probe = Probe::default();
    let w = worker(&server.url(), &ns, &probe).await;
    let p = producer(&server.url(), &ns).await;
    let mine = current(port, &[]);

    // Deleted between calls, as another version's scheduler would.
    for i in 0..10 {
        cli_at(port, &["FUNCTION", "DELETE", &mine]).unwrap();
        p.enqueue(probe_job(&format!("a{i}"), "x")).await.unwrap();
        p.status(&format!("a{i}")).await.unwrap();
    }
    assert!(probe.wait_finished(10, Duration::from_secs(10)).await);

    // Deleted again and again while jobs are enqueued, claimed, renewed and
    // completed.
    let stop = Arc::new(AtomicBool::new(false));
    let deleter = {
        let stop = stop.clone();
        let mine = mine.clone();
        std::thread::spawn(move || {
            let mut deletions = 0;
            while !stop.load(Ordering::Relaxed) {
                if cli_at(port, &["FUNCTION", "DELETE", &mine]).is_some() {
                    deletions += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            deletions
        })
    };
    for i in 0..100 {
        p.enqueue(probe_job(&format!("b{i}"), "y")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(probe.wait_finished(110, Duration::from_secs(20)).await);
    stop.store(true, Ordering::Relaxed);
    let deletions = deleter.join().unwrap();
    assert!(deletions >= 10, "only {deletions} deletions");
    assert!(w.health().is_healthy(), "{:?}", w.health());
    assert!(p.health().is_healthy(), "{:?}", p.health());
    assert_eq!(probe.runs().len(), 110, "every job ran once");
    w.close().await;
    p.close().await;
}

#[tokio::test]
async fn a_scheduler_calling_scripts_with_evalsha_drops_nothing() {
    let server = RedisServer::start();
    let port = server.port();
    let old = "scheduler_00000000000a";
    load_fake(port, old);
    record_seen(port, old, server_time_ms(port) - 2 * HOUR_MS);
    let user = server.add_user_without_functions();
    let url = format!("redis://{user}@127.0.0.1:{port}");
    let s: Scheduler = producer(&url, &namespace("evalsha")).await;
    assert_eq!(
        s.drop_old_script_libraries().await.unwrap(),
        Vec::<String>::new()
    );
    s.enqueue(probe_job("a", "x")).await.unwrap();
    assert_eq!(loaded(port), vec![old.to_string()]);
    s.close().await;
}
