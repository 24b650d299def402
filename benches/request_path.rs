//! Micro-benchmarks of the per-request work that is not I/O: route matching among 1,000 routes,
//! the request head's validation and the header rewriting every forwarded request goes through.
//!
//! ```sh
//! cargo bench --bench request_path
//! ```

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use authgate::config::{
    AuthRequirement, HostPattern, IdentitySettings, RouteSettings, RouteTarget,
};
use authgate::identity::IdentityStripper;
use authgate::proxy::headers::{remove_hop_by_hop, set_forwarding, Hop};
use authgate::proxy::routes::{normalize_path, RouteTable};
use authgate::proxy::validate;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;

fn thousand_routes() -> RouteTable {
    let routes = (0..1000)
        .map(|i| RouteSettings {
            id: format!("route-{i}"),
            label: format!("route-{i}").into(),
            host: match i % 3 {
                0 => Some(HostPattern::Exact(format!("svc{i}.example.com"))),
                1 => Some(HostPattern::Wildcard(format!(".team{i}.example.com"))),
                _ => None,
            },
            path: format!("/api/v{}/resource{i}", i % 5),
            methods: (i % 2 == 0).then(|| vec![Method::GET, Method::POST]),
            target: RouteTarget::Echo,
            public: true,
            auth: AuthRequirement::default(),
            forward_credentials: false,
            limit: None,
            usage: None,
        })
        .collect();
    RouteTable::new(routes)
}

fn browser_like_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
        ),
        ("connection", "keep-alive"),
        ("x-auth-subject", "mallory"),
        ("cookie", "session=abc; theme=dark"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn identity_settings() -> IdentitySettings {
    IdentitySettings {
        subject: HeaderName::from_static("x-auth-subject"),
        method: HeaderName::from_static("x-auth-method"),
        issuer: HeaderName::from_static("x-auth-issuer"),
        scopes: HeaderName::from_static("x-auth-scopes"),
        key_id: HeaderName::from_static("x-auth-key-id"),
        claims: vec![("email".into(), HeaderName::from_static("x-auth-email"))],
        strip_prefixes: vec!["x-auth-".into()],
        forward_credentials: false,
        token_cookies: Vec::new(),
        assertion: None,
    }
}

fn benches(c: &mut Criterion) {
    let table = thousand_routes();
    c.bench_function("route match, 1000 routes, hit near the end", |b| {
        b.iter(|| {
            table.find(
                black_box("svc999.example.com"),
                black_box("/api/v4/resource999/items/7"),
                &Method::GET,
            )
        })
    });
    c.bench_function("route match, 1000 routes, miss", |b| {
        b.iter(|| {
            table.find(
                black_box("nowhere.test"),
                black_box("/nothing"),
                &Method::GET,
            )
        })
    });
    c.bench_function("path normalization, clean path", |b| {
        b.iter(|| normalize_path(black_box("/api/v1/orders/12345/items")))
    });
    let mut request = http::Request::get("/api/v1/orders/12345/items")
        .body(())
        .expect("a valid request");
    *request.headers_mut() = browser_like_headers();
    let upgrades = vec!["websocket".to_string()];
    c.bench_function(
        "request head validation: host, transfer coding, upgrade",
        |b| b.iter(|| validate::head(black_box(&request), &upgrades)),
    );

    let stripper = IdentityStripper::new(&identity_settings());
    let headers = browser_like_headers();
    let host = HeaderValue::from_static("api.example.com");
    let hop = Hop {
        client: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        trusted: false,
        proto: "https",
        host: Some(&host),
    };
    c.bench_function(
        "header rewrite: strip identity, hop-by-hop, forwarding",
        |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |headers| {
                    stripper.strip(headers);
                    remove_hop_by_hop(headers, false);
                    set_forwarding(headers, hop);
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

criterion_group!(request_path, benches);
criterion_main!(request_path);
