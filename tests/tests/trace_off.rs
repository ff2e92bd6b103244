//! Without the `opentelemetry` feature (as this suite builds the scheduler),
//! a job enqueued inside an OpenTelemetry trace stores no trace context.
#![allow(clippy::unwrap_used)]
#![cfg(not(feature = "otel"))]

use std::time::Duration;

use scheduler::JobRequest;
use scheduler_tests::otel::{exporter, stored_fields};
use scheduler_tests::setup::producer;
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, RedisServer};
use tracing::Instrument;

#[tokio::test]
async fn without_the_feature_no_trace_context_is_stored() {
    exporter();
    let server = RedisServer::start();
    let ns = namespace("otel-off");
    let web = producer(&server.url(), &ns).await;
    let request = tracing::info_span!("request");
    async {
        // The span is recorded by OpenTelemetry: there is a context to carry.
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        assert!(tracing::Span::current()
            .context()
            .span()
            .span_context()
            .is_valid());
        web.enqueue(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("x"))
                .id("in-trace")
                .after(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    }
    .instrument(request)
    .await;
    assert_eq!(stored_fields(server.port(), &ns, "in-trace"), Some(7));
    web.close().await;
}
