//! `rediss://`: a worker process reaches a TLS-only port of its own Redis and
//! runs jobs, trusting the test CA through `SSL_CERT_FILE`; with a certificate
//! it does not trust, it stops at start-up with `Error::Tls` naming the cause.
//! The certificates are fixtures (`tests/fixtures/tls`, valid until 2126): a CA,
//! a server certificate for `localhost` and 127.0.0.1 signed by it, and an
//! unrelated CA.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use scheduler::JobStatus;
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::redis_server::free_port;
use scheduler_tests::setup::{probe_job, producer, wait_status};
use scheduler_tests::{namespace, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");

fn fixture(name: &str) -> String {
    format!("{}/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server with its plain port (for the test's own producer) and a TLS port.
fn tls_server() -> (RedisServer, u16) {
    let tls_port = free_port().to_string();
    let (cert, key, ca) = (
        fixture("server.crt"),
        fixture("server.key"),
        fixture("ca.crt"),
    );
    let server = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    (server, tls_port.parse().unwrap())
}

#[tokio::test]
async fn a_worker_runs_jobs_over_tls_with_a_private_ca() {
    let (server, tls_port) = tls_server();
    let ns = namespace("tls");
    let p = producer(&server.url(), &ns).await;
    let events = Events::default();
    let ca = fixture("ca.crt");
    let mut worker = ChildWorker::spawn_with_env(
        BIN,
        &format!("rediss://localhost:{tls_port}"),
        &ns,
        (5_000, 1_000, 4),
        &[("SSL_CERT_FILE", ca.as_str())],
        &events,
    )
    .await;
    let ids: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    for id in &ids {
        p.enqueue(probe_job(id, "x")).await.unwrap();
    }
    assert!(events.wait("end", ids.len(), Duration::from_secs(10)).await);
    for id in &ids {
        let status = wait_status(&p, id, |s| matches!(s, JobStatus::Completed)).await;
        assert!(matches!(status, JobStatus::Completed), "{id}: {status:?}");
    }
    // The worker's connection really is the TLS one.
    let clients = server.cli(&["CLIENT", "LIST"]).unwrap();
    assert!(
        clients
            .lines()
            .any(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port}"))),
        "no client on the TLS port: {clients}"
    );
    worker.terminate();
    p.close().await;
}

#[tokio::test]
async fn an_untrusted_certificate_stops_start_up_with_a_tls_error() {
    let (_server, tls_port) = tls_server();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                &format!("rediss://localhost:{tls_port}"),
                &namespace("tls-untrusted"),
            ])
            .env("SSL_CERT_FILE", fixture("other-ca.crt"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TLS with redis failed"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");
}
