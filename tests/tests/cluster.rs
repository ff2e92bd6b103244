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
            // Long enough for a live replica's acknowledgement on a loaded
            // 2-core machine (300 ms once was not: a job on a master whose
            // replica ran failed as NotReplicated).
            .durable(1, Duration::from_millis(1000))
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

/// A namespace split over shards (`SchedulerBuilder::shards`): one logical
/// queue whose jobs live on every master, each id in one shard.
mod sharded {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use chrono::{TimeDelta, Utc};
    use scheduler::{
        CancelOutcome, EnqueueOutcome, IfRunning, JobQuery, JobRequest, JobStatus, ListState,
        Queues, ReplaceOutcome, Schedule, Scheduler, WorkerConfig,
    };
    use scheduler_tests::child::{ChildWorker, Events};
    use scheduler_tests::cluster::RedisCluster;
    use scheduler_tests::tasks::{EmailProbe, LimitedProbe, ProbeArgs, ProbeTask};
    use scheduler_tests::{Probe, RedisServer};

    use super::{job, BIN};

    const SHARDS: u16 = 3;

    async fn sharded(url: &str, ns: &str, probe: &Probe, worker: bool) -> Scheduler {
        scheduler_tests::init_tracing();
        let builder = Scheduler::builder(url)
            .namespace(ns)
            .shards(SHARDS)
            .register::<ProbeTask>()
            .provide(probe.clone());
        let builder = if worker {
            builder.worker(WorkerConfig {
                lease: Duration::from_millis(1000),
                heartbeat: Some(Duration::from_millis(300)),
                ..WorkerConfig::default()
            })
        } else {
            builder.producer_only()
        };
        builder.start().await.unwrap()
    }

    /// The masters (node indices) that hold a shard of `ns` (its generation
    /// counter, which stays when the jobs are gone).
    fn masters_with_keys(cluster: &RedisCluster, ns: &str) -> BTreeSet<usize> {
        cluster
            .masters()
            .into_iter()
            .filter(|&m| {
                cluster.nodes[m]
                    .cli(&["--scan", "--pattern", &format!("{{{ns}/*")])
                    .is_some_and(|keys| keys.lines().any(|k| k.ends_with(":seq")))
            })
            .collect()
    }

    #[tokio::test]
    async fn one_namespace_over_three_masters_keeps_every_per_id_behaviour() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let probe = Probe::default();
        let s = sharded(&url, "spread", &probe, true).await;
        // Deferred jobs under many ids: every master holds some of them.
        let later = Utc::now() + TimeDelta::seconds(60);
        let ids: Vec<String> = (0..30).map(|i| format!("later-{i}")).collect();
        for id in &ids {
            assert!(s
                .enqueue(job(id, "later").at(later))
                .await
                .unwrap()
                .is_enqueued());
        }
        assert_eq!(masters_with_keys(&cluster, "spread").len(), 3);
        assert_eq!(s.counts().await.unwrap().deferred, 30);
        // A listing walks every shard, each job once, in pages of 4.
        let mut listed = Vec::new();
        let mut query = JobQuery::new(ListState::Deferred).limit(4);
        loop {
            let page = s.list(&query).await.unwrap();
            assert!(page.jobs.len() <= 4);
            listed.extend(page.jobs.into_iter().map(|j| j.job_id));
            match page.next {
                Some(next) => query = query.after(next),
                None => break,
            }
        }
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
        // Dedup, replace and cancel, each on the id's own shard.
        for id in ids.iter().take(6) {
            assert!(matches!(
                s.enqueue(job(id, "dup")).await.unwrap(),
                EnqueueOutcome::Duplicate { .. }
            ));
        }
        for id in ids.iter().take(3) {
            let out = s
                .replace(
                    job(id, "replaced").at(Utc::now() + TimeDelta::milliseconds(200)),
                    IfRunning::Abort,
                )
                .await
                .unwrap();
            assert!(matches!(out, ReplaceOutcome::Replaced { .. }), "{out:?}");
        }
        for id in ids.iter().skip(3) {
            assert!(matches!(
                s.cancel(id).await.unwrap(),
                CancelOutcome::Removed { .. }
            ));
        }
        // Immediate jobs on every shard run once each.
        for i in 0..30 {
            s.enqueue(job(&format!("now-{i}"), "now")).await.unwrap();
        }
        assert!(probe.wait_finished(33, Duration::from_secs(20)).await);
        // A running job is cancelled through its shard's abort channel.
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(30_000)).id("long"))
            .await
            .unwrap();
        assert!(probe.wait_started(34, Duration::from_secs(10)).await);
        assert!(matches!(
            s.cancel_and_wait("long", Duration::from_secs(5))
                .await
                .unwrap(),
            CancelOutcome::AbortSignalled { .. }
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ran: Vec<String> = probe
            .runs()
            .into_iter()
            .filter(|r| r.end.is_some() && r.arg != "long")
            .map(|r| r.job_id)
            .collect();
        ran.sort();
        let mut expected: Vec<String> = (0..30).map(|i| format!("now-{i}")).collect();
        expected.extend(ids.iter().take(3).cloned());
        expected.sort();
        assert_eq!(ran, expected, "each job ran once, the cancelled ones never");
        assert_eq!(s.status("long").await.unwrap(), JobStatus::Cancelled);
        assert_eq!(s.status(&ids[10]).await.unwrap(), JobStatus::Cancelled);
        let counts = s.counts().await.unwrap();
        assert_eq!((counts.deferred, counts.queued, counts.running), (0, 0, 0));
        s.close().await;
    }

    #[tokio::test]
    async fn schedules_tick_on_a_sharded_namespace() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let probe = Probe::default();
        let s = sharded(&url, "ticks", &probe, true).await;
        s.schedule(
            "beat",
            JobRequest::<ProbeTask>::new(ProbeArgs::new("beat")),
            Schedule::every(Duration::from_millis(500)).unwrap(),
        )
        .await
        .unwrap();
        assert!(probe.wait_finished(3, Duration::from_secs(10)).await);
        s.remove_schedule("beat").await.unwrap();
        let ticks: Vec<String> = probe.runs().into_iter().map(|r| r.job_id).collect();
        assert!(
            ticks.iter().all(|id| id.starts_with("schedule:beat:")),
            "{ticks:?}"
        );
        let unique: BTreeSet<&String> = ticks.iter().collect();
        assert_eq!(unique.len(), ticks.len(), "each tick ran once: {ticks:?}");
        s.close().await;
    }

    /// Workers in other processes: one is SIGKILLed while it holds a job
    /// on every shard; the other reruns each of them once; and a worker
    /// SIGSTOPped past its lease has its late completion fenced off.
    #[tokio::test]
    async fn a_killed_worker_has_its_jobs_rerun_on_every_shard_and_a_late_one_is_fenced() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let ns = "kill-sharded";
        let events = Events::default();
        let shards = SHARDS.to_string();
        let env = [("PROBE_SHARDS", shards.as_str())];
        let mut a =
            ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        let producer = sharded(&url, ns, &Probe::default(), false).await;
        let ids: Vec<String> = (0..9).map(|i| format!("k{i}")).collect();
        for id in &ids {
            producer
                .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(1500)).id(id))
                .await
                .unwrap();
        }
        assert_eq!(masters_with_keys(&cluster, ns).len(), 3);
        for id in &ids {
            assert!(
                events.wait_job("start", id, Duration::from_secs(10)).await,
                "{id}"
            );
        }
        let b = ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        a.kill();
        for id in &ids {
            let info = loop {
                let info = producer.info(id).await.unwrap().unwrap();
                if info.status == JobStatus::Completed {
                    break info;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(info.attempts, 2, "{id}: rerun once, by the live worker");
        }
        // Fencing: a worker frozen past its lease loses its jobs to `b`, and
        // its completions after it thaws change nothing.
        let c = ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        drop(b);
        let late: Vec<String> = (0..6).map(|i| format!("late{i}")).collect();
        for id in &late {
            producer
                .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(800)).id(id))
                .await
                .unwrap();
        }
        for id in &late {
            assert!(
                events.wait_job("start", id, Duration::from_secs(10)).await,
                "{id}"
            );
        }
        c.pause();
        let d = ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        for id in &late {
            assert!(
                events
                    .wait_job_pid("end", id, d.pid(), Duration::from_secs(15))
                    .await,
                "{id} rerun by the live worker: {:?}",
                events.all()
            );
        }
        c.resume();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for id in &late {
            let info = producer.info(id).await.unwrap().unwrap();
            assert_eq!(info.status, JobStatus::Completed);
            assert_eq!(
                info.attempts, 2,
                "{id}: the frozen worker's attempt is not counted again"
            );
        }
        drop(d);
        producer.close().await;
    }

    /// `durable` waits on the master of the job's own shard: with one
    /// master's replica paused, exactly the jobs whose shard lives on that
    /// master fail as `NotReplicated`, the others are acknowledged.
    #[tokio::test]
    async fn durable_writes_wait_on_the_shards_own_master() {
        let cluster = RedisCluster::start_with_replicas();
        let url = cluster.url();
        let master = cluster.masters()[1];
        let replica = cluster.replica_of(master);
        let s = Scheduler::builder(&url)
            .namespace("durable-sharded")
            .shards(SHARDS)
            // Long enough for a live replica's acknowledgement on a loaded
            // 2-core machine (300 ms once was not: a job on a master whose
            // replica ran failed as NotReplicated).
            .durable(1, Duration::from_millis(1000))
            .producer_only()
            .start()
            .await
            .unwrap();
        cluster.nodes[replica].pause();
        let mut results = Vec::new();
        for i in 0..12 {
            let id = format!("d{i}");
            let out = s.enqueue(job(&id, "x")).await;
            results.push((id, out));
        }
        cluster.nodes[replica].resume();
        // The master holding each job's pending record (each master's
        // `pending` hashes, of one shard or more).
        let holder = |id: &str| {
            cluster.masters().into_iter().find(|&m| {
                let keys = cluster.nodes[m]
                    .cli(&["--scan", "--pattern", "{durable-sharded/*:pending"])
                    .unwrap_or_default();
                keys.lines().any(|key| {
                    cluster.nodes[m]
                        .cli(&["HEXISTS", key, id])
                        .is_some_and(|r| r.trim() == "1")
                })
            })
        };
        let mut failed = 0;
        for (id, out) in &results {
            let held_by = holder(id);
            let on_paused = held_by == Some(master);
            match out {
                Err(scheduler::Error::NotReplicated {
                    acked: 0,
                    wanted: 1,
                }) if on_paused => failed += 1,
                Ok(EnqueueOutcome::Enqueued { .. }) if held_by.is_some() && !on_paused => {}
                other => panic!(
                    "{id} (held by node {held_by:?}, the paused replica's master is node {master}): {other:?}"
                ),
            }
        }
        assert!(failed > 0 && failed < results.len(), "{results:?}");
        s.close().await;
    }

    /// Changing the number of shards from 2 to 3 while jobs are pending,
    /// deferred and running in the old layout: processes on the new layout
    /// (`.shards(3).draining_from(2)`) run the old jobs where they are, act on
    /// them there (dedup, replace, cancel), put new jobs in the new layout,
    /// and take the schedules over. Every job runs once, none is lost, and
    /// the old layout ends empty.
    #[tokio::test]
    async fn changing_the_number_of_shards_loses_and_duplicates_nothing() {
        const EARLY: usize = 60;
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let ns = "reshard";
        let probe = Probe::default();
        let with = |shards: u16, draining: Option<u16>, worker: bool| {
            let mut builder = Scheduler::builder(&url)
                .namespace(ns)
                .shards(shards)
                .register::<ProbeTask>()
                .provide(probe.clone());
            if let Some(old) = draining {
                builder = builder.draining_from(old);
            }
            if worker {
                builder.worker(WorkerConfig {
                    lease: Duration::from_millis(1000),
                    heartbeat: Some(Duration::from_millis(300)),
                    ..WorkerConfig::default()
                })
            } else {
                builder.producer_only()
            }
        };
        let old = with(2, None, true).start().await.unwrap();
        old.schedule(
            "yearly",
            JobRequest::<ProbeTask>::new(ProbeArgs::new("yearly")),
            Schedule::cron("0 0 1 1 *").unwrap(),
        )
        .await
        .unwrap();
        let later = Utc::now() + TimeDelta::milliseconds(2500);
        // Enough jobs that the old layout's generation counters are well
        // above what the new layout's reach in this test.
        for i in 0..EARLY {
            old.enqueue(job(&format!("early-{i}"), "early"))
                .await
                .unwrap();
        }
        let mut generations = Vec::new();
        for i in 0..20 {
            let out = old
                .enqueue(job(&format!("later-{i}"), "later").at(later))
                .await
                .unwrap();
            let EnqueueOutcome::Enqueued { generation, .. } = out else {
                panic!("{out:?}")
            };
            generations.push(generation);
        }
        old.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("slow").sleep(1500)).id("slow"))
            .await
            .unwrap();
        assert!(probe.wait_started(EARLY + 1, Duration::from_secs(10)).await);
        // The new layout's processes start while the old worker still runs
        // `slow`; the old worker stops once it is done (a rolling deploy).
        let new = with(3, Some(2), true).start().await.unwrap();
        assert!(
            probe
                .wait_finished(EARLY + 1, Duration::from_secs(10))
                .await
        );
        old.close().await;
        for i in 0..5 {
            let out = new
                .enqueue(job(&format!("later-{i}"), "again"))
                .await
                .unwrap();
            assert!(
                matches!(out, EnqueueOutcome::Duplicate { .. }),
                "later-{i}: {out:?}"
            );
        }
        let out = new
            .replace(job("later-5", "replaced").at(later), IfRunning::Abort)
            .await
            .unwrap();
        assert!(matches!(out, ReplaceOutcome::Replaced { .. }), "{out:?}");
        assert!(matches!(
            new.cancel("later-6").await.unwrap(),
            CancelOutcome::Removed { .. }
        ));
        for i in 0..20 {
            new.enqueue(job(&format!("new-{i}"), "new")).await.unwrap();
        }
        let names: Vec<String> = new
            .schedules()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["yearly"], "the schedule moved to the new layout");
        // The early ones + slow + 19 later (one cancelled) + 20 new.
        assert!(
            probe
                .wait_finished(EARLY + 40, Duration::from_secs(20))
                .await,
            "{:#?}",
            probe.runs().len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ran: Vec<(String, String)> = probe
            .runs()
            .into_iter()
            .filter(|r| r.end.is_some())
            .map(|r| (r.job_id, r.arg))
            .collect();
        ran.sort();
        let mut expected: Vec<(String, String)> = Vec::new();
        expected.extend((0..EARLY).map(|i| (format!("early-{i}"), "early".to_string())));
        expected.extend((0..20).filter(|&i| i != 6).map(|i| {
            let arg = if i == 5 { "replaced" } else { "later" };
            (format!("later-{i}"), arg.to_string())
        }));
        expected.extend((0..20).map(|i| (format!("new-{i}"), "new".to_string())));
        expected.push(("slow".to_string(), "slow".to_string()));
        expected.sort();
        assert_eq!(ran, expected, "every job ran once");
        assert_eq!(new.status("later-6").await.unwrap(), JobStatus::Cancelled);
        assert_eq!(new.status("later-1").await.unwrap(), JobStatus::Completed);
        // The old layout is empty; its schedule is gone.
        let old_layout = with(2, None, false).start().await.unwrap();
        let counts = old_layout.counts().await.unwrap();
        assert_eq!((counts.deferred, counts.queued, counts.running), (0, 0, 0));
        assert!(old_layout.schedules().await.unwrap().is_empty());
        old_layout.close().await;
        // An id that moves does not see its generation go back.
        let out = new.enqueue(job("later-19", "moved")).await.unwrap();
        let EnqueueOutcome::Enqueued { generation, .. } = out else {
            panic!("{out:?}")
        };
        assert!(
            generation > generations[19],
            "{generation} after {}",
            generations[19]
        );
        new.close().await;
        // Then the old number is dropped: the new layout alone.
        let after = with(3, None, false).start().await.unwrap();
        assert_eq!(after.status("new-7").await.unwrap(), JobStatus::Completed);
        after.close().await;
    }

    /// A concurrency limit holds across the shards on three masters (its
    /// counts live in the home shard), between two worker processes; one
    /// killed while it holds slots frees them once its lease runs out, and
    /// its jobs run again.
    #[tokio::test]
    async fn a_limit_holds_across_masters_and_a_killed_workers_slots_free_after_its_lease() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let ns = "limits-sharded";
        let events = Events::default();
        let shards = SHARDS.to_string();
        let env = [("PROBE_SHARDS", shards.as_str())];
        let mut a =
            ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        let producer = Scheduler::builder(&url)
            .namespace(ns)
            .shards(SHARDS)
            .register::<LimitedProbe>()
            .producer_only()
            .start()
            .await
            .unwrap();
        // LimitedProbe: 2 at a time.
        let ids: Vec<String> = (0..12).map(|i| format!("lim{i}")).collect();
        for id in &ids {
            producer
                .enqueue(JobRequest::<LimitedProbe>::new(ProbeArgs::new("x").sleep(400)).id(id))
                .await
                .unwrap();
        }
        assert_eq!(masters_with_keys(&cluster, ns).len(), 3);
        // `a` holds both slots: killed, its runs end here, and `b` starts
        // the next job only once their leases (1 s) run out.
        assert!(events.wait("start", 2, Duration::from_secs(10)).await);
        let killed_pid = a.pid();
        a.kill();
        let killed_at = Utc::now().timestamp_micros();
        let b = ChildWorker::spawn_with_env(BIN, &url, ns, (1000, 300, 10), &env, &events).await;
        for id in &ids {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while producer.status(id).await.unwrap() != JobStatus::Completed {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} never completed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let all = events.all();
        let killed_runs = all
            .iter()
            .filter(|e| e.event == "start" && e.pid == killed_pid)
            .filter(|s| {
                !all.iter().any(|e| {
                    e.event == "end"
                        && e.job_id == s.job_id
                        && e.attempt == s.attempt
                        && e.pid == s.pid
                })
            })
            .count();
        assert!(killed_runs > 0, "the killed worker held no slot: {all:?}");
        // The most runs at once, a killed run ending at the kill.
        let mut edges: Vec<(i64, i32)> = Vec::new();
        for start in all.iter().filter(|e| e.event == "start") {
            let end = all
                .iter()
                .find(|e| {
                    e.event == "end"
                        && e.job_id == start.job_id
                        && e.attempt == start.attempt
                        && e.pid == start.pid
                })
                .map(|e| e.t)
                .unwrap_or(killed_at);
            edges.push((start.t, 1));
            edges.push((end, -1));
        }
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, delta) in edges {
            now += delta;
            most = most.max(now);
        }
        assert_eq!(most, 2, "the limit is 2 across the masters: {all:?}");
        drop(b);
        producer.close().await;
    }

    /// A run whose slot in shard 0 is gone (its count evicted, or deleted by
    /// hand) learns it at its next renewal and stops, as a run whose lease
    /// ran out does: the limit is never held by a run nobody counts. Its job
    /// runs again once its lease runs out, granted anew.
    #[tokio::test]
    async fn a_run_whose_slot_is_gone_stops_at_its_next_renewal() {
        let server = RedisServer::start();
        let probe = Probe::default();
        let s = Scheduler::builder(server.url())
            .namespace("slot-gone")
            .shards(SHARDS)
            .register::<LimitedProbe>()
            .provide(probe.clone())
            .worker(WorkerConfig {
                lease: Duration::from_millis(1000),
                heartbeat: Some(Duration::from_millis(300)),
                ..WorkerConfig::default()
            })
            .start()
            .await
            .unwrap();
        s.enqueue(JobRequest::<LimitedProbe>::new(ProbeArgs::new("x").sleep(3000)).id("long"))
            .await
            .unwrap();
        assert!(probe.wait_started(1, Duration::from_secs(10)).await);
        let keys = server
            .cli(&["--scan", "--pattern", "*:g:slots:t:limited_probe"])
            .unwrap();
        let key = keys.lines().next().expect("the task's slots in shard 0");
        assert!(key.starts_with("{slot-gone/0-of-3"), "{key}");
        server.cli(&["DEL", key]).unwrap();
        assert!(
            probe.wait_started(2, Duration::from_secs(10)).await,
            "{:?}",
            probe.runs()
        );
        let runs = probe.runs_of("long");
        assert_eq!(runs[0].end, None, "the first run went on: {runs:?}");
        assert_eq!(runs[1].attempt, 2, "{runs:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.status("long").await.unwrap() != JobStatus::Completed {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", probe.runs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.close().await;
    }

    /// The shard of a job id as the README states it: FNV-1a (64 bits) of the
    /// id modulo the number of shards.
    fn shard_of(id: &str) -> usize {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(SHARDS)) as usize
    }

    /// The first id `<prefix><i>` that lives in `shard`.
    fn id_on(shard: usize, prefix: &str) -> String {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|id| shard_of(id) == shard)
            .unwrap()
    }

    /// The ids in each shard's due set, in shard order (read off Redis, so
    /// the test's idea of where an id lives is checked, not assumed).
    fn due_by_shard(server: &RedisServer, ns: &str) -> Vec<BTreeSet<String>> {
        (0..SHARDS)
            .map(|i| {
                let pattern = format!("{{{ns}/{i}-of-{SHARDS}.*}}:due");
                let keys = server.cli(&["--scan", "--pattern", &pattern]).unwrap();
                let key = keys.lines().next().unwrap_or_else(|| panic!("{pattern}"));
                let ids = server.cli(&["ZRANGE", key, "0", "-1"]).unwrap();
                ids.lines().map(str::to_string).collect()
            })
            .collect()
    }

    /// An idle worker of a sharded namespace sleeps until the earliest due
    /// job of any shard (never until its `max_idle`, here 30 s), and an
    /// enqueue on any shard wakes it. One server holds the three shards:
    /// the worker's merge of the shards' wake times is what is tested.
    #[tokio::test]
    async fn an_idle_worker_sleeps_until_the_earliest_job_of_any_shard_and_any_shard_wakes_it() {
        let server = RedisServer::start();
        let url = server.url();
        let ns = "wake";
        let probe = Probe::default();
        let producer = sharded(&url, ns, &probe, false).await;
        // Every shard has a far job; the near ones are due one after another
        // on shards 2, 0, 1, enqueued before the worker starts so that no
        // wake notice tells it about them: only the claims' wake times do.
        let now = Utc::now();
        for shard in 0..usize::from(SHARDS) {
            let id = id_on(shard, "far-");
            producer
                .enqueue(job(&id, "far").at(now + TimeDelta::hours(1)))
                .await
                .unwrap();
        }
        let near: Vec<(String, chrono::DateTime<Utc>)> = [2, 0, 1]
            .into_iter()
            .zip(1..)
            .map(|(shard, k)| {
                let due = now + TimeDelta::milliseconds(1500 * k);
                (id_on(shard, "near-"), due)
            })
            .collect();
        for (id, due) in &near {
            producer.enqueue(job(id, "near").at(*due)).await.unwrap();
        }
        let placed = due_by_shard(&server, ns);
        for (shard, (id, _)) in [2, 0, 1].into_iter().zip(&near) {
            assert!(
                placed[shard].contains(id),
                "{id} not on shard {shard}: {placed:?}"
            );
        }
        let worker = Scheduler::builder(&url)
            .namespace(ns)
            .shards(SHARDS)
            .register::<ProbeTask>()
            .provide(probe.clone())
            .worker(WorkerConfig {
                max_idle: Duration::from_secs(30),
                ..WorkerConfig::default()
            })
            .start()
            .await
            .unwrap();
        assert!(probe.wait_finished(3, Duration::from_secs(10)).await);
        for (id, due) in &near {
            let run = probe.runs_of(id);
            assert_eq!(run.len(), 1, "{id}: {run:?}");
            let late = run[0].start - *due;
            assert!(
                late >= TimeDelta::zero() && late < TimeDelta::milliseconds(700),
                "{id} started {late} after it was due"
            );
        }
        // Idle again (next wake in 30 s): a job enqueued on each shard in
        // turn is started at once, woken by that shard's notice.
        for shard in [1, 2, 0] {
            tokio::time::sleep(Duration::from_millis(300)).await;
            woken_at_once(&producer, &probe, shard).await;
        }
        worker.close().await;
        producer.close().await;
    }

    /// `queues()` and `dead_letters()` of a sharded namespace are the sums
    /// and the newest-first merge of every shard's.
    #[tokio::test]
    async fn queues_and_dead_letters_merge_every_shard() {
        let server = RedisServer::start();
        let url = server.url();
        let ns = "merge";
        let probe = Probe::default();
        let s = Scheduler::builder(&url)
            .namespace(ns)
            .shards(SHARDS)
            .register::<ProbeTask>()
            .register::<EmailProbe>()
            .provide(probe.clone())
            .worker(WorkerConfig {
                queues: Queues::Strict(vec!["default".into()]),
                ..WorkerConfig::default()
            })
            .start()
            .await
            .unwrap();
        let later = Utc::now() + TimeDelta::seconds(60);
        for i in 0..7 {
            s.enqueue(job(&format!("d{i}"), "later").at(later))
                .await
                .unwrap();
        }
        for i in 0..5 {
            let email = JobRequest::<EmailProbe>::new(ProbeArgs::new("mail"));
            s.enqueue(email.id(format!("e{i}"))).await.unwrap();
        }
        let placed = due_by_shard(&server, ns);
        assert!(
            placed.iter().all(|ids| !ids.is_empty()),
            "every shard holds some: {placed:?}"
        );
        let queues = s.queues().await.unwrap();
        let of = |name: &str| queues.iter().find(|q| q.name == name).cloned();
        let default = of("default").unwrap();
        assert_eq!((default.deferred, default.queued), (7, 0), "{queues:?}");
        assert_eq!(default.workers, 1, "{queues:?}");
        let emails = of("emails").unwrap();
        assert_eq!((emails.deferred, emails.queued), (0, 5), "{queues:?}");
        assert_eq!(emails.workers, 0, "{queues:?}");
        // Jobs dead-lettered one after another, spread over the shards.
        let dead: Vec<String> = (0..usize::from(SHARDS) * 2)
            .map(|i| id_on(i % usize::from(SHARDS), &format!("dead{i}-")))
            .collect();
        for id in &dead {
            let before = s.counts().await.unwrap().dead_lettered;
            let failing = ProbeArgs::new("dead").mode("permanent");
            s.enqueue(JobRequest::<ProbeTask>::new(failing).id(id))
                .await
                .unwrap();
            let mut waited = 0;
            while s.counts().await.unwrap().dead_lettered == before {
                assert!(waited < 250, "{id} was not dead-lettered");
                waited += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Distinct failure times, so that "newest first" is one order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let letters = s.dead_letters(0, 100).await.unwrap();
        let newest_first: Vec<String> = dead.iter().rev().cloned().collect();
        let listed: Vec<String> = letters.iter().map(|d| d.job_id.clone()).collect();
        assert_eq!(listed, newest_first);
        let page: Vec<String> = s
            .dead_letters(2, 3)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.job_id)
            .collect();
        assert_eq!(page, newest_first[2..5]);
        s.close().await;
    }

    /// PUBLISH messages the cluster bus carried, summed over the nodes (a
    /// plain publish on a cluster goes to every node; CLUSTER INFO leaves
    /// out a count that is zero).
    fn broadcast_publishes(cluster: &RedisCluster) -> u64 {
        cluster
            .nodes
            .iter()
            .map(|node| {
                let info = node.cli(&["CLUSTER", "INFO"]).unwrap();
                info.lines()
                    .find_map(|l| l.strip_prefix("cluster_stats_messages_publish_sent:"))
                    .map_or(0, |n| n.trim().parse::<u64>().unwrap())
            })
            .sum()
    }

    /// A worker that finds nothing by itself for 30 s (max_idle) and whose
    /// heartbeat is 10 s away (lease 30 s): what it does sooner, a notice
    /// made it do.
    async fn deaf_worker(url: &str, ns: &str, probe: &Probe) -> Scheduler {
        Scheduler::builder(url)
            .namespace(ns)
            .shards(SHARDS)
            .register::<ProbeTask>()
            .provide(probe.clone())
            .worker(WorkerConfig {
                max_idle: Duration::from_secs(30),
                lease: Duration::from_secs(30),
                ..WorkerConfig::default()
            })
            .start()
            .await
            .unwrap()
    }

    /// The key prefix (`{tag}:`) of a shard of `ns`, read off its generation
    /// counter on whichever master holds it.
    fn shard_prefix(cluster: &RedisCluster, ns: &str, shard: usize) -> String {
        cluster
            .masters()
            .into_iter()
            .find_map(|m| {
                let pattern = format!("{{{ns}/{shard}-of-*:seq");
                let keys = cluster.nodes[m].cli(&["--scan", "--pattern", &pattern]);
                keys.unwrap().lines().next().map(str::to_string)
            })
            .and_then(|seq| seq.strip_suffix("seq").map(str::to_string))
            .unwrap()
    }

    /// A job enqueued now on `shard` (`now-<i>`) starts within 700 ms: woken
    /// by the shard's notice.
    async fn woken_at_once(producer: &Scheduler, probe: &Probe, shard: usize) {
        let id = id_on(shard, "now-");
        let before = probe.runs().len();
        let sent = Utc::now();
        producer.enqueue(job(&id, "now")).await.unwrap();
        assert!(
            probe.wait_started(before + 1, Duration::from_secs(5)).await,
            "{id} on shard {shard} did not start"
        );
        let late = probe.runs_of(&id)[0].start - sent;
        assert!(
            late < TimeDelta::milliseconds(700),
            "{id} on shard {shard} started {late} after its enqueue"
        );
    }

    /// [`woken_at_once`], then a running job there is aborted and its cancel
    /// answered within 2 s (by the shard's abort and outcome notices).
    async fn woken_and_aborted_at_once(producer: &Scheduler, probe: &Probe, shard: usize) {
        woken_at_once(producer, probe, shard).await;
        let before = probe.runs().len();
        let long = id_on(shard, "long-");
        let sleeps = JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(20_000));
        producer.enqueue(sleeps.id(&long)).await.unwrap();
        assert!(
            probe.wait_started(before + 1, Duration::from_secs(5)).await,
            "{long} on shard {shard} did not start"
        );
        let asked = std::time::Instant::now();
        let cancel = producer.cancel_and_wait(&long, Duration::from_secs(5));
        assert!(matches!(
            cancel.await.unwrap(),
            CancelOutcome::AbortSignalled { .. }
        ));
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{long} on shard {shard} took {:?} to abort",
            asked.elapsed()
        );
        assert_eq!(producer.status(&long).await.unwrap(), JobStatus::Cancelled);
    }

    /// On a Redis 7 cluster every notice of a sharded namespace (wakes,
    /// aborts, outcomes, events) is a shard message (SPUBLISH), which the
    /// cluster bus does not copy to the other masters; a worker idle for 30 s
    /// is still woken by each shard, a cancel still aborts a running job at
    /// once (its heartbeat is 10 s away), a waiting caller and an events
    /// stream still hear each shard. A plain PUBLISH (a process of an older
    /// version during a rolling deploy) is still heard.
    #[tokio::test]
    async fn notices_stay_in_their_shard_and_still_wake_abort_and_answer() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let ns = "notices";
        let probe = Probe::default();
        let producer = sharded(&url, ns, &probe, false).await;
        let worker = deaf_worker(&url, ns, &probe).await;
        let mut events = producer.events().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let published_before = broadcast_publishes(&cluster);
        for shard in [1, 2, 0] {
            woken_and_aborted_at_once(&producer, &probe, shard).await;
            // The stream heard the shard's events.
            let wanted = [id_on(shard, "now-"), id_on(shard, "long-")];
            let mut heard = BTreeSet::new();
            while !wanted.iter().all(|id| heard.contains(id)) {
                let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                    .await
                    .unwrap_or_else(|_| panic!("no event of {wanted:?}: {heard:?}"))
                    .unwrap()
                    .unwrap();
                heard.insert(event.job_id);
            }
        }
        assert_eq!(
            broadcast_publishes(&cluster),
            published_before,
            "a notice was published to the whole cluster"
        );
        // An event as an older version publishes it, plainly, on a shard's
        // channel: the stream hears it too.
        let channel = format!("{}events", shard_prefix(&cluster, ns, 0));
        let old = r#"["enqueued","from-old","probe","7","0","1700000000000","1700000000000",""]"#;
        cluster.nodes[0].cli(&["PUBLISH", &channel, old]).unwrap();
        let event = loop {
            let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .expect("the plain publish was not heard")
                .unwrap()
                .unwrap();
            if event.job_id == "from-old" {
                break event;
            }
        };
        assert_eq!(event.generation, 7);
        events.close().await;
        worker.close().await;
        producer.close().await;
    }

    /// A resharding moves a shard's slot to another master: Redis drops the
    /// subscribers of its shard channels (an unsolicited SUNSUBSCRIBE), and
    /// the worker's subscriber follows the slot to its new master within
    /// seconds, so that the shard's wakes and aborts are heard again.
    #[tokio::test]
    async fn shard_channels_follow_their_slot_to_another_master() {
        let cluster = RedisCluster::start();
        let url = cluster.url();
        let ns = "moving";
        let probe = Probe::default();
        let producer = sharded(&url, ns, &probe, false).await;
        let worker = deaf_worker(&url, ns, &probe).await;
        let first = id_on(1, "first-");
        producer.enqueue(job(&first, "first")).await.unwrap();
        assert!(probe.wait_finished(1, Duration::from_secs(5)).await);
        // Shard 1's slot to another master.
        let seq = format!("{}seq", shard_prefix(&cluster, ns, 1));
        let from = cluster.node_of(&seq);
        let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
        cluster.migrate_slot_of(&seq, to);
        // Time to follow (it checks every 2 s); then the moved shard's
        // notices are heard again (the enqueue after the move also meets
        // MOVED, which the client follows).
        tokio::time::sleep(Duration::from_secs(3)).await;
        woken_and_aborted_at_once(&producer, &probe, 1).await;
        worker.close().await;
        producer.close().await;
    }
}
