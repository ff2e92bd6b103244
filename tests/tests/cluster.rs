//! Redis Cluster: three namespaces whose slots live on three different masters;
//! the core behaviours work unchanged on each.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::{
    CancelOutcome, EnqueueOutcome, IfRunning, JobRequest, JobStatus, ReplaceOutcome, Scheduler,
    WorkerConfig,
};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::cluster::RedisCluster;
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::Probe;

const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");

fn job(id: &str, arg: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new(arg)).id(id)
}

async fn worker(url: &str, ns: &str, probe: &Probe) -> Scheduler {
    scheduler_tests::init_tracing();
    Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            lease: Duration::from_millis(1000),
            heartbeat: Some(Duration::from_millis(300)),
            ..WorkerConfig::default()
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn core_behaviours_on_three_namespaces_on_three_masters() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let namespaces = cluster.namespaces_on_every_node("app");
    let mut nodes: Vec<usize> = namespaces
        .iter()
        .map(|ns| cluster.node_of(&format!("{{{ns}}}:due")))
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec![0, 1, 2]);
    for ns in &namespaces {
        let probe = Probe::default();
        let s = worker(&url, ns, &probe).await;
        // Defer and dedup.
        let at = Utc::now() + TimeDelta::milliseconds(300);
        assert!(s
            .enqueue(job("d", "deferred").at(at))
            .await
            .unwrap()
            .is_enqueued());
        assert!(matches!(
            s.enqueue(job("d", "dup")).await.unwrap(),
            EnqueueOutcome::Duplicate { .. }
        ));
        // Replace a deferred job.
        s.enqueue(job("r", "old").at(Utc::now() + TimeDelta::seconds(60)))
            .await
            .unwrap();
        let out = s
            .replace(
                job("r", "new").at(Utc::now() + TimeDelta::milliseconds(300)),
                IfRunning::Abort,
            )
            .await
            .unwrap();
        assert!(matches!(out, ReplaceOutcome::Replaced { .. }), "{out:?}");
        // Cancel a queued-for-later job.
        s.enqueue(job("c", "cancelled").at(Utc::now() + TimeDelta::milliseconds(300)))
            .await
            .unwrap();
        assert!(matches!(
            s.cancel("c").await.unwrap(),
            CancelOutcome::Removed { .. }
        ));
        // Cancel a running job.
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(30_000)).id("long"))
            .await
            .unwrap();
        assert!(probe.wait_started(1, Duration::from_secs(10)).await);
        assert!(matches!(
            s.cancel_and_wait("long", Duration::from_secs(5))
                .await
                .unwrap(),
            CancelOutcome::AbortSignalled { .. }
        ));
        assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ran: Vec<String> = probe
            .runs()
            .into_iter()
            .filter(|r| r.end.is_some())
            .map(|r| r.arg)
            .collect();
        ran.sort();
        assert_eq!(ran, vec!["deferred", "new"], "namespace {ns}");
        assert_eq!(s.status("long").await.unwrap(), JobStatus::Cancelled);
        assert_eq!(s.status("c").await.unwrap(), JobStatus::Cancelled);
        s.close().await;
    }
}

#[tokio::test]
async fn a_killed_worker_on_a_cluster_has_its_job_rerun() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let ns = cluster.namespaces_on_every_node("kill").pop().unwrap();
    let events = Events::default();
    let mut a = ChildWorker::spawn(BIN, &url, &ns, 1000, 300, 5, &events).await;
    let producer = Scheduler::builder(&url)
        .namespace(&ns)
        .producer_only()
        .start()
        .await
        .unwrap();
    producer
        .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(1000)).id("k"))
        .await
        .unwrap();
    assert!(
        events
            .wait_pid("start", a.pid(), Duration::from_secs(10))
            .await
    );
    let b = ChildWorker::spawn(BIN, &url, &ns, 1000, 300, 5, &events).await;
    a.kill();
    assert!(
        events
            .wait_pid("end", b.pid(), Duration::from_secs(10))
            .await,
        "{:?}",
        events.all()
    );
    let info = producer.info("k").await.unwrap().unwrap();
    assert!(matches!(
        info.status,
        JobStatus::Completed | JobStatus::Running { .. }
    ));
    assert_eq!(info.attempts, 2);
    producer.close().await;
}

/// `durable()` waits on the node that took the writes. `WAIT` names no key,
/// so a cluster client left to itself sends it to any primary, and one that
/// never saw the write answers at once that its replica has everything. With
/// the namespace's own replica paused, every durable enqueue must therefore
/// fail as `NotReplicated`; with the replica live it succeeds.
#[tokio::test]
async fn durable_writes_wait_on_the_namespaces_own_master() {
    let cluster = RedisCluster::start_with_replicas();
    let url = cluster.url();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for ns in cluster.namespaces_on_every_node("durable") {
        let master = cluster.node_of(&format!("{{{ns}}}:due"));
        let replica = cluster.replica_of(master);
        let s = Scheduler::builder(&url)
            .namespace(&ns)
            .durable(1, Duration::from_millis(300))
            .producer_only()
            .start()
            .await
            .unwrap();
        let out = s.enqueue(job("live", "x")).await;
        assert!(
            matches!(out, Ok(EnqueueOutcome::Enqueued { .. })),
            "namespace {ns}: {out:?}"
        );
        cluster.nodes[replica].pause();
        let mut results = Vec::new();
        for i in 0..4 {
            results.push(s.enqueue(job(&format!("paused-{i}"), "x")).await);
        }
        cluster.nodes[replica].resume();
        for out in &results {
            assert!(
                matches!(
                    out,
                    Err(scheduler::Error::NotReplicated {
                        acked: 0,
                        wanted: 1
                    })
                ),
                "namespace {ns} on node {master}, replica {replica} paused: {results:?}"
            );
        }
        s.close().await;
    }
}

/// The libraries of versions no longer running are deleted on every master
/// (FUNCTION LOAD put them on each), whichever node holds the registry; and a
/// scheduler whose library is deleted on one master keeps working there.
#[tokio::test]
async fn old_script_libraries_are_dropped_on_every_master() {
    use scheduler_tests::libraries::{load_fake, loaded, record_seen, server_time_ms, REGISTRY};

    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let ports: Vec<u16> = masters.iter().map(|&m| cluster.nodes[m].port()).collect();
    let old = "scheduler_00000000000a";
    for &port in &ports {
        load_fake(port, old);
    }
    let registry = cluster.nodes[cluster.node_of(REGISTRY)].port();
    record_seen(registry, old, server_time_ms(registry) - 2 * 3_600_000);

    let namespaces = cluster.namespaces_on_every_node("libs");
    let s = Scheduler::builder(cluster.url())
        .namespace(&namespaces[0])
        .register::<ProbeTask>()
        .producer_only()
        .start()
        .await
        .unwrap();
    // Done when `start` returns, on every master.
    let first = loaded(ports[0]);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_ne!(first[0], old);
    for &port in &ports {
        assert_eq!(loaded(port), first, "master on port {port}");
    }

    // Deleted on each master in turn, under a scheduler using it there.
    for (ns, &port) in namespaces.iter().zip(&ports) {
        let s = Scheduler::builder(cluster.url())
            .namespace(ns)
            .register::<ProbeTask>()
            .producer_only()
            .start()
            .await
            .unwrap();
        assert_eq!(
            cluster.nodes[cluster.node_of(&format!("{{{ns}}}:due"))].port(),
            port
        );
        scheduler_tests::redis_server::cli_at(port, &["FUNCTION", "DELETE", &first[0]]).unwrap();
        assert!(s
            .enqueue(job("after-delete", "x"))
            .await
            .unwrap()
            .is_enqueued());
        assert!(loaded(port).contains(&first[0]), "reloaded on {port}");
        s.close().await;
    }
    s.close().await;
}
