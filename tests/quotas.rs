//! Quotas through a real gateway and the real binary: counted per plan, untouched by requests
//! that authentication refuses, shown and reset on the admin listener, and kept across a
//! restart of the binary.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use support::limits::{call, config, new_key, remaining, write_keys};
use support::{send, start_gateway_in, GatewayProcess};

#[tokio::test]
async fn quotas_count_per_plan_and_refused_credentials_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gold = new_key("gold-1", Some("gold"));
    write_keys(dir.path(), &[&gold.entry]);
    let gateway = start_gateway_in(dir, &config("builtin:echo")).await;
    // The key lacks the scope: 403s, which take nothing from its quota.
    for _ in 0..3 {
        call(&gateway.url("/scoped"), Some(&gold.key), None)
            .await
            .assert_status(403);
    }
    let reply = call(&gateway.url("/api"), Some(&gold.key), None).await;
    reply.assert_status(200);
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some("\"gold\";q=1000;w=1, \"gold-quota\";q=1000;w=86400")
    );
    assert_eq!(remaining(&reply, "gold-quota"), Some(999));

    let admin = format!("http://{}", gateway.admin.unwrap());
    let seen = support::get(&format!("{admin}/consumers/api_key:gold-1")).await;
    seen.assert_status(200);
    let json = seen.json();
    assert_eq!(json["plan"], "gold");
    assert_eq!(json["quota"]["used"], 1);
    assert_eq!(json["quota"]["remaining"], 999);
    assert_eq!(json["rate"]["burst"], 1000);
    support::get(&format!("{admin}/consumers/api_key:nobody"))
        .await
        .assert_status(404);
    let reset = send(
        &support::http1_client(),
        Request::delete(format!("{admin}/consumers/api_key:gold-1/quota"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    reset.assert_status(200);
    let seen = support::get(&format!("{admin}/consumers/api_key:gold-1")).await;
    assert_eq!(seen.json()["quota"]["remaining"], 1000);
}

#[test]
fn quotas_survive_a_restart_of_the_binary() {
    let data = tempfile::tempdir().unwrap();
    let key = new_key("erin", None);
    let toml = format!(
        r#"[server]
http = "127.0.0.1:0"

[state]
data_dir = "{}"

[plans.trial]
quota = "3/day"

[consumers]
default_plan = "trial"

[api_keys]
[[api_keys.keys]]
{}
[[routes]]
id = "api"
upstream = "builtin:echo"
auth = ["api_key"]
"#,
        data.path().display(),
        key.entry.trim_start_matches("[[keys]]\n")
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |process: &GatewayProcess| {
        let url = format!("http://{}/", process.http);
        runtime.block_on(call(&url, Some(&key.key), None))
    };
    let mut first = GatewayProcess::spawn(&toml);
    get(&first).assert_status(200);
    assert_eq!(remaining(&get(&first), "trial-quota"), Some(1));
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));

    let second = GatewayProcess::spawn(&toml);
    let last = get(&second);
    last.assert_status(200);
    assert_eq!(remaining(&last, "trial-quota"), Some(0));
    let refused = get(&second);
    refused.assert_status(429);
    assert_eq!(refused.json()["error"], "quota_exceeded");
    // The window ends at the next midnight UTC.
    let now = authgate::auth::unix_now();
    let midnight = (now / 86_400 + 1) * 86_400;
    let wait: i64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (midnight - now..=midnight - now + 2).contains(&wait),
        "{wait}"
    );
    assert!(data.path().join("quotas.redb").exists());
    // The access log names the plan.
    let logged = second.wait_for_log(|line| {
        (line.contains("authgate::access") && line.contains("plan=\"trial\"")).then_some(())
    });
    assert!(logged.is_some(), "no access-log line with the plan");
}
