//! OpenTelemetry traces, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP,
//! `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (default) or `http/json`; the SDK's
//! other `OTEL_*` variables apply, e.g. `OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`).
//!
//! The spans are the `tracing` spans the server opens, exported by
//! `tracing-opentelemetry`: one per HTTP request (`POST /graphql`, with the GraphQL
//! operation's type and name as attributes, child of the caller's W3C `traceparent`), async-graphql's spans for parsing,
//! validation and every resolver, and one per saga step a worker runs, child of the
//! request that placed the order (its `traceparent` travels in the saga's payload), so
//! a checkout's steps join the request's trace.
//!
//! Off, none of this costs anything: no layer, no resolver spans, no saga spans.
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether spans are exported (decided once, at start).
pub fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// Flushes the spans still buffered when dropped: hold it until the process ends.
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("flushing the last traces failed: {err}");
        }
    }
}

/// The layer that exports spans, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn layer<S>() -> anyhow::Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Exporting,
    )>,
>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let configured = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .is_ok_and(|endpoint| !endpoint.trim().is_empty());
    let _ = ENABLED.set(configured);
    if !configured {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json, got '{other}'"
        ),
    };
    // The SDK exports from a thread of its own, outside the async runtime: a blocking
    // client is the one that works there. It runs a runtime of its own, which may not
    // be built (nor dropped) on a thread of ours: another thread builds it.
    let client = std::thread::spawn(|| {
        reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP client panicked"))??;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Blocking(client))
        .with_protocol(protocol)
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "shopgraph".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("shopgraph");
    let _ = TRACER.set(tracer.clone());
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Exporting(provider),
    )))
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`), if any.
pub fn continue_from_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// The current span's W3C `traceparent`, to carry its trace into work done later (a
/// saga's steps).
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of a `traceparent` carried from earlier work.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// `opentelemetry_http::HttpClient` over reqwest's blocking client.
#[derive(Debug)]
struct Blocking(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Blocking {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let request = reqwest::blocking::Request::try_from(request)?;
        let response = self.0.execute(request)?;
        let mut answer = opentelemetry_http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        Ok(answer.body(response.bytes()?)?)
    }
}

/// Marks the current request's span with its GraphQL operation (OpenTelemetry's
/// GraphQL attributes). Its name stays `POST /graphql`, as HTTP server spans are
/// named, and as the SDK fixes a span's name once it has started.
pub fn name_request(kind: &str, name: Option<&str>) {
    let span = tracing::Span::current();
    span.record("graphql.operation.type", kind);
    if let Some(name) = name {
        span.record("graphql.operation.name", name);
    }
}

static TRACER: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

/// A span for one SQL statement that just ran for `elapsed`, child of the current span
/// (a resolver's, a request's). SeaORM reports a statement after it ran, so the span is
/// made with its real start and end rather than opened around it. Only the statement's
/// text is recorded, never its values (they may hold e-mails or password hashes).
/// Statements outside any traced work (a worker's between steps) make no span.
pub fn statement(sql: &str, elapsed: std::time::Duration, failed: bool) {
    use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
    let Some(tracer) = TRACER.get() else { return };
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let end = std::time::SystemTime::now();
    let start = end.checked_sub(elapsed).unwrap_or(end);
    let operation = sql
        .split_whitespace()
        .next()
        .unwrap_or("SQL")
        .to_ascii_uppercase();
    let text: String = sql.chars().take(MAX_STATEMENT_CHARS).collect();
    let mut span = tracer
        .span_builder(operation)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([opentelemetry::KeyValue::new("db.query.text", text)])
        .start_with_context(tracer, &parent);
    if failed {
        span.set_status(Status::error("the statement failed"));
    }
    span.end_with_timestamp(end);
}

/// Longer statement texts are cut (a batch load's list of placeholders).
const MAX_STATEMENT_CHARS: usize = 2_000;
