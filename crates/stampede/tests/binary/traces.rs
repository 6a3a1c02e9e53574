//! Traces over OTLP, received by a collector of our own (the OTLP protobuf
//! messages, decoded as a real collector would): a purchase's HTTP span, the
//! group commit that made its order durable and the payment worker's step
//! share the client's trace, in both modes; the worker's log line carries it,
//! and the webhook announcing the order continues it up to the receiver.
//! Over `http/protobuf` in both modes, over `grpc` in embedded mode (the
//! protocol does not depend on the mode).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, token};

/// A span as the collector got it; ids in lower-case hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
}

/// What the collector got so far.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

impl Collector {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    AnyValue::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                    });
                }
            }
        }
    }

    fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// `http/protobuf`: `POST /v1/traces`.
    async fn serve_http(&self) -> SocketAddr {
        let collector = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let collector = collector.clone();
                async move {
                    assert_eq!(headers[CONTENT_TYPE], "application/x-protobuf");
                    collector.take(ExportTraceServiceRequest::decode(body).unwrap());
                    let answer = ExportTraceServiceResponse::default().encode_to_vec();
                    ([(CONTENT_TYPE, "application/x-protobuf")], answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// `grpc`: the collector's `TraceService`, over HTTP/2 without TLS.
    async fn serve_grpc(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = hyper_util::service::TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let executor = hyper_util::rt::TokioExecutor::new();
                    let _ = hyper::server::conn::http2::Builder::new(executor)
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        addr
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A webhook receiver keeping the `traceparent` of each POST.
async fn hook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let kept = kept.clone();
            async move {
                let parent = headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned());
                kept.lock().unwrap().push(parent.unwrap_or_default());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OTLP's `SPAN_KIND_SERVER`.
const SERVER: i32 = 2;

/// Buys and pays one order under the client's trace `trace_id`, then waits
/// until the collector holds the HTTP spans, the group commit and the
/// payment worker's step of that trace, each where it belongs.
async fn a_purchase_is_traced_from_request_to_worker(env: &[(&str, &str)], collector: &Collector) {
    let dir = DataDir::new();
    let mut env = env.to_vec();
    // Spans leave in batches every 100 ms instead of every 5 s; the webhook
    // receiver listens on loopback.
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "100"));
    env.push(("STAMPEDE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"));
    // Idle workers poll every 50 ms: none of those polls may become a trace.
    env.push(("STAMPEDE_EXPIRY_INTERVAL_MS", "50"));
    let binary = Binary::start_with(&dir, &env);
    let api = Api::new(&binary);
    let sale = api.create_sale(5, 1).await;
    let (hook, hooked) = hook_receiver().await;
    api.subscribe(&hook, &["order.created"]).await;

    let trace_id = format!("{:032x}", fastrand_u128());
    let purchase_parent = "00f067aa0ba90001";
    let pay_parent = "00f067aa0ba90002";
    let traceparent = |span: &str| format!("00-{trace_id}-{span}-01");
    let customer = token("traced", TokenRole::Customer);
    let response = api
        .client
        .post(format!("{}/api/v1/sales/{sale}/purchase", api.base))
        .bearer_auth(&customer)
        .header("Idempotency-Key", "k")
        .header("traceparent", traceparent(purchase_parent))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Value = response.json().await.unwrap();
    let order_id = order["id"].as_str().unwrap();
    let response = api
        .client
        .post(format!("{}/api/v1/orders/{order_id}/pay", api.base))
        .bearer_auth(&customer)
        .header("traceparent", traceparent(pay_parent))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let spans = eventually(30, "the trace's spans", || async {
        let spans = collector.of_trace(&trace_id);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        let all = ["commit_batch", "payment_charge", "webhook_delivery"];
        all.iter().all(|name| names.contains(name)).then_some(spans)
    })
    .await;
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
    };
    let purchase = named("POST /api/v1/sales/{id}/purchase");
    assert_eq!(purchase.parent, purchase_parent, "{purchase:?}");
    assert_eq!(purchase.kind, SERVER);
    assert_eq!(purchase.service, "stampede");
    let commit = named("commit_batch");
    assert_eq!(commit.parent, purchase.span_id, "{commit:?}");
    let pay = named("POST /api/v1/orders/{id}/pay");
    assert_eq!(pay.parent, pay_parent, "{pay:?}");
    let charge = named("payment_charge");
    assert_eq!(charge.parent, pay.span_id, "{charge:?}");
    // The provider call is the step's child.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "payment_provider" && s.parent == charge.span_id),
        "{spans:#?}"
    );

    // The webhook announcing the order continues the purchase's trace, and
    // hands it on to the receiver.
    let delivery = named("webhook_delivery");
    assert_eq!(delivery.parent, purchase.span_id, "{delivery:?}");
    let received = hooked.lock().unwrap().clone();
    assert_eq!(
        received,
        [format!("00-{trace_id}-{}-01", delivery.span_id)],
        "the receiver's traceparent"
    );

    // Only requests and worker steps that did work start traces: a store
    // or dependency call outside them (an idle worker's poll) sends none.
    let roots: Vec<String> = collector
        .all()
        .into_iter()
        .filter(|span| span.parent.is_empty())
        .map(|span| span.name)
        .collect();
    let steps = [
        "consume",
        "relay_publish",
        "expire_orders",
        "payment_charge",
        "webhook_delivery",
    ];
    for root in &roots {
        let request = root.starts_with("GET ") || root.starts_with("POST ");
        assert!(
            request || steps.contains(&root.as_str()),
            "a lone `{root}` trace: {roots:?}"
        );
    }

    // The worker's log line carries the trace and its span.
    let logs = binary.logs();
    let line = logs
        .iter()
        .find(|line| line["fields"]["message"] == "payment sent")
        .unwrap_or_else(|| panic!("no `payment sent` line in {} lines", logs.len()));
    assert_eq!(line["span"]["name"], "payment_charge", "{line}");
    assert_eq!(line["span"]["trace_id"], trace_id.as_str(), "{line}");
    assert_eq!(line["span"]["span_id"], charge.span_id.as_str(), "{line}");
    // So does the request's access line.
    assert!(
        logs.iter()
            .any(|line| line["fields"]["message"] == "answered"
                && line["fields"]["trace_id"] == trace_id.as_str()
                && line["fields"]["span_id"] == purchase.span_id.as_str()),
        "no access line of the purchase"
    );
}

/// A random trace id, so runs never share one.
fn fastrand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    u128::from_le_bytes(bytes) | 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_collector_over_http_protobuf() {
    let collector = Collector::default();
    let addr = collector.serve_http().await;
    let endpoint = format!("http://{addr}");
    let env = [("STAMPEDE_OTLP_ENDPOINT", endpoint.as_str())];
    a_purchase_is_traced_from_request_to_worker(&env, &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_collector_over_grpc() {
    if crate::ON_POSTGRES {
        return; // The protocol does not depend on the mode.
    }
    let collector = Collector::default();
    let addr = collector.serve_grpc().await;
    let endpoint = format!("http://{addr}");
    // The standard variables alone, as a collector's docs would say.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    a_purchase_is_traced_from_request_to_worker(&env, &collector).await;
}

/// A collector that is not there costs a log line, not the service: the
/// node keeps answering, and says its spans are being lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_logged_and_the_node_keeps_serving() {
    if crate::ON_POSTGRES {
        return; // The exporter does not depend on the mode.
    }
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = DataDir::new();
    let env = [
        ("STAMPEDE_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let binary = Binary::start_with(&dir, &env);
    let api = Api::new(&binary);
    let sale = api.create_sale(5, 1).await;
    let (status, _) = api.purchase("alone", &sale, "k").await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(60, "a log line about the failed export", || async {
        binary
            .logs()
            .iter()
            .any(|line| line["level"] == "ERROR" && line["target"] == "opentelemetry_sdk")
            .then_some(())
    })
    .await;
    let (status, _) = api.purchase("alone", &sale, "k").await.unwrap();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a replay, answered as the purchase was"
    );
    let (status, _) = api.purchase("alone", &sale, "k2").await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "the buyer's limit, as ever");
}
