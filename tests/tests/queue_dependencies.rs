//! A worker needs only the dependencies of the tasks of the queues it
//! serves (a binary of its own: its `#[task]` needs a dependency the other
//! test files' workers do not provide).
#![allow(clippy::unwrap_used)]

use scheduler::{JobStatus, Queues, Scheduler, WorkerConfig};
use scheduler_tests::setup::{fast_worker, wait_status};
use scheduler_tests::tasks::ProbeTask;
use scheduler_tests::{conformance, namespace, Fixture, Probe};

conformance!(a_worker_needs_only_the_dependencies_of_the_queues_it_serves);

/// A dependency only the e-mail task takes.
struct Mailer;

#[scheduler::task(queue = "mailer-queue")]
async fn mail_with(mailer: scheduler::Dep<Mailer>, to: String) {
    let _ = (mailer, to);
}

async fn a_worker_needs_only_the_dependencies_of_the_queues_it_serves(fx: Fixture) {
    let ns = namespace("deps-by-queue");
    let probe = Probe::default();
    // `mail_with` (in this binary) needs a Mailer; a worker of `default` runs without one.
    let s = Scheduler::builder(fx.url())
        .namespace(&ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            queues: Queues::strict(["default"]),
            ..fast_worker()
        })
        .start()
        .await
        .unwrap();
    s.close().await;
    // Serving every queue of its tasks, it needs it: refused at start, naming it.
    let refused = Scheduler::builder(fx.url())
        .namespace(&ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(fast_worker())
        .start()
        .await;
    match refused {
        Err(scheduler::Error::MissingDependencies { details }) => {
            assert!(details.contains("mail_with"), "{details}")
        }
        other => panic!("expected MissingDependencies, got {:?}", other.map(|_| ())),
    }
    // And with it, the mailer queue runs.
    let with = Scheduler::builder(fx.url())
        .namespace(&ns)
        .provide(probe.clone())
        .provide(Mailer)
        .worker(WorkerConfig {
            queues: Queues::strict(["mailer-queue"]),
            ..fast_worker()
        })
        .start()
        .await
        .unwrap();
    mail_with::enqueue(&with, "m-1", "ada@example.com".into())
        .await
        .unwrap();
    assert_eq!(
        wait_status(&with, "m-1", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed
    );
    with.close().await;
}
