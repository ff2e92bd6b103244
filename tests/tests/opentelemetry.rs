//! Feature `opentelemetry` (run by `./scripts/test` on its own, with
//! `--features otel`): the span that runs a job is a child of the span that
//! enqueued it, through the store, for every attempt; a job enqueued outside
//! any trace stores nothing and its span starts a trace of its own.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;
use scheduler::{JobRequest, JobResult};
use scheduler_tests::otel::{exporter, stored_fields};
use scheduler_tests::setup::{fast_worker, producer, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{conformance, namespace, Fixture, Probe, RedisServer};
use tracing::Instrument;

const LONG: Duration = Duration::from_secs(20);

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

/// The finished spans named `name` whose `job_id` attribute is `id` (every
/// span of that name when `id` is empty).
fn spans(name: &str, id: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            id.is_empty()
                || s.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "job_id" && kv.value.as_str() == id)
        })
        .collect()
}

/// The `n` spans `spans(name, id)` finds, once they have ended (a job's
/// span ends just after its outcome is recorded, so after `wait` answers).
async fn finished_spans(name: &str, id: &str, n: usize) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let found = spans(name, id);
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(found.len(), n, "{found:#?}");
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one request span with this marker.
fn request_span(marker: &str) -> SpanData {
    let found: Vec<_> = spans("request", "")
        .into_iter()
        .filter(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "marker" && kv.value.as_str() == marker)
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

conformance!(each_attempt_runs_in_the_trace_that_enqueued_the_job);

async fn each_attempt_runs_in_the_trace_that_enqueued_the_job(fx: Fixture) {
    exporter();
    let ns = namespace("otel");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    // Enqueued through another handle, as a web process would.
    let web = producer(&fx.url(), &ns).await;
    // Ids of this test alone: both backends' tests share the exporter.
    let (traced, untraced) = (format!("traced-{ns}"), format!("untraced-{ns}"));
    let marker = format!("{ns}-traced");
    let request = tracing::info_span!("request", marker = %marker);
    async {
        web.enqueue(job(&traced, ProbeArgs::new("abc").fail(1)))
            .await
            .unwrap();
    }
    .instrument(request)
    .await;
    assert_eq!(
        web.wait_typed::<ProbeTask>(&traced, LONG).await.unwrap(),
        JobResult::Completed(3)
    );
    let request = request_span(&marker);
    // Both attempts (the first failed and was retried).
    let runs = finished_spans("job", &traced, 2).await;
    for run in &runs {
        assert_eq!(
            run.span_context.trace_id(),
            request.span_context.trace_id(),
            "{run:#?}"
        );
        assert_eq!(run.parent_span_id, request.span_context.span_id());
        assert!(run.parent_span_is_remote);
    }

    // Outside any span: nothing to carry, the run starts its own trace.
    web.enqueue(job(&untraced, ProbeArgs::new("ab")))
        .await
        .unwrap();
    assert_eq!(
        web.wait_typed::<ProbeTask>(&untraced, LONG).await.unwrap(),
        JobResult::Completed(2)
    );
    let runs = finished_spans("job", &untraced, 1).await;
    assert_eq!(runs[0].parent_span_id, SpanId::INVALID);
    assert_ne!(runs[0].span_context.trace_id(), TraceId::INVALID);
    assert_ne!(
        runs[0].span_context.trace_id(),
        request.span_context.trace_id()
    );
    web.close().await;
    worker.close().await;
}

/// On Redis the context is one more field of the job record, present only
/// for a job enqueued in a trace; a batch of traced jobs stores it for each.
#[tokio::test]
async fn the_context_is_stored_with_the_job_only_in_a_trace() {
    exporter();
    let server = RedisServer::start();
    let ns = namespace("otel-stored");
    let web = producer(&server.url(), &ns).await;
    let later = Duration::from_secs(3600);
    async {
        web.enqueue(job("in-trace", ProbeArgs::new("x")).after(later))
            .await
            .unwrap();
        web.enqueue_many([
            job("batch-1", ProbeArgs::new("x")).after(later),
            job("batch-2", ProbeArgs::new("x")).after(later),
        ])
        .await
        .unwrap();
    }
    .instrument(tracing::info_span!("request", marker = "stored"))
    .await;
    web.enqueue(job("no-trace", ProbeArgs::new("x")).after(later))
        .await
        .unwrap();
    for id in ["in-trace", "batch-1", "batch-2"] {
        assert_eq!(stored_fields(server.port(), &ns, id), Some(16), "{id}");
    }
    assert_eq!(stored_fields(server.port(), &ns, "no-trace"), Some(7));
    web.close().await;
}
