//! An OpenTelemetry pipeline for the trace tests: `tracing` spans exported
//! to an in-memory exporter, installed once per test process.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
use tracing_subscriber::layer::SubscriberExt;

/// The exporter every span of this process ends in (installed on first use
/// as the global `tracing` subscriber, before anything else installs one).
pub fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
                .build();
            let subscriber = tracing_subscriber::registry().with(
                tracing_opentelemetry::layer().with_tracer(provider.tracer("scheduler-tests")),
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("the first subscriber of this process");
            exporter
        })
        .clone()
}

/// The number of fields of the record stored for a pending job (`pending`
/// hash, msgpack array): 7 for a new job without optional fields, 16 when
/// its trace context (the last field) is stored.
pub fn stored_fields(port: u16, ns: &str, id: &str) -> Option<usize> {
    let script = "return #cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))";
    let key = format!("{{{ns}}}:pending");
    crate::redis_server::cli_at(port, &["EVAL", script, "1", &key, id])?
        .trim()
        .parse()
        .ok()
}
