//! The admin listener: `/healthz` (the process is alive), `/readyz` (it serves traffic),
//! `/metrics` (Prometheus text), `GET /consumers/{id}` (a consumer's plan and what is left of
//! its limits), `DELETE /consumers/{id}/quota` (starts its quota afresh, for support desks)
//! `GET /usage`, `/usage.csv` and `/usage/records` (metered usage, see
//! `crate::metering::report`) and, with a signed identity assertion, `/.well-known/jwks.json`.
//! It is a separate listener, so nothing here is ever reachable through a route.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

use crate::runtime::Snapshot;
use crate::{full_body, Body};

/// Shared readiness: true once every listener is bound, false again when shutdown begins so
/// load balancers stop sending new work.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the gateway ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the gateway is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Answers one admin request. Ready means: listeners bound, not draining, and every issuer
/// that gates readiness has its keys.
pub fn handle<B>(
    request: &Request<B>,
    readiness: &Arc<Readiness>,
    snapshot: &Snapshot,
) -> Response<Body> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET | &Method::HEAD, "/readyz")
            if readiness.is_ready() && snapshot.is_ready() =>
        {
            // A fleet stays ready while Redis is away (the edge does not need it; limits follow
            // `on_failure`), and says so: unready replicas would turn the outage into a full one.
            if let Some(up) = snapshot.limits.state_backend_up() {
                let state = if up { "up" } else { "down" };
                let body = serde_json::json!({"status": "ready", "state_backend": state});
                return json_response(StatusCode::OK, body.to_string());
            }
            (StatusCode::OK, r#"{"status":"ready"}"#)
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            // Say what readiness waits for, so a pod stuck unready explains itself.
            let mut waiting_for = snapshot.auth.waiting_for();
            if !readiness.is_ready() {
                waiting_for.insert(
                    0,
                    "the listeners (starting, or draining for shutdown)".into(),
                );
            }
            let body = serde_json::json!({"status": "not ready", "waiting_for": waiting_for});
            return json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let text = crate::metrics::install()
                .map(|handle| handle.render())
                .unwrap_or_default();
            let mut response = Response::new(full_body(text));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        (&Method::GET | &Method::HEAD, "/.well-known/jwks.json")
            if snapshot.config.identity.assertion.is_some() =>
        {
            let jwks = crate::assertion::jwks(snapshot.config.identity.assertion.as_ref());
            return json_response(StatusCode::OK, jwks.to_string());
        }
        (&Method::GET | &Method::HEAD, path @ ("/usage" | "/usage.csv" | "/usage/records")) => {
            return usage(path, request.uri().query(), snapshot);
        }
        (method, path) if path.starts_with("/consumers/") => {
            return consumers(method, &path["/consumers/".len()..], snapshot);
        }
        _ => {
            let body = serde_json::json!({
                "error": "not_found",
                "error_description": "the admin listener serves /healthz, /readyz, /metrics, /consumers/{id} and /usage",
                "request_id": crate::proxy::new_request_id(),
            });
            return json_response(StatusCode::NOT_FOUND, body.to_string());
        }
    };
    json_response(status, body.to_string())
}

/// `GET /consumers/{id}` and `DELETE /consumers/{id}/quota`; the id is percent-decoded
/// (`jwt:idp:user%2F7`).
fn consumers(method: &Method, rest: &str, snapshot: &Snapshot) -> Response<Body> {
    let not_found = || json_response(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into());
    let (id, quota) = match rest.strip_suffix("/quota") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    let Ok(id) = percent_encoding::percent_decode_str(id).decode_utf8() else {
        return not_found();
    };
    let now = crate::limits::Now::current();
    match (method, quota) {
        (&Method::GET | &Method::HEAD, false) => match snapshot.limits.describe(&id, now) {
            Some(json) => json_response(StatusCode::OK, json.to_string()),
            None => not_found(),
        },
        (&Method::DELETE, true) => {
            if snapshot.limits.reset_quota(&id) {
                let body = serde_json::json!({ "consumer": &*id, "quota": "reset" });
                json_response(StatusCode::OK, body.to_string())
            } else {
                not_found()
            }
        }
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method_not_allowed"}"#.into(),
        ),
    }
}

/// `GET /usage`, `/usage.csv`, `/usage/records` (see `crate::metering::report`).
fn usage(path: &str, query: Option<&str>, snapshot: &Snapshot) -> Response<Body> {
    use crate::metering::report;
    let today = crate::state::usage::day_of(crate::auth::unix_now());
    let query = match report::parse_query(query, today) {
        Ok(query) => query,
        Err(description) => {
            let body = serde_json::json!({
                "error": "invalid_request",
                "error_description": description,
                "request_id": crate::proxy::new_request_id(),
            });
            return json_response(StatusCode::BAD_REQUEST, body.to_string());
        }
    };
    let meter = &snapshot.meter;
    let answer = match path {
        "/usage.csv" => report::usage_csv(meter, &query).map(|csv| {
            let mut response = Response::new(full_body(csv));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            );
            response
        }),
        "/usage/records" => report::records_json(meter, &query)
            .map(|json| json_response(StatusCode::OK, json.to_string())),
        _ => report::usage_json(meter, &query)
            .map(|json| json_response(StatusCode::OK, json.to_string())),
    };
    answer.unwrap_or_else(|error| {
        tracing::error!(%error, "usage store not readable");
        let body = serde_json::json!({
            "error": "store_unavailable",
            "error_description": "the usage store cannot be read; see the gateway's log",
            "request_id": crate::proxy::new_request_id(),
        });
        json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    })
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
