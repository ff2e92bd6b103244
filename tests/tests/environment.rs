//! A hostile environment: Redis down at start, wrong password, missing ACL
//! permissions, out of memory, risky server settings. Each must surface as its
//! own typed error (or start-up warning), never as a hang or a panic.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use scheduler::{Error, JobRequest, Scheduler};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, RedisServer};

fn job(id: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new("x")).id(id)
}

#[tokio::test]
async fn redis_down_at_start_is_unavailable_quickly() {
    let mut gone = RedisServer::start();
    let url = gone.url();
    gone.kill();
    let started = Instant::now();
    let err = Scheduler::builder(url)
        .namespace(namespace("down"))
        .command_timeout(Duration::from_millis(500))
        .producer_only()
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_) | Error::Timeout { .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_does_not_leak_the_password() {
    let server = RedisServer::start();
    // Set after start (the harness pings without a password to see it is up).
    server
        .cli(&["CONFIG", "SET", "requirepass", "right-horse-battery"])
        .unwrap();
    let url = format!("redis://:s3cret-Pa55@127.0.0.1:{}", server.port());
    let builder = Scheduler::builder(&url)
        .namespace(namespace("auth"))
        .command_timeout(Duration::from_secs(1))
        .producer_only();
    let debug = format!("{builder:?}");
    assert!(!debug.contains("s3cret-Pa55"), "{debug}");
    let started = Instant::now();
    let err = builder.start().await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert!(!err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("s3cret-Pa55"), "{text}");
        assert!(!text.contains("right-horse-battery"), "{text}");
    }
    // The right password works.
    let ok = Scheduler::builder(format!(
        "redis://:right-horse-battery@127.0.0.1:{}",
        server.port()
    ))
    .namespace(namespace("auth"))
    .producer_only()
    .start()
    .await
    .unwrap();
    ok.enqueue(job("a")).await.unwrap();
    ok.close().await;
}

#[tokio::test]
async fn a_missing_acl_permission_is_no_permission() {
    let server = RedisServer::start();
    let ns = namespace("acl");
    // May run everything, but only on keys of another namespace.
    server
        .cli(&[
            "ACL",
            "SETUSER",
            "limited",
            "on",
            ">pw",
            "~{other}:*",
            "&*",
            "+@all",
        ])
        .unwrap();
    // Start-up reads the namespace's stored layout: refused there, at once.
    let refused = Scheduler::builder(format!("redis://limited:pw@127.0.0.1:{}", server.port()))
        .namespace(&ns)
        .producer_only()
        .start()
        .await;
    let Err(err) = refused else {
        panic!("started without access to the namespace's keys");
    };
    assert!(matches!(err, Error::NoPermission(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn out_of_memory_under_noeviction_is_out_of_memory() {
    let server = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "noeviction",
    ]);
    let s = Scheduler::builder(server.url())
        .namespace(namespace("oom"))
        .producer_only()
        .start()
        .await
        .unwrap();
    let blob = "y".repeat(100 * 1024);
    let mut last = None;
    for i in 0..100 {
        match s
            .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new(&blob)).id(format!("j{i}")))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let err = last.expect("maxmemory was reached");
    assert!(matches!(err, Error::OutOfMemory(_)), "{err:?}");
    s.close().await;
}

#[tokio::test]
async fn risky_server_settings_are_start_up_warnings() {
    let risky = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let s = Scheduler::builder(risky.url())
        .namespace(namespace("warn"))
        .producer_only()
        .start()
        .await
        .unwrap();
    let warnings = s.startup_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("allkeys-lru") && warnings[0].contains("noeviction"));
    assert!(warnings[1].contains("persistence is off"));
    s.close().await;

    let safe =
        RedisServer::start_with(&["--appendonly", "yes", "--maxmemory-policy", "noeviction"]);
    let s = Scheduler::builder(safe.url())
        .namespace(namespace("warn"))
        .producer_only()
        .start()
        .await
        .unwrap();
    assert_eq!(s.startup_warnings(), Vec::<String>::new());
    s.close().await;

    // A user who may not run CONFIG: no warnings, no error.
    risky
        .cli(&[
            "ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config",
        ])
        .unwrap();
    let s = Scheduler::builder(format!("redis://noconfig:pw@127.0.0.1:{}", risky.port()))
        .namespace(namespace("warn"))
        .producer_only()
        .start()
        .await
        .unwrap();
    assert!(s.startup_warnings().is_empty());
    s.enqueue(job("fine")).await.unwrap();
    s.close().await;
}
