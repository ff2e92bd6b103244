//! Trace context carried with a job, from the span that enqueued it to the
//! span that runs it (feature `opentelemetry`).
//!
//! At enqueue, the OpenTelemetry context of the current `tracing` span (through
//! `tracing-opentelemetry`) is stored with the job as a W3C `traceparent`
//! (`00-<trace id>-<span id>-<flags>`); the worker makes it the parent of the
//! job's span, so one trace shows the request that deferred the job, the
//! enqueue and each attempt, in whatever process and however much later they
//! run. Without the feature, or outside a span that OpenTelemetry records,
//! nothing is stored. The trace state (`tracestate`) is not carried.
//!
//! The `traceparent` text is written and read here rather than with the SDK's
//! `TraceContextPropagator`: it is a fixed 55-character format, and the SDK
//! would be a large dependency for it.

/// The `traceparent` of the current span, when the feature is on and the
/// span belongs to a valid OpenTelemetry trace.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Without the feature, nothing is stored.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn current() -> Option<String> {
    None
}

/// Makes the trace a job was enqueued in the parent of its span.
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let Some(parent) = traceparent.and_then(parse) else {
        return;
    };
    let context = opentelemetry::Context::new().with_remote_span_context(parent);
    if let Err(e) = span.set_parent(context) {
        tracing::debug!(error = %e, "the job's span could not take the enqueuing trace as parent");
    }
}

/// Without the feature, nothing to restore.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(_span: &tracing::Span, _traceparent: Option<&str>) {}

/// Reads a `traceparent` (version 00); `None` when it is not one.
#[cfg(feature = "opentelemetry")]
fn parse(text: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    let mut parts = text.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00"
        || parts.next().is_some()
        || trace_id.len() != 32
        || span_id.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_garbage_is_refused() {
        let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = parse(text).expect("a traceparent");
        assert_eq!(
            format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            ),
            text
        );
        assert!(context.is_remote());
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033zz-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
