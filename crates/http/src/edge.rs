//! The edge every request passes, as one tower service around the router:
//! observe (ids, span, metrics) → problemify → catch panics → protect (rate
//! limits, load shedding, deadline) → body limit → routes.
//!
//! One service with one boxed future per request, rather than a stack of
//! `Router::layer`s: axum applies those to every route and clones the whole
//! boxed stack on each request, which cost more than the purchase itself.
//! The edge knows the route before routing from its own table of the
//! router's templates ([`Routes`]), so metric labels and rate-limit rules see
//! the template, never the raw path.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use futures_util::FutureExt;
use tower::{Service, ServiceExt};

use crate::problem::{ApiError, Kind};
use crate::protect::{self, Protection};
use crate::routes::purchase;
use crate::state::AppState;
use crate::telemetry;

/// The router and the table of its route templates, built together so
/// neither can name a route the other lacks.
pub(crate) struct Routes {
    router: Router<AppState>,
    templates: matchit::Router<&'static str>,
    /// The same templates as a list (matchit's table cannot be listed).
    paths: Vec<&'static str>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            templates: matchit::Router::new(),
            paths: Vec::new(),
        }
    }

    pub(crate) fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Self {
        // axum and matchit share the template syntax; a clash panics in both.
        if let Err(err) = self.templates.insert(path, path) {
            panic!("route {path}: {err}");
        }
        self.paths.push(path);
        self.router = self.router.route(path, methods);
        self
    }

    /// Every route template, in the order they were added.
    pub(crate) fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    /// The routes as one service behind the edge.
    pub(crate) fn into_edge(self, state: AppState, max_body_bytes: usize) -> Edge {
        let protection = state.protection().clone();
        let router = self
            .router
            .fallback(|| async { ApiError::not_found() })
            .with_state(state.clone());
        Edge {
            shared: Arc::new(Shared {
                templates: self.templates,
                state,
                protection,
                max_body_bytes,
            }),
            router,
        }
    }
}

struct Shared {
    templates: matchit::Router<&'static str>,
    state: AppState,
    protection: Arc<Protection>,
    max_body_bytes: usize,
}

/// The whole HTTP service: the edge around the router. Serve it with
/// `axum::ServiceExt::into_make_service_with_connect_info`.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
    router: Router,
}

impl Edge {
    /// The route template a path matches, if any.
    pub fn route_of(&self, path: &str) -> Option<&'static str> {
        self.shared.templates.at(path).ok().map(|m| *m.value)
    }
}

impl Service<Request> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = self.route_of(request.uri().path());
        let shared = self.shared.clone();
        let router = self.router.clone();
        Box::pin(async move {
            let response = telemetry::observe(request, route, |request| async move {
                let response = AssertUnwindSafe(protect::protect(
                    &shared.protection,
                    route,
                    request,
                    |request| routes(&shared, route, router, request),
                ))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| ApiError::new(Kind::INTERNAL).into_response());
                telemetry::problemify(response)
            })
            .await;
            Ok(response)
        })
    }
}

/// The body limit, then the router: a declared length over the limit is
/// refused at once, and extractors stop reading at the limit.
async fn routes(
    shared: &Shared,
    route: Option<&'static str>,
    router: Router,
    mut request: Request,
) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.max_body_bytes as u64) {
        return ApiError::new(Kind::PAYLOAD_TOO_LARGE)
            .with_detail("the body is larger than the limit")
            .into_response();
    }
    DefaultBodyLimit::max(shared.max_body_bytes).apply(&mut request);
    // The hot path skips the router's per-request tables. Boxed: its
    // future (6 KB) would otherwise sit, copied at each level of nesting,
    // in every request's future (55 KB where 6 KB is left).
    if route == Some(purchase::ROUTE) && request.method() == Method::POST {
        request = match Box::pin(purchase::direct(&shared.state, request)).await {
            Ok(response) => return response,
            Err(request) => request,
        };
    }
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
