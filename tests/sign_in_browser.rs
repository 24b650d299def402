//! Browser sign-in in a real browser: Debian's headless Chromium, driven by playwright-core
//! (tests/oidc/browser.mjs), signs in through the gateway and a real OpenID Connect provider,
//! calls an API from the page, and logs out. Skipped with a reason when Chromium is missing
//! locally; `.ci/run` installs it, and in CI a missing one fails the test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::oidc::{self, Provider};
use support::start_gateway;

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium_available() -> bool {
    support::installed_or_skip(
        Path::new(CHROMIUM).is_file(),
        CHROMIUM,
        "apt-get install chromium",
    )
}

#[tokio::test]
async fn chromium_signs_in_calls_the_api_and_logs_out() {
    if !oidc::node_available() || !chromium_available() {
        return;
    }
    let provider = Provider::start();
    provider
        .set(serde_json::json!({"id_token": {"email": "jd@example.com"}}))
        .await;
    let upstream = support::upstream::start("app").await;
    let gateway = start_gateway(&oidc::gateway_config(
        &provider,
        &upstream.url(),
        "0123456789abcdef0123456789abcdef-browser",
        "data_dir = \"data\"",
        "",
    ))
    .await;
    support::wait_ready(&gateway).await;

    let start = gateway.url("/dashboard?tab=1");
    let api = gateway.url("/api/orders");
    let logout = gateway.url("/_authgate/logout");
    let driver = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["browser.mjs", &start, &api, &logout])
            .current_dir(oidc::package_dir())
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(90), driver)
        .await
        .expect("the browser finishes within 90 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();

    // Gateway → provider → callback → the page the browser asked for.
    let signed_in = &seen["signed_in"];
    assert_eq!(signed_in["status"], 200, "{seen}");
    assert_eq!(signed_in["url"], gateway.url("/dashboard?tab=1"));
    let navigations: Vec<&str> = signed_in["navigations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        navigations
            .iter()
            .any(|n| n.starts_with(&format!("{}/authorize?", provider.issuer()))),
        "{navigations:?}"
    );
    assert!(
        navigations
            .iter()
            .any(|n| n.starts_with(&gateway.url("/_authgate/callback?"))),
        "{navigations:?}"
    );
    let page: Value = serde_json::from_str(signed_in["body"].as_str().unwrap()).unwrap();
    assert_eq!(page["headers"]["x-auth-subject"], "johndoe");
    assert_eq!(page["headers"]["x-auth-email"], "jd@example.com");
    assert!(page["headers"].get("cookie").is_none(), "{page}");

    // fetch() from the page rides the session.
    assert_eq!(seen["api"]["status"], 200, "{seen}");
    let api: Value = serde_json::from_str(seen["api"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(api["headers"]["x-auth-method"], "session");

    // The browser keeps the session cookie as the gateway set it.
    let cookie = seen["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "authgate")
        .unwrap_or_else(|| panic!("no session cookie in {seen}"));
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    assert_eq!(cookie["path"], "/");

    // Logout: gateway → provider's end_session → the landing page; the API refuses after it.
    let logged_out = &seen["logged_out"];
    assert_eq!(logged_out["url"], gateway.url("/public"), "{seen}");
    assert!(logged_out["navigations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/endsession?", provider.issuer()))));
    assert_eq!(seen["api_after_logout"]["status"], 401, "{seen}");
    let calls = provider.calls().await;
    assert_eq!(calls["authorization_code"], 1);
}
