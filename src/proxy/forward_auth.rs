//! Forward-auth: the decision another proxy asks for before it forwards a request itself
//! (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `ForwardAuth`, Envoy and Istio
//! `ext_authz` over HTTP).
//!
//! The asking proxy describes the original request in one of three ways, tried in this order:
//! 1. `X-Forwarded-Method` / `-Proto` / `-Host` / `-Uri` (Traefik, APISIX, Oathkeeper);
//! 2. `X-Original-Method` with `X-Original-URL` or `X-Original-URI` (ingress-nginx, nginx);
//! 3. the request itself, its path with the endpoint's prefix taken off (Envoy's `ext_authz`
//!    sends the original method and `path_prefix + original path`, with the original Host).
//!
//! That request is routed and admitted exactly as if it had come in directly (see
//! [`super::admission`]). Allowed is **200** with an empty body and the identity headers on the
//! response, for the proxy to copy to its upstream; 202 is never used, as Envoy reads anything
//! but 200 as a denial. Refusals are the usual ones (401 with its challenge, 403, 429 …), and
//! `deny_status` turns every other refusal into 401 or 403 for nginx, which answers any status
//! but 2xx, 401 and 403 with a 500. Only peers in `trusted` may ask: a description from anyone
//! else could name any request.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::{headers, routes, ConnInfo, X_REQUEST_ID};
use crate::access_log::Exchange;
use crate::config::ForwardAuthSettings;
use crate::error::GatewayError;
use crate::runtime::Snapshot;
use crate::{full_body, Body};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The request a forward-auth call asks about.
#[derive(Debug, PartialEq, Eq)]
pub struct Described {
    /// Its method.
    pub method: Method,
    /// Its host, as routing reads it: lowercase, without a port.
    pub host: String,
    /// Its path, normalized as a direct request's would be.
    pub path: String,
    /// Its query, kept as it was sent (the decision does not read it; the log never shows it).
    pub query: Option<String>,
}

/// Answers the forward-auth call `request`: 200 with the identity headers, or the refusal.
pub async fn decide<'s>(
    snapshot: &'s Snapshot,
    settings: &ForwardAuthSettings,
    request: &Request<Incoming>,
    authority: &str,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    exchange: &mut Exchange<'s>,
) -> Result<Response<Body>, GatewayError> {
    exchange.forward_auth = true;
    let peer = conn.peer.ip();
    if !headers::is_trusted(peer, &settings.trusted) {
        return Err(GatewayError::UntrustedPeer);
    }
    let call = Call {
        method: request.method(),
        uri: request.uri(),
        authority,
        headers: request.headers(),
    };
    let described = describe(settings, &call)?;
    if exchange.logged {
        exchange.decided = Some((described.method.clone(), described.path.clone()));
    }
    let route = snapshot
        .routes
        .find(&described.host, &described.path, &described.method)
        .ok_or(GatewayError::NoRoute)?;
    exchange.route = Some(route.label.clone());
    exchange.metrics = Some(&route.metrics);

    // The asking proxy is trusted to say who the client is, as a trusted proxy is.
    let identity = super::admission::admit(
        snapshot,
        route,
        request.headers(),
        || headers::client_address(request.headers(), peer, &settings.trusted),
        request_id,
        exchange,
    )
    .await?;

    let mut response = Response::new(full_body(""));
    let answer = response.headers_mut();
    // The signed assertion names the request id, so it goes in first.
    answer.insert(X_REQUEST_ID.clone(), request_id.clone());
    let settings = &snapshot.config.identity;
    if let Some(identity) = &identity {
        crate::identity::inject(answer, settings, identity)?;
    }
    // Every identity header is on the answer, empty when it does not apply (a public route, a
    // JWT without the mapped claim): a proxy that copies them onto the request then replaces
    // whatever the client sent under those names, whether or not it strips them itself.
    let names = [
        &settings.subject,
        &settings.method,
        &settings.issuer,
        &settings.scopes,
        &settings.key_id,
    ];
    let claims = settings.claims.iter().map(|(_, header)| header);
    let assertion = settings.assertion.iter().map(|a| &a.header);
    for name in names.into_iter().chain(claims).chain(assertion) {
        if !answer.contains_key(name) {
            answer.insert(name.clone(), HeaderValue::from_static(""));
        }
    }
    Ok(response)
}

/// The status a refusal is answered with: its own, or `deny_status` for any refusal of the
/// client's request that is not already a 401 or 403. The gateway's own trouble (503) stays a
/// 5xx: the asking proxy should not turn it into a denial the client believes.
pub fn refusal_status(settings: &ForwardAuthSettings, error: &GatewayError) -> StatusCode {
    let status = error.status();
    match settings.deny_status {
        Some(deny)
            if status.is_client_error()
                && status != StatusCode::UNAUTHORIZED
                && status != StatusCode::FORBIDDEN =>
        {
            deny
        }
        _ => status,
    }
}

/// The forward-auth call as it arrived.
pub struct Call<'c> {
    /// Its method.
    pub method: &'c Method,
    /// Its URI.
    pub uri: &'c Uri,
    /// The host it was sent to (`Host`, or `:authority` on HTTP/2), checked like any request's.
    pub authority: &'c str,
    /// Its headers, identity headers already stripped.
    pub headers: &'c HeaderMap,
}

/// What a description names, before it is judged: method, host (`None`: the call's own Host
/// is absent too) and the path with its query.
struct Named<'h> {
    method: Method,
    host: Option<Cow<'h, str>>,
    target: Cow<'h, str>,
}

/// The original request, from the first description the call carries.
pub fn describe<'c>(
    settings: &ForwardAuthSettings,
    call: &Call<'c>,
) -> Result<Described, GatewayError> {
    let named = match forwarded(call)? {
        Some(named) => named,
        None => match original(call)? {
            Some(named) => named,
            None => under_prefix(settings, call),
        },
    };
    let host = named.host.ok_or(GatewayError::BadRequest(
        "the described request names no host",
    ))?;
    let (path, query) = match named.target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (&*named.target, None),
    };
    // Judged as a direct request's path is: no `..` may reach a route it was not matched to.
    let path = routes::normalize_path(path).ok_or(GatewayError::BadRequest(
        "the described path must start with `/` and hide no `..` behind an encoded slash",
    ))?;
    Ok(Described {
        method: named.method,
        host: routes::routing_host(&host).into_owned(),
        path: path.into_owned(),
        query,
    })
}

/// Traefik, APISIX, Oathkeeper: `X-Forwarded-Method`, `-Host`, `-Uri`.
fn forwarded<'c>(call: &Call<'c>) -> Result<Option<Named<'c>>, GatewayError> {
    let headers = call.headers;
    if !headers.contains_key(&X_FORWARDED_URI) && !headers.contains_key(&X_FORWARDED_METHOD) {
        return Ok(None);
    }
    let host = text(headers.get(&X_FORWARDED_HOST))
        // A chain of proxies may append: the first is the client's.
        .map(|hosts| Cow::Borrowed(hosts.split(',').next().unwrap_or_default().trim()))
        .or_else(|| own_host(call));
    Ok(Some(Named {
        method: named_method(headers.get(&X_FORWARDED_METHOD), call.method)?,
        host,
        target: Cow::Borrowed(text(headers.get(&X_FORWARDED_URI)).unwrap_or("/")),
    }))
}

/// ingress-nginx (`X-Original-URL`, a whole URL) and nginx (`X-Original-URI`, path and query,
/// with the host in `Host`), each with `X-Original-Method`.
fn original<'c>(call: &Call<'c>) -> Result<Option<Named<'c>>, GatewayError> {
    let headers = call.headers;
    let method = || named_method(headers.get(&X_ORIGINAL_METHOD), call.method);
    if let Some(url) = headers.get(&X_ORIGINAL_URL) {
        let url: Uri = text(Some(url))
            .and_then(|url| url.parse().ok())
            .ok_or(GatewayError::BadRequest("X-Original-URL is not a URL"))?;
        let target = url
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        return Ok(Some(Named {
            method: method()?,
            host: url
                .authority()
                .map(|authority| Cow::Owned(authority.as_str().to_string()))
                .or_else(|| own_host(call)),
            target: Cow::Owned(target),
        }));
    }
    let Some(uri) = headers.get(&X_ORIGINAL_URI) else {
        return Ok(None);
    };
    Ok(Some(Named {
        method: method()?,
        host: own_host(call),
        target: Cow::Borrowed(
            text(Some(uri)).ok_or(GatewayError::BadRequest("X-Original-URI is not text"))?,
        ),
    }))
}

/// Envoy and Istio `ext_authz`: the call is the original request, its path under the
/// endpoint's own.
fn under_prefix<'c>(settings: &ForwardAuthSettings, call: &Call<'c>) -> Named<'c> {
    let uri = call.uri;
    // The router only sends paths that `settings.serves`, so the prefix is there to cut.
    let rest = uri.path().get(settings.path.len()..).unwrap_or_default();
    let path = if rest.is_empty() { "/" } else { rest };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    Named {
        method: call.method.clone(),
        host: own_host(call),
        target: Cow::Owned(target),
    }
}

fn own_host<'c>(call: &Call<'c>) -> Option<Cow<'c, str>> {
    Some(call.authority)
        .filter(|authority| !authority.is_empty())
        .map(Cow::Borrowed)
}

fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

fn named_method(value: Option<&HeaderValue>, own: &Method) -> Result<Method, GatewayError> {
    match value {
        None => Ok(own.clone()),
        Some(value) => Method::from_bytes(value.as_bytes())
            .map_err(|_| GatewayError::BadRequest("the described method is not an HTTP method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ForwardAuthSettings {
        ForwardAuthSettings {
            path: "/authz".into(),
            trusted: Vec::new(),
            deny_status: None,
        }
    }

    fn describe_call(
        method: &str,
        uri: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Described, GatewayError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let authority = headers
            .get("host")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default();
        let call = Call {
            method: &Method::from_bytes(method.as_bytes()).unwrap(),
            uri: &uri.parse().unwrap(),
            authority: &authority,
            headers: &headers,
        };
        describe(&settings(), &call)
    }

    #[test]
    fn traefik_headers_come_first_and_keep_the_query() {
        let described = describe_call(
            "GET",
            "/authz",
            &[
                ("host", "authgate:8080"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "API.example.com"),
                ("x-forwarded-uri", "/orders/7?expand=items"),
                ("x-original-uri", "/ignored"),
            ],
        )
        .unwrap();
        assert_eq!(described.method, Method::POST);
        assert_eq!(described.host, "api.example.com");
        assert_eq!(described.path, "/orders/7");
        assert_eq!(described.query.as_deref(), Some("expand=items"));
    }

    #[test]
    fn ingress_nginx_sends_the_whole_url() {
        let described = describe_call(
            "GET",
            "/authz",
            &[
                ("host", "authgate.auth.svc"),
                ("x-original-method", "DELETE"),
                (
                    "x-original-url",
                    "https://shop.example.com:8443/orders/7?x=1",
                ),
            ],
        )
        .unwrap();
        assert_eq!(described.method, Method::DELETE);
        assert_eq!(described.host, "shop.example.com");
        assert_eq!(described.path, "/orders/7");
        assert_eq!(described.query.as_deref(), Some("x=1"));
    }

    #[test]
    fn nginx_original_uri_uses_the_host_it_was_sent_with() {
        let described = describe_call(
            "GET",
            "/authz",
            &[
                ("host", "shop.example.com"),
                ("x-original-uri", "/orders?page=2"),
            ],
        )
        .unwrap();
        assert_eq!(described.method, Method::GET);
        assert_eq!(described.host, "shop.example.com");
        assert_eq!(described.path, "/orders");
    }

    #[test]
    fn envoy_sends_the_original_path_under_the_prefix() {
        let described = describe_call(
            "PUT",
            "/authz/orders/7?dry=1",
            &[("host", "shop.example.com")],
        )
        .unwrap();
        assert_eq!(described.method, Method::PUT);
        assert_eq!(described.path, "/orders/7");
        assert_eq!(described.query.as_deref(), Some("dry=1"));
        let root = describe_call("GET", "/authz", &[("host", "shop.example.com")]).unwrap();
        assert_eq!(root.path, "/");
    }

    #[test]
    fn described_paths_are_normalized_and_ambiguity_refused() {
        let dotted = describe_call(
            "GET",
            "/authz",
            &[("host", "h"), ("x-forwarded-uri", "/public/../orders")],
        )
        .unwrap();
        assert_eq!(dotted.path, "/orders");
        for bad in ["orders", "/public/..%2forders"] {
            let refused =
                describe_call("GET", "/authz", &[("host", "h"), ("x-forwarded-uri", bad)]);
            assert!(matches!(refused, Err(GatewayError::BadRequest(_))), "{bad}");
        }
        let no_host = describe_call("GET", "/authz", &[("x-original-uri", "/orders")]);
        assert!(matches!(no_host, Err(GatewayError::BadRequest(_))));
        let bad_method = describe_call(
            "GET",
            "/authz",
            &[
                ("host", "h"),
                ("x-forwarded-method", "GE T"),
                ("x-forwarded-uri", "/"),
            ],
        );
        assert!(matches!(bad_method, Err(GatewayError::BadRequest(_))));
    }

    #[test]
    fn deny_status_replaces_only_other_refusals() {
        let mut nginx = settings();
        nginx.deny_status = Some(StatusCode::FORBIDDEN);
        assert_eq!(
            refusal_status(&nginx, &GatewayError::NoRoute),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refusal_status(
                &nginx,
                &GatewayError::Auth(crate::error::AuthError::Missing(crate::error::Accepted {
                    session: false,
                    jwt: true,
                    api_key: None,
                }))
            ),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refusal_status(&nginx, &GatewayError::UpstreamTimeout),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            refusal_status(&settings(), &GatewayError::NoRoute),
            StatusCode::NOT_FOUND
        );
    }
}
