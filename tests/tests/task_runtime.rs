//! `#[task]` end to end, on Redis and in memory: tasks defined in another module
//! are found through `inventory` (no registration list), receive their
//! dependencies, return typed values, and the generated helpers drive them.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::{CancelOutcome, EnqueueOutcome, Error, JobStatus, ReplaceOutcome, Scheduler};
use scheduler_tests::{conformance, namespace, wait_until, Fixture};

mod notifications {
    use scheduler::{task, Dep, JobContext, TaskError};
    use serde::{Deserialize, Serialize};

    /// Where notifications go.
    pub(crate) trait Outbox: Send + Sync {
        fn deliver(&self, user: &str, text: &str, job_id: &str);
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Message {
        pub(crate) title: String,
        pub(crate) content: String,
    }

    /// Sends a message to users; returns how many got it.
    #[task(max_attempts = 2)]
    pub(crate) async fn notify_users(
        outbox: Dep<dyn Outbox>,
        ctx: JobContext,
        user_ids: Vec<String>,
        message: Message,
    ) -> Result<usize, TaskError> {
        for user in &user_ids {
            outbox.deliver(user, &message.title, ctx.job_id());
        }
        Ok(user_ids.len())
    }
}

use notifications::{notify_users, Message, Outbox};

/// Records deliveries.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, String)>>);

impl Outbox for Recorder {
    fn deliver(&self, user: &str, text: &str, job_id: &str) {
        self.0
            .lock()
            .unwrap()
            .push((user.to_string(), text.to_string(), job_id.to_string()));
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn message(title: &str) -> Message {
    Message {
        title: title.to_string(),
        content: "body".to_string(),
    }
}

async fn start(fx: &Fixture, ns: &str, outbox: Arc<Recorder>) -> Scheduler {
    Scheduler::builder(fx.url())
        .namespace(ns)
        .provide_arc::<dyn Outbox>(outbox)
        .start()
        .await
        .unwrap()
}

async fn typed_helpers_defer_replace_cancel_and_read_results(fx: Fixture) {
    let outbox = Arc::new(Recorder::default());
    let s = start(&fx, &namespace("helpers"), Arc::clone(&outbox)).await;
    assert!(
        s.registry().get("notify_users").is_some(),
        "found through inventory"
    );
    let users = vec!["ada".to_string(), "bob".to_string()];
    // defer_to, then the same id again: a duplicate, not a second notification.
    let at = Utc::now() + TimeDelta::milliseconds(400);
    let first = notify_users::defer_to(&s, "n1", at, users.clone(), message("hello"))
        .await
        .unwrap();
    assert!(first.is_enqueued());
    let again = notify_users::defer_to(&s, "n1", at, users.clone(), message("hello"))
        .await
        .unwrap();
    assert!(matches!(again, EnqueueOutcome::Duplicate { .. }));
    // replace: re-planned atomically with new arguments.
    let replaced = notify_users::replace(&s, "n2", at, users.clone(), message("v1"))
        .await
        .unwrap();
    assert!(matches!(replaced, ReplaceOutcome::Enqueued { .. }));
    let replaced = notify_users::replace(&s, "n2", at, vec!["cyd".into()], message("v2"))
        .await
        .unwrap();
    assert!(matches!(replaced, ReplaceOutcome::Replaced { .. }));
    // defer_by and cancel.
    notify_users::defer_by(
        &s,
        "n3",
        Duration::from_millis(300),
        users.clone(),
        message("never"),
    )
    .await
    .unwrap();
    assert!(matches!(
        notify_users::cancel(&s, "n3").await.unwrap(),
        CancelOutcome::Removed { .. }
    ));
    // enqueue (now).
    notify_users::enqueue(&s, "n4", vec!["dan".into()], message("now"))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || outbox.count() >= 4).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered: Vec<(String, String)> = outbox
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(u, t, _)| (u.clone(), t.clone()))
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        vec![
            ("ada".into(), "hello".into()),
            ("bob".into(), "hello".into()),
            ("cyd".into(), "v2".into()),
            ("dan".into(), "now".into())
        ]
    );
    for id in ["n1", "n2", "n4"] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while notify_users::status(&s, id).await.unwrap() != JobStatus::Completed
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        s.result::<notify_users>("n1").await.unwrap(),
        scheduler::JobResult::Completed(2)
    );
    assert_eq!(
        s.result::<notify_users>("n2").await.unwrap(),
        scheduler::JobResult::Completed(1)
    );
    assert_eq!(
        notify_users::status(&s, "n3").await.unwrap(),
        JobStatus::Cancelled
    );
    s.close().await;
}

async fn bulk_enqueue_through_the_typed_job_builder(fx: Fixture) {
    let outbox = Arc::new(Recorder::default());
    let s = start(&fx, &namespace("bulk"), Arc::clone(&outbox)).await;
    let jobs = (0..50)
        .map(|i| notify_users::job(vec![format!("u{i}")], message("bulk")).id(format!("b{i}")));
    let outcomes = s.enqueue_many(jobs).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.is_enqueued()).count(), 50);
    assert!(wait_until(Duration::from_secs(10), || outbox.count() >= 50).await);
    s.close().await;
}

async fn a_dependency_override_takes_effect(fx: Fixture) {
    let real = Arc::new(Recorder::default());
    let fake = Arc::new(Recorder::default());
    let s = Scheduler::builder(fx.url())
        .namespace(namespace("override"))
        .provide_arc::<dyn Outbox>(real.clone())
        .provide_arc::<dyn Outbox>(fake.clone())
        .start()
        .await
        .unwrap();
    notify_users::enqueue(&s, "o", vec!["x".into()], message("m"))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || fake.count() == 1).await);
    assert_eq!(real.count(), 0);
    s.close().await;
}

async fn a_missing_dependency_fails_start_up_naming_task_and_type(fx: Fixture) {
    let err = Scheduler::builder(fx.url())
        .namespace(namespace("missing"))
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::MissingDependencies { .. }), "{text}");
    assert!(
        text.contains("task `notify_users`") && text.contains("dyn") && text.contains("Outbox"),
        "{text}"
    );
    // A producer-only process needs no dependencies.
    let producer = Scheduler::builder(fx.url())
        .namespace(namespace("missing"))
        .producer_only()
        .start()
        .await
        .unwrap();
    producer.close().await;
}

conformance!(
    typed_helpers_defer_replace_cancel_and_read_results,
    bulk_enqueue_through_the_typed_job_builder,
    a_dependency_override_takes_effect,
    a_missing_dependency_fails_start_up_naming_task_and_type,
);

/// `result` distinguishes pending (with a failed attempt's error), running,
/// completed with the typed value, failed with its reason, cancelled and
/// unknown; `result_untyped` gives the value as JSON.
#[tokio::test]
async fn result_says_what_became_of_the_job() {
    use scheduler::testing::TestScheduler;
    use scheduler::JobResult;

    // Every task of this binary runs in the harness: `notify_users` needs
    // its outbox too.
    let test = TestScheduler::builder()
        .provide_arc::<dyn Outbox>(Arc::new(Recorder::default()))
        .register::<halve>()
        .start()
        .await
        .unwrap();
    halve::enqueue(&test, "even", 8).await.unwrap();
    halve::enqueue(&test, "odd", 3).await.unwrap();
    halve::enqueue(&test, "zero", 0).await.unwrap();
    halve::defer_by(&test, "later", std::time::Duration::from_secs(60), 2)
        .await
        .unwrap();
    assert!(matches!(
        halve::result(&test, "even").await.unwrap(),
        JobResult::Pending {
            attempts: 0,
            last_error: None,
            ..
        }
    ));
    test.run_pending().await.unwrap();
    assert_eq!(
        halve::result(&test, "even").await.unwrap(),
        JobResult::Completed(4)
    );
    assert_eq!(
        test.result_untyped("even").await.unwrap(),
        JobResult::Completed(serde_json::json!(4))
    );
    match halve::result(&test, "odd").await.unwrap() {
        JobResult::Pending {
            attempts: 1,
            last_error: Some(error),
            ..
        } => assert!(error.contains("odd"), "{error}"),
        other => panic!("odd after one attempt: {other:?}"),
    }
    match halve::result(&test, "zero").await.unwrap() {
        JobResult::Failed { reason } => assert!(reason.contains("zero"), "{reason}"),
        other => panic!("zero: {other:?}"),
    }
    test.cancel("later").await.unwrap();
    assert!(matches!(
        halve::result(&test, "later").await.unwrap(),
        JobResult::Cancelled { .. }
    ));
    assert_eq!(
        halve::result(&test, "never-enqueued").await.unwrap(),
        JobResult::Unknown
    );
}

/// Halves even numbers; an odd one fails and is retried, zero fails for good.
#[scheduler::task(max_attempts = 2)]
async fn halve(n: u32) -> Result<u32, scheduler::TaskError> {
    match n {
        0 => Err(scheduler::TaskError::permanent("zero cannot be halved")),
        n if n % 2 == 1 => Err(scheduler::TaskError::retry("odd")),
        n => Ok(n / 2),
    }
}
