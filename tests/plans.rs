//! Plans and rate limits through a real gateway: GCRA exactness under a burst, consumers that do
//! not affect each other, default and anonymous plans (per address, behind trusted proxies), a
//! route's own limit, the RateLimit fields and Retry-After at every step, plan changes by
//! keys-file reload and by config reload, plans named by JWT claim, and bad config.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::limits::{call, config, new_key, remaining, write_keys, PLANS};
use support::{send, start_gateway_in};

#[tokio::test]
async fn a_burst_gets_exactly_the_burst_then_one_per_interval_and_never_reaches_the_upstream() {
    let upstream = support::upstream::start("backend").await;
    let dir = tempfile::tempdir().unwrap();
    let alice = new_key("alice", None);
    let bob = new_key("bob", None);
    write_keys(dir.path(), &[&alice.entry, &bob.entry]);
    let gateway = start_gateway_in(dir, &config(&upstream.url())).await;
    let url = gateway.url("/api/x");

    let burst_started = Instant::now();
    let started = burst_started;
    let mut replies = Vec::new();
    let mut sent_by = Vec::new();
    for _ in 0..30 {
        replies.push(call(&url, Some(&alice.key), None).await);
        sent_by.push(started.elapsed());
    }
    let elapsed = started.elapsed();
    let allowed = replies.iter().filter(|r| r.status() == 200).count();
    // Five at once, plus one for each 100 ms that passed while the burst was being sent.
    let refills = (elapsed.as_millis() / 100) as usize;
    assert!(
        (5..=5 + refills).contains(&allowed),
        "{allowed} allowed in {elapsed:?}"
    );
    for (i, reply) in replies.iter().take(5).enumerate() {
        reply.assert_status(200);
        assert_eq!(reply.header("ratelimit-policy"), Some("\"free\";q=10;w=1"));
        if i == 0 {
            assert_eq!(reply.header("ratelimit"), Some("\"free\";r=4;t=1"));
        }
        // What is left after the i-th of the burst: 4 - i, plus what came back meanwhile.
        let left = remaining(reply, "free").unwrap() as usize;
        let refilled = (sent_by[i].as_millis() / 100) as usize;
        assert!(
            (4 - i..=(4 - i + refilled).min(4)).contains(&left),
            "request {i}: r={left} after {:?}",
            sent_by[i]
        );
    }
    let refused = replies.iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit"), Some("\"free\";r=0;t=1"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"free\";q=10;w=1")
    );
    let body = refused.json();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["error_description"].as_str().unwrap().contains("free"));
    assert_eq!(body["request_id"].as_str(), refused.header("x-request-id"));
    // Refused requests never reached the upstream.
    assert_eq!(upstream.requests.load(Ordering::SeqCst), allowed);

    // Another consumer is not affected.
    let first = call(&url, Some(&bob.key), None).await;
    first.assert_status(200);
    assert_eq!(remaining(&first, "free"), Some(4));

    // Sent continuously for 600 ms more: in all, never more than the burst plus one per 100 ms
    // since the first request.
    let looping = Instant::now();
    let mut later = 0;
    while looping.elapsed() < Duration::from_millis(600) {
        if call(&url, Some(&alice.key), None).await.status() == 200 {
            later += 1;
        }
    }
    let limit = 5 + (burst_started.elapsed().as_millis() / 100) as usize;
    assert!(later >= 1, "none passed in 600 ms");
    assert!(allowed + later <= limit, "{allowed} + {later} > {limit}");

    // Retry-After is never early: after waiting it, a request passes.
    let mut reply = call(&url, Some(&alice.key), None).await;
    while reply.status() == 200 {
        reply = call(&url, Some(&alice.key), None).await;
    }
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    call(&url, Some(&alice.key), None).await.assert_status(200);

    let metrics = support::get(&format!("http://{}/metrics", gateway.admin.unwrap())).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"authgate_rate_limited_total{route="api",plan="free",limit="rate"}"#),
        "{text}"
    );
    assert!(text.contains(r#"reason="rate_limited""#), "{text}");
}

#[tokio::test]
async fn a_plan_changed_in_the_keys_file_applies_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let carol = new_key("carol", Some("slow"));
    write_keys(dir.path(), &[&carol.entry]);
    let gateway = start_gateway_in(dir, &config("builtin:echo")).await;
    let url = gateway.url("/api");
    call(&url, Some(&carol.key), None).await.assert_status(200);
    let refused = call(&url, Some(&carol.key), None).await;
    refused.assert_status(429);
    // One per minute: the wait is the rest of the minute, never less.
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&wait), "{wait}");

    let entry = carol.entry.replace("plan = \"slow\"", "plan = \"gold\"");
    assert_ne!(entry, carol.entry);
    write_keys(gateway.dir.path(), &[&entry]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(&url, Some(&carol.key), None).await;
        if reply.status() == 200 {
            assert!(reply
                .header("ratelimit-policy")
                .unwrap()
                .contains("\"gold\""));
            break;
        }
        assert!(Instant::now() < deadline, "the new plan did not apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reload_applies_new_numbers_at_once_and_keeps_each_consumers_state() {
    let dir = tempfile::tempdir().unwrap();
    let dave = new_key("dave", Some("slow"));
    write_keys(dir.path(), &[&dave.entry]);
    let toml = config("builtin:echo");
    let gateway = start_gateway_in(dir, &toml).await;
    let url = gateway.url("/api");
    call(&url, Some(&dave.key), None).await.assert_status(200);
    call(&url, Some(&dave.key), None).await.assert_status(429);
    let path = gateway.dir.path().join("gateway.toml");
    let running = gateway.gateway.as_ref().unwrap();
    // The same plan again: dave's state survives the reload.
    running
        .reload(authgate::config::Config::load(&path).unwrap())
        .unwrap();
    call(&url, Some(&dave.key), None).await.assert_status(429);
    // New numbers for the plan: in force at once.
    std::fs::write(
        &path,
        toml.replace("rate = \"1/m\"\nburst = 1", "rate = \"1/m\"\nburst = 3"),
    )
    .unwrap();
    running
        .reload(authgate::config::Config::load(&path).unwrap())
        .unwrap();
    let reply = call(&url, Some(&dave.key), None).await;
    reply.assert_status(200);
    // One taken before, one now, of three: the third comes back within the minute.
    assert_eq!(remaining(&reply, "slow"), Some(1));
}

/// Public routes under an anonymous plan of `burst` per minute, and a route `/limited` with its
/// own limit of one an hour.
fn anonymous(trusted_proxies: &str, burst: u32, headers: bool) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"
trusted_proxies = [{trusted_proxies}]

[plans.anon]
rate = "1/m"
burst = {burst}

[consumers]
anonymous_plan = "anon"
headers = {headers}

[[routes]]
id = "open"
upstream = "builtin:echo"
public = true

[[routes]]
id = "limited"
path = "/limited"
upstream = "builtin:echo"
public = true
rate = "1/h"
burst = 1
"#
    )
}

#[tokio::test]
async fn the_anonymous_plan_counts_per_address_and_believes_only_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let toml = anonymous("\"127.0.0.1/32\"", 2, true);
    let gateway = start_gateway_in(dir, &toml).await;
    let url = gateway.url("/");
    for _ in 0..2 {
        call(&url, None, Some("203.0.113.1"))
            .await
            .assert_status(200);
    }
    let refused = call(&url, None, Some("203.0.113.1")).await;
    refused.assert_status(429);
    assert_eq!(refused.header("ratelimit"), Some("\"anon\";r=0;t=120"));
    call(&url, None, Some("203.0.113.2"))
        .await
        .assert_status(200);
    // One IPv6 /64 is one consumer.
    call(&url, None, Some("2001:db8:1:2::1"))
        .await
        .assert_status(200);
    call(&url, None, Some("2001:db8:1:2::ffff"))
        .await
        .assert_status(200);
    call(&url, None, Some("2001:db8:1:2:3::4"))
        .await
        .assert_status(429);
    call(&url, None, Some("2001:db8:1:3::1"))
        .await
        .assert_status(200);

    // A route's own limit applies beside the plan, under its own name.
    let limited = gateway.url("/limited");
    let first = call(&limited, None, Some("198.51.100.9")).await;
    first.assert_status(200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"route:limited\";q=1;w=3600, \"anon\";q=1;w=60")
    );
    let refused = call(&limited, None, Some("198.51.100.9")).await;
    refused.assert_status(429);
    assert_eq!(refused.header("retry-after"), Some("3600"));
    // The route refused first, so the plan was not charged: this takes the second of two.
    let open = call(&url, None, Some("198.51.100.9")).await;
    open.assert_status(200);
    assert_eq!(remaining(&open, "anon"), Some(0));
}

#[tokio::test]
async fn an_untrusted_peer_is_counted_by_its_own_address_and_headers_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let toml = anonymous("", 1, false);
    let gateway = start_gateway_in(dir, &toml).await;
    let url = gateway.url("/");
    let allowed = call(&url, None, Some("203.0.113.1")).await;
    allowed.assert_status(200);
    // `headers = false`: allowed responses carry no RateLimit fields; a 429 always does.
    assert_eq!(allowed.header("ratelimit"), None);
    // A made-up X-Forwarded-For does not make a new consumer.
    let refused = call(&url, None, Some("203.0.113.2")).await;
    refused.assert_status(429);
    assert_eq!(refused.header("ratelimit"), Some("\"anon\";r=0;t=60"));
}

#[test]
fn check_refuses_unknown_plans_bad_rates_and_a_zero_burst_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.toml"),
        "[[keys]]\nid = \"k\"\nhash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nsubject = \"s\"\nplan = \"platinum\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        r#"[server]
http = "127.0.0.1:0"

[plans.free]
rate = "10/x"

[plans.gold]
rate = "100/s"
burst = 0

[plans.daily]
quota = "100/week"

[consumers]
default_plan = "bronze"

[api_keys]
file = "keys.toml"

[[routes]]
id = "r"
upstream = "builtin:echo"
rate = "five/s"
"#,
    )
    .unwrap();
    let (code, stderr) = support::check_in(dir.path());
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "gateway.toml:5:8: rate `10/x`: unknown unit `x`",
        "gateway.toml:9:9: `burst` must be at least 1",
        "gateway.toml:12:9: quota `100/week`: unknown window `week`",
        "gateway.toml:15:16: plan `bronze` is not defined in [plans] (defined: daily, free, gold)",
        "gateway.toml:23:8: rate `five/s` is not a count per unit",
        "keys.toml:1:1: key `k`: plan `platinum` is not defined",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn a_jwt_names_its_plan_by_claim_and_counts_by_issuer_and_subject() {
    use jsonwebtoken::Algorithm;
    let key = support::idp::TestKey::generate("k1", Algorithm::EdDSA);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "idp.pub.pem", &key.public_pem);
    let toml = format!(
        r#"[server]
http = "127.0.0.1:0"

[[issuers]]
id = "idp"
issuer = "https://idp.test/"
audiences = ["api"]
algorithms = ["EdDSA"]
keys = ["idp.pub.pem"]
key_id = "k1"

[[routes]]
id = "api"
upstream = "builtin:echo"
auth = ["jwt"]

[consumers]
default_plan = "free"
plan_claim = "org.plan"
{}"#,
        PLANS.replace("[consumers]\ndefault_plan = \"free\"\n", "")
    );
    let gateway = start_gateway_in(dir, &toml).await;
    let token = |sub: &str, plan: Option<&str>| {
        let mut claims = support::idp::claims("https://idp.test/", sub);
        claims["aud"] = "api".into();
        if let Some(plan) = plan {
            claims["org"] = serde_json::json!({ "plan": plan });
        }
        key.sign(&claims)
    };
    let call_with = |token: String| {
        let url = gateway.url("/");
        async move {
            send(
                &support::http1_client(),
                Request::get(url)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await
        }
    };
    let slow = call_with(token("alice", Some("slow"))).await;
    slow.assert_status(200);
    assert_eq!(remaining(&slow, "slow"), Some(0));
    // Another token of the same subject is the same consumer.
    call_with(token("alice", Some("slow")))
        .await
        .assert_status(429);
    // A plan no one defined counts as no claim: the default plan.
    let unknown = call_with(token("bob", Some("platinum"))).await;
    assert_eq!(remaining(&unknown, "free"), Some(4));
    let none = call_with(token("carol", None)).await;
    assert_eq!(remaining(&none, "free"), Some(4));
}
