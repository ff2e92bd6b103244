//! One seed, end to end: start the server, workers and producers, send the
//! operations while the faults play out, heal everything, wait out a quiet
//! period, read every id's final state, and return the merged history.

use std::sync::Arc;
use std::time::Duration;

use scheduler::Scheduler;
use tokio::sync::Mutex;

use super::event::Event;
use super::faults::{apply, record_fired, Pool};
use super::plan::{FaultClass, Plan};
use super::producer::{observe, Generations, Producer};
use super::recorder::Recorder;
use super::rng::Rng;
use super::task::HistTask;
use super::workers::{merge, MemoryWorker};
use crate::proxy::Proxy;
use crate::RedisServer;

/// The longest quiet period: leases expire and retries finish well within it.
const QUIET_LIMIT: Duration = Duration::from_secs(25);

async fn producer_client(url: &str, ns: &str) -> Scheduler {
    Scheduler::builder(url)
        .namespace(ns)
        .command_timeout(Duration::from_secs(1))
        .register::<HistTask>()
        .producer_only()
        .start()
        .await
        .expect("producer starts")
}

fn producers(plan: &Plan, clients: Vec<Scheduler>, rec: &Recorder) -> Vec<Producer> {
    let mut rng = Rng::new(plan.seed.wrapping_mul(31).wrapping_add(7));
    let generations = Generations::default();
    clients
        .into_iter()
        .enumerate()
        .map(|(i, scheduler)| Producer {
            name: format!("p{i}"),
            scheduler,
            rng: rng.fork(),
            ids: plan.ids,
            recorder: rec.clone(),
            generations: generations.clone(),
        })
        .collect()
}

/// Reads every id until none is deferred, queued or running (or the limit
/// passes), then once more as the final observation.
async fn quiet_period(client: &Scheduler, plan: &Plan, rec: &Recorder) {
    let deadline = tokio::time::Instant::now() + QUIET_LIMIT;
    let scratch = Recorder::default();
    loop {
        let mut busy = 0;
        for i in 0..plan.ids {
            let id = format!("j{i}");
            match observe(client, "final", &id, false, &scratch).await {
                Some((_, status))
                    if !matches!(status.as_str(), "deferred" | "queued" | "running") => {}
                _ => busy += 1,
            }
        }
        if busy == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..plan.ids {
        let _ = observe(client, "final", &format!("j{i}"), true, rec).await;
    }
}

/// Runs `plan` on real redis-servers through fault-injecting proxies, with
/// `history-worker` processes (`bin`).
pub async fn run_redis(plan: &Plan, bin: &str) -> Vec<Event> {
    crate::init_tracing();
    let rec = Recorder::default();
    let ns = crate::namespace("hist");
    let dir = std::env::temp_dir().join(format!("fault-history-{}-{}", std::process::id(), ns));
    std::fs::create_dir_all(&dir).expect("history dir");
    let server = RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]);
    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..plan.producers {
        let proxy = Arc::new(Proxy::start(server.port()).await);
        clients.push(producer_client(&proxy.url(), &ns).await);
        proxies.push(proxy);
    }
    let pool = Arc::new(Mutex::new(Pool {
        bin: bin.to_string(),
        ns: ns.clone(),
        dir: dir.clone(),
        server,
        workers: Vec::new(),
        producer_proxies: proxies,
        next_worker: 0,
        files: Vec::new(),
        retired: Vec::new(),
        recorder: rec.clone(),
    }));
    for _ in 0..plan.workers {
        pool.lock().await.add_worker().await;
    }
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_millis(plan.duration_ms);
    let running: Vec<_> = producers(plan, clients.clone(), &rec)
        .into_iter()
        .map(|p| tokio::spawn(p.run_until(deadline)))
        .collect();
    let mut lifts = Vec::new();
    for fault in &plan.faults {
        tokio::time::sleep_until(start + Duration::from_millis(fault.at_ms)).await;
        if let Some(lift) = apply(&pool, fault).await {
            lifts.push(lift);
        }
    }
    for p in running {
        let _ = p.await;
    }
    for lift in lifts {
        let _ = lift.await;
    }
    pool.lock().await.heal();
    let port = pool.lock().await.server.port();
    let direct = producer_client(&format!("redis://127.0.0.1:{port}"), &ns).await;
    quiet_period(&direct, plan, &rec).await;
    let mut p = pool.lock().await;
    record_fired(&rec, &p.fired());
    while let Some(w) = p.workers.pop() {
        w.terminate(&rec).await;
    }
    for c in clients {
        c.close().await;
    }
    direct.close().await;
    let mut events = rec.events();
    events.extend(merge(&p.files));
    let _ = std::fs::remove_dir_all(&dir);
    events
}

/// Runs `plan`'s operations on the memory backend with in-process workers;
/// of its faults only worker closes apply.
pub async fn run_memory(plan: &Plan) -> Vec<Event> {
    let rec = Recorder::default();
    let ns = crate::namespace("hist");
    let url = format!("memory://{ns}");
    let mut clients = Vec::new();
    for _ in 0..plan.producers {
        clients.push(producer_client(&url, &ns).await);
    }
    let mut workers = Vec::new();
    let mut next = 0;
    for _ in 0..plan.workers {
        workers.push(MemoryWorker::start(&url, &ns, &format!("m{next}"), &rec).await);
        next += 1;
    }
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_millis(plan.duration_ms);
    let running: Vec<_> = producers(plan, clients.clone(), &rec)
        .into_iter()
        .map(|p| tokio::spawn(p.run_until(deadline)))
        .collect();
    let mut closing = Vec::new();
    for fault in plan
        .faults
        .iter()
        .filter(|f| f.class == FaultClass::WorkerClose)
    {
        tokio::time::sleep_until(start + Duration::from_millis(fault.at_ms)).await;
        let i = (fault.target % workers.len() as u64) as usize;
        let w = workers.remove(i);
        workers.push(MemoryWorker::start(&url, &ns, &format!("m{next}"), &rec).await);
        next += 1;
        let rec = rec.clone();
        let t = super::event::now_us();
        closing.push(tokio::spawn(async move {
            let name = w.name.clone();
            w.close(&rec).await;
            rec.record(Event::Fault(super::event::Fault {
                kind: "worker_close".into(),
                target: name,
                t,
                until: Some(super::event::now_us()),
            }));
        }));
    }
    for p in running {
        let _ = p.await;
    }
    for c in closing {
        let _ = c.await;
    }
    quiet_period(&clients[0], plan, &rec).await;
    for w in workers {
        w.close(&rec).await;
    }
    for c in clients {
        c.close().await;
    }
    rec.events()
}

/// The fault classes to inject: `FAULT_HISTORY_FAULTS` (comma-separated
/// names, `none` for none), else `default`.
pub fn classes_from_env(default: &[FaultClass]) -> Vec<FaultClass> {
    match std::env::var("FAULT_HISTORY_FAULTS") {
        Ok(list) => list
            .split(',')
            .filter_map(|name| {
                let name = name.trim();
                let class = FaultClass::parse(name);
                assert!(
                    class.is_some() || name == "none" || name.is_empty(),
                    "unknown fault class {name:?}; known: {:?}",
                    FaultClass::ALL.map(FaultClass::name)
                );
                class
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}
