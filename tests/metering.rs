//! Usage metering through a real gateway and the provider double (real HTTP, real SSE split
//! across TCP writes): exact counts for every format, the usage chunk the gateway asked for
//! removed again, cut streams estimated, budgets that hold under 20 concurrent requests, and
//! records and counters that survive a restart of the binary; the usage endpoints and the CSV
//! agree with the records.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use support::limits::{new_key, write_keys};
use support::provider::{self, CACHED, CACHE_CREATION, INPUT};
use support::{get, http1_client, start_gateway_in, GatewayProcess};

fn config(provider: &str, data_dir: &str, plans: &str) -> String {
    let down = support::closed_port();
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[state]
data_dir = "{data_dir}"

[api_keys]
file = "keys.toml"

[upstreams.provider]
targets = ["{provider}"]
credentials = {{ header = "Authorization", value = "Bearer sk-double" }}

[pricing.models."m"]
input_per_million = 1.0
output_per_million = 2.0
cached_input_per_million = 0.5

[pricing.models."exact"]
input_per_million = 1.0
output_per_million = 2.0
cached_input_per_million = 0.5

{plans}

[upstreams.down]
targets = ["http://{down}"]

[[routes]]
id = "down"
path = "/down"
upstream = "down"
usage = "openai"
auth = ["api_key"]

[[routes]]
id = "anthropic"
path = "/v1/messages"
upstream = "provider"
usage = "anthropic"
auth = ["api_key"]

[[routes]]
id = "openai"
path = "/v1"
upstream = "provider"
usage = "openai"
auth = ["api_key"]
"#
    )
}

/// What the client received: status, body (as far as it came), whether it ended cleanly.
struct Received {
    status: u16,
    body: String,
    complete: bool,
    headers: http::HeaderMap,
}

async fn post(url: &str, key: &str, body: &Value) -> Received {
    let request = Request::post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let exchange = async {
        let response = http1_client().request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                Err(_) => {
                    complete = false;
                    break;
                }
            }
        }
        Received {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            complete,
            headers,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s")
}

/// The records of `consumer` (the admin endpoint flushes pending writes first).
async fn records(admin: &str, consumer: &str) -> Vec<Value> {
    let reply = get(&format!("{admin}/usage/records?consumer={consumer}")).await;
    reply.assert_status(200);
    reply.json()["records"].as_array().unwrap().clone()
}

/// Waits (bounded) until `consumer` has `n` records: a response's usage settles when its body
/// ends, which the client may see a moment before the gateway does.
async fn wait_for_records(admin: &str, consumer: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let found = records(admin, consumer).await;
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{consumer} did not get {n} records");
}

fn figures(record: &Value) -> (u64, u64, u64, bool) {
    (
        record["input_tokens"].as_u64().unwrap(),
        record["output_tokens"].as_u64().unwrap(),
        record["cached_tokens"].as_u64().unwrap(),
        record["estimated"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn usage_is_counted_exactly_for_every_format_and_the_added_chunk_is_removed() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = new_key("alice", None);
    write_keys(dir.path(), &[&alice.entry]);
    let state = dir.path().join("state");
    let gateway =
        start_gateway_in(dir, &config(&provider.url(), state.to_str().unwrap(), "")).await;
    let admin = format!("http://{}", gateway.admin.unwrap());
    let chat =
        json!({"model": "exact", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6});
    let url = |path: &str| gateway.url(path);

    // 1. Chat completion, JSON.
    let reply = post(&url("/v1/chat/completions"), &alice.key, &chat).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // 2. A stream whose client did not ask for usage: the gateway asks, and removes the chunk.
    let mut streaming = chat.clone();
    streaming["stream"] = json!(true);
    let reply = post(&url("/v1/chat/completions"), &alice.key, &streaming).await;
    assert!(reply.complete);
    assert!(reply.body.contains("tok5 "), "{}", reply.body);
    assert!(reply.body.ends_with("data: [DONE]\n\n"), "{}", reply.body);
    assert!(
        !reply.body.contains("\"usage\""),
        "the added usage chunk reached the client:\n{}",
        reply.body
    );
    assert_eq!(
        reply.body.matches("\n\n").count(),
        6 + 1,
        "six deltas and [DONE]"
    );
    // Usage is read from the bytes: the provider is asked not to compress them.
    assert_eq!(
        provider.received()[0].headers["accept-encoding"],
        "identity"
    );
    let forwarded = &provider.received()[1].body;
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    // 3. A stream whose client asked: the chunk is theirs.
    streaming["stream_options"] = json!({"include_usage": true});
    let reply = post(&url("/v1/chat/completions"), &alice.key, &streaming).await;
    assert!(reply.body.contains("\"usage\""), "{}", reply.body);
    // 4. Embeddings.
    let reply = post(
        &url("/v1/embeddings"),
        &alice.key,
        &json!({"model": "exact", "input": "hi"}),
    )
    .await;
    assert_eq!(reply.status, 200);
    // 5, 6. The Responses API, JSON and streaming (no stream_options: it reports usage anyway).
    let responses = json!({"model": "exact", "input": "hi", "max_output_tokens": 3});
    post(&url("/v1/responses"), &alice.key, &responses).await;
    let mut stream = responses.clone();
    stream["stream"] = json!(true);
    let reply = post(&url("/v1/responses"), &alice.key, &stream).await;
    assert!(reply.body.contains("response.completed"));
    assert!(provider.received()[5].body.get("stream_options").is_none());
    // 7, 8. Anthropic Messages, JSON and streaming (output cumulative over two deltas).
    let messages =
        json!({"model": "exact", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    post(&url("/v1/messages"), &alice.key, &messages).await;
    let mut stream = messages.clone();
    stream["stream"] = json!(true);
    let reply = post(&url("/v1/messages"), &alice.key, &stream).await;
    assert!(reply.body.contains("event: message_stop"));

    let found = wait_for_records(&admin, "api_key:alice", 8).await;
    let got: Vec<_> = found.iter().map(figures).collect();
    assert_eq!(
        got,
        vec![
            (INPUT, 6, CACHED, false),
            (INPUT, 6, CACHED, false),
            (INPUT, 6, CACHED, false),
            (INPUT, 0, 0, false),
            (INPUT, 3, CACHED, false),
            (INPUT, 3, CACHED, false),
            (INPUT, 8, CACHED, false),
            (INPUT, 8, CACHED, false),
        ]
    );
    assert_eq!(found[0]["route"], "openai");
    assert_eq!(found[7]["route"], "anthropic");
    assert_eq!(found[7]["cache_creation_tokens"], CACHE_CREATION);
    assert_eq!(found[0]["model"], "exact");
    assert_eq!(found[0]["status"], 200);
    assert!(found[0]["request_id"].as_str().unwrap().len() > 10);
    // $1/M input, $0.50/M cached, $2/M output: 13 + 2 + 12 micro-USD.
    assert_eq!(found[0]["cost_micro_usd"], 27);
    // Anthropic: 10 uncached + 4 cached × 0.5 + 3 written at the input price + 16 output.
    assert_eq!(found[7]["cost_micro_usd"], 10 + 2 + 3 + 16);

    // The totals endpoint and the CSV say what the records say.
    let today = get(&format!("{admin}/usage?consumer=api_key:alice"))
        .await
        .json();
    let total = &today["total"];
    let sum = |field: &str| {
        found
            .iter()
            .map(|r| r[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(total["requests"], 8);
    assert_eq!(total["input_tokens"], sum("input_tokens"));
    assert_eq!(total["output_tokens"], sum("output_tokens"));
    assert_eq!(total["cost_micro_usd"], sum("cost_micro_usd"));
    let csv = get(&format!("{admin}/usage.csv?consumer=api_key:alice")).await;
    assert_eq!(
        csv.header("content-type"),
        Some("text/csv; charset=utf-8; header=present")
    );
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.text());
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells[1], "api_key:alice");
    assert_eq!(cells[2], "exact");
    assert_eq!(cells[3], "8");
    assert_eq!(cells[4], sum("input_tokens").to_string());
    assert_eq!(cells[7], format!("0.{:06}", sum("cost_micro_usd")));
    let bad = get(&format!("{admin}/usage?from=2026-02-31")).await;
    bad.assert_status(400);
    assert_eq!(bad.json()["error"], "invalid_request");

    // The metrics count the same tokens.
    let metrics = get(&format!("{admin}/metrics")).await.text();
    let value = |needle: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} in\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let openai_output: u64 = found[..6]
        .iter()
        .map(|r| r["output_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(
        value(r#"authgate_usage_tokens_total{route="openai",model="exact",kind="output"}"#),
        openai_output as f64
    );
    assert_eq!(
        value(r#"authgate_usage_tokens_total{route="anthropic",model="exact",kind="cached"}"#),
        (2 * CACHED) as f64
    );
    let anthropic_cost = (found[6]["cost_micro_usd"].as_u64().unwrap() + 31) as f64 / 1e6;
    assert!(
        (value(r#"authgate_usage_cost_usd_total{route="anthropic",model="exact"}"#)
            - anthropic_cost)
            .abs()
            < 1e-9
    );
}

#[tokio::test]
async fn a_stream_cut_midway_is_estimated_from_what_was_seen() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bob = new_key("bob", None);
    write_keys(dir.path(), &[&bob.entry]);
    let state = dir.path().join("state");
    let gateway =
        start_gateway_in(dir, &config(&provider.url(), state.to_str().unwrap(), "")).await;
    let admin = format!("http://{}", gateway.admin.unwrap());
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let body = json!({"model": "cut", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
        let reply = post(&gateway.url(path), &bob.key, &body).await;
        assert!(
            !reply.complete,
            "the client sees the stream break: {}",
            reply.body
        );
    }
    let found = wait_for_records(&admin, "api_key:bob", 2).await;
    // OpenAI: three deltas "tokN " (15 bytes) seen → 4 tokens; input from the request's size.
    let (input, output, _, estimated) = figures(&found[0]);
    assert!(estimated);
    assert_eq!(output, 4);
    assert!(input > 0);
    // Anthropic: message_start said the input; the output is estimated from the deltas seen.
    let (input, output, cached, estimated) = figures(&found[1]);
    assert!(estimated);
    assert_eq!((input, cached), (INPUT, CACHED));
    assert_eq!(output, 4);
    let metrics = get(&format!("{admin}/metrics")).await.text();
    assert!(
        metrics.contains(r#"authgate_usage_estimated_total{route="openai"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn twenty_concurrent_requests_never_get_past_a_budget_for_ten() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let carol = new_key("carol", Some("tokens"));
    let dave = new_key("dave", Some("dollars"));
    write_keys(dir.path(), &[&carol.entry, &dave.entry]);
    let state = dir.path().join("state");
    // One request really uses 17 + 5 tokens, costing 13 + 2 + 10 = 25 micro-USD.
    let plans =
        "[plans.tokens]\ntokens = \"220/day\"\n\n[plans.dollars]\nbudget = \"0.000250/day\"\n";
    let gateway = start_gateway_in(
        dir,
        &config(&provider.url(), state.to_str().unwrap(), plans),
    )
    .await;
    let admin = format!("http://{}", gateway.admin.unwrap());
    let url = gateway.url("/v1/chat/completions");
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a question of some eighty characters, long enough to be a prompt"}]});

    for (who, key) in [("carol", &carol.key), ("dave", &dave.key)] {
        let before = provider.received().len();
        let replies = futures_util::future::join_all((0..20).map(|_| post(&url, key, &body))).await;
        let passed = replies.iter().filter(|r| r.status == 200).count();
        let refused: Vec<_> = replies.iter().filter(|r| r.status != 200).collect();
        assert!((1..=10).contains(&passed), "{who}: {passed} passed");
        for reply in &refused {
            assert_eq!(reply.status, 429, "{}", reply.body);
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], "quota_exceeded");
            assert!(reply.headers.contains_key("retry-after"));
            assert!(reply.headers["ratelimit"]
                .to_str()
                .unwrap()
                .contains(";r=0;"));
        }
        // Refused requests never reached the provider.
        assert_eq!(provider.received().len() - before, passed);

        // Once those settle, the rest of the budget goes one at a time, and never past it.
        wait_for_records(&admin, &format!("api_key:{who}"), passed).await;
        let mut total = passed;
        for _ in 0..20 {
            let reply = post(&url, key, &body).await;
            if reply.status == 429 {
                break;
            }
            assert_eq!(reply.status, 200);
            total += 1;
            wait_for_records(&admin, &format!("api_key:{who}"), total).await;
        }
        assert!(
            total <= 10,
            "{who}: {total} requests within a budget for 10"
        );
        assert!(
            total >= 6,
            "{who}: settling gave the unused reservations back ({total})"
        );
        let usage = get(&format!("{admin}/usage?consumer=api_key:{who}"))
            .await
            .json();
        let tokens = usage["total"]["input_tokens"].as_u64().unwrap()
            + usage["total"]["output_tokens"].as_u64().unwrap();
        assert!(tokens <= 220 || who == "dave", "{tokens}");
        assert!(usage["total"]["cost_micro_usd"].as_u64().unwrap() <= 250 || who == "carol");
    }
}

#[tokio::test]
async fn a_request_the_upstream_never_answers_gives_its_reservation_back() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let frank = new_key("frank", Some("tokens"));
    write_keys(dir.path(), &[&frank.entry]);
    let state = dir.path().join("state");
    // Each request reserves 5 output + its input estimate (about 15): 100 tokens hold 5 at once.
    let plans = "[plans.tokens]\ntokens = \"100/day\"\n";
    let gateway = start_gateway_in(
        dir,
        &config(&provider.url(), state.to_str().unwrap(), plans),
    )
    .await;
    let body =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..12 {
        let reply = post(&gateway.url("/down/chat/completions"), &frank.key, &body).await;
        assert_eq!(reply.status, 502, "{}", reply.body);
    }
    let reply = post(&gateway.url("/v1/chat/completions"), &frank.key, &body).await;
    assert_eq!(
        reply.status, 200,
        "failed requests kept their reservations: {}",
        reply.body
    );
}

#[test]
fn budgets_and_records_survive_a_restart_of_the_binary() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider = runtime.block_on(provider::start());
    let data = tempfile::tempdir().unwrap();
    let erin = new_key("erin", Some("tokens"));
    let plans = "[plans.tokens]\ntokens = \"100/day\"\n";
    let toml = config(&provider.url(), data.path().to_str().unwrap(), plans);
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), &[&erin.entry]);
        std::fs::write(dir.path().join("gateway.toml"), &toml).unwrap();
        let process = GatewayProcess::spawn_in(dir, &[("RUST_LOG", "info")]);
        let admin = process.listener("admin").unwrap();
        (process, format!("http://{admin}"))
    };
    let body =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let (mut first, admin) = start();
    let url = format!("http://{}/v1/chat/completions", first.http);
    let mut passed = 0;
    for _ in 0..10 {
        let reply = runtime.block_on(post(&url, &erin.key, &body));
        if reply.status == 429 {
            break;
        }
        passed += 1;
        runtime.block_on(wait_for_records(&admin, "api_key:erin", passed));
    }
    assert!((1..10).contains(&passed), "{passed}");
    let before = runtime
        .block_on(get(&format!("{admin}/usage?consumer=api_key:erin")))
        .json();
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));

    let (second, admin) = start();
    let url = format!("http://{}/v1/chat/completions", second.http);
    let refused = runtime.block_on(post(&url, &erin.key, &body));
    assert_eq!(
        refused.status, 429,
        "the used tokens came back: {}",
        refused.body
    );
    let after = runtime
        .block_on(get(&format!("{admin}/usage?consumer=api_key:erin")))
        .json();
    assert_eq!(after["total"], before["total"]);
    assert_eq!(
        runtime.block_on(records(&admin, "api_key:erin")).len(),
        passed
    );
    assert!(data.path().join("usage.redb").exists());
}

/// Whether every reservation in the fleet's budget counters has settled.
fn fleet_holds_nothing(redis: &support::redis::RedisServer) -> bool {
    let keys = redis.command(&["--scan", "--pattern", "{authgate-budget:*"]);
    keys.lines()
        .filter(|key| !key.trim().is_empty())
        .all(|key| !redis.command(&["HKEYS", key.trim()]).contains("r:"))
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_one_budget() {
    if !support::redis::available() {
        eprintln!("skipped: redis-server is not installed here (.ci/run installs it)");
        return;
    }
    let redis = support::redis::RedisServer::start();
    let provider = provider::start().await;
    let erin = new_key("erin", Some("tokens"));
    let plans = "[plans.tokens]\ntokens = \"220/day\"\n";
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), &[&erin.entry]);
        let state = dir.path().join("state");
        let toml = config(&provider.url(), state.to_str().unwrap(), plans).replace(
            "[state]\n",
            &format!(
                "[state]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"500ms\"\non_failure = \"closed\"\n",
                redis.url()
            ),
        );
        replicas.push(start_gateway_in(dir, &toml).await);
    }
    let urls: Vec<String> = replicas
        .iter()
        .map(|g| g.url("/v1/chat/completions"))
        .collect();
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a question of some eighty characters, long enough to be a prompt"}]});

    // 20 at once, half on each replica: each replica alone would let 5 through, and both
    // together must not let more than the one budget allows.
    let replies =
        futures_util::future::join_all((0..20).map(|i| post(&urls[i % 2], &erin.key, &body))).await;
    let passed = replies.iter().filter(|r| r.status == 200).count();
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert!(reply.body.contains("quota_exceeded"), "{}", reply.body);
    }
    assert!((1..=5).contains(&passed), "{passed} passed at once");
    assert_eq!(provider.received().len(), passed);

    // One at a time, alternating replicas, after each settles: the budget's 220 tokens (22 a
    // request) are never exceeded, and the settled amounts gave the unused reservations back.
    let mut total = passed;
    for i in 0..20 {
        for _ in 0..200 {
            if fleet_holds_nothing(&redis) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reply = post(&urls[i % 2], &erin.key, &body).await;
        if reply.status == 429 {
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        total += 1;
    }
    assert!(total <= 10, "{total} requests within a budget for 10");
    assert!(
        total >= 8,
        "settling in the fleet gave reservations back ({total})"
    );
    assert_eq!(provider.received().len(), total);
}
