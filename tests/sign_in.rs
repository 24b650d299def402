//! Browser sign-in against a real OpenID Connect provider (oauth2-mock-server, started by the
//! tests on a free port): the whole authorization code flow with PKCE over real HTTP with a
//! cookie jar, the attacks on it, sessions, refresh, and both kinds of logout. The same flow in
//! a real browser is in `sign_in_browser.rs`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::oidc::{self, query_param, with_param, Browser, Provider};
use support::{start_gateway, wait_ready, TestGateway};

const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef-gateway-one";

/// A gateway with sign-in through `provider` (see [`oidc::gateway_config`]), its sessions in
/// a redb file.
fn config(provider: &Provider, upstream: &str, secret: &str, extra: &str) -> String {
    oidc::gateway_config(provider, upstream, secret, "data_dir = \"data\"", extra)
}

struct Setup {
    provider: Provider,
    upstream: support::upstream::Upstream,
    gateway: TestGateway,
}

async fn setup(extra: &str) -> Option<Setup> {
    if !oidc::node_available() {
        return None;
    }
    let provider = Provider::start();
    let upstream = support::upstream::start("app").await;
    let gateway = start_gateway(&config(&provider, &upstream.url(), COOKIE_SECRET, extra)).await;
    wait_ready(&gateway).await;
    Some(Setup {
        provider,
        upstream,
        gateway,
    })
}

/// Visits `url` on the gateway and follows the provider's answer: the callback URL the browser
/// is sent to (not visited yet).
async fn begin(browser: &mut Browser, url: &str) -> String {
    let to_provider = browser.visit(url).await;
    to_provider.assert_status(302);
    let authorize = to_provider.header("location").unwrap().to_string();
    let from_provider = browser.request("GET", &authorize, &[]).await;
    from_provider.assert_status(302);
    from_provider.header("location").unwrap().to_string()
}

/// Signs `browser` in, starting at `path`: the callback's answer.
async fn sign_in(browser: &mut Browser, gateway: &TestGateway, path: &str) -> support::Reply {
    let callback = begin(browser, &gateway.url(path)).await;
    browser.visit(&callback).await
}

/// The provider's back-channel logout: `logout_token` POSTed to the gateway's logout path.
async fn post_logout_token(gateway: &TestGateway, token: String) -> support::Reply {
    let request = http::Request::post(gateway.url("/_authgate/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "logout_token={token}"
        ))))
        .unwrap();
    support::send(&support::http1_client(), request).await
}

async fn metrics(gateway: &TestGateway) -> String {
    support::get(&format!("http://{}/metrics", gateway.admin.unwrap()))
        .await
        .text()
}

/// Waits (at most 5 s) until the active-sessions gauge shows at least one session. (The
/// recorder is the test process's: gateways of tests running at once all set the one gauge.)
async fn wait_for_active_sessions(gateway: &TestGateway) {
    for _ in 0..500 {
        let text = metrics(gateway).await;
        let active = text
            .lines()
            .find_map(|l| l.strip_prefix("authgate_sessions_active "))
            .and_then(|v| v.parse::<f64>().ok());
        if active.is_some_and(|n| n >= 1.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no active session in:\n{}", metrics(gateway).await);
}

#[tokio::test]
async fn a_browser_signs_in_and_the_upstream_sees_the_user_never_the_cookie() {
    let Some(s) = setup("").await else { return };
    s.provider
        .set(json!({"id_token": {"email": "jd@example.com", "groups": ["admins", "ops"], "sid": "idp-session-1"}}))
        .await;
    let mut browser = Browser::default();
    browser.jar.insert("theme".into(), "dark".into());

    // A navigation without a session goes to the provider, with PKCE S256, state and nonce.
    let to_provider = browser.visit(&s.gateway.url("/reports?week=12")).await;
    to_provider.assert_status(302);
    assert_eq!(to_provider.header("cache-control"), Some("no-store"));
    let authorize = to_provider.header("location").unwrap().to_string();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", s.provider.issuer())),
        "{authorize}"
    );
    assert_eq!(
        query_param(&authorize, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some("authgate")
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&authorize, "code_challenge").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "state").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "nonce").unwrap().len(), 43);
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("openid email profile")
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").unwrap(),
        s.gateway.url("/_authgate/callback")
    );
    let flow_cookie = to_provider
        .response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("authgate-flow="))
        .expect("the sign-in is bound to this browser");
    assert!(flow_cookie.contains("HttpOnly") && flow_cookie.contains("SameSite=Lax"));

    // The provider signs the user in and sends the browser to the callback.
    let from_provider = browser.request("GET", &authorize, &[]).await;
    let callback = from_provider.header("location").unwrap().to_string();
    let back = browser.visit(&callback).await;
    back.assert_status(302);
    assert_eq!(back.header("location"), Some("/reports?week=12"));
    let session_cookie = browser.set_cookies.last().unwrap().clone();
    assert!(session_cookie.starts_with("authgate="), "{session_cookie}");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=28800"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    // The cookie holds an id and its MAC only: it never grows with the claims.
    assert_eq!(browser.jar["authgate"].len(), 87);

    // The page: the upstream is told who the user is, as for a JWT, and never gets the
    // gateway's cookies (the application's own are kept).
    let page = browser.visit(&s.gateway.url("/reports?week=12")).await;
    page.assert_status(200);
    let seen = page.json();
    let headers = &seen["headers"];
    assert_eq!(headers["x-auth-subject"], "johndoe");
    assert_eq!(headers["x-auth-method"], "session");
    assert_eq!(headers["x-auth-issuer"], s.provider.issuer());
    assert_eq!(headers["x-auth-email"], "jd@example.com");
    assert_eq!(headers["x-auth-groups"], "admins ops");
    assert_eq!(headers["cookie"], "theme=dark");
    assert!(headers.get("authorization").is_none());

    // A script's request from the page rides the same session.
    let xhr = browser.fetch(&s.gateway.url("/api/orders")).await;
    xhr.assert_status(200);
    // Roles come from the `groups` claim, like a JWT's.
    browser
        .visit(&s.gateway.url("/admin"))
        .await
        .assert_status(200);

    assert!(metrics(&s.gateway)
        .await
        .lines()
        .any(|l| l.starts_with("authgate_sign_ins_total ")));
    wait_for_active_sessions(&s.gateway).await;
    assert!(
        s.upstream
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );
}

#[tokio::test]
async fn scripts_without_a_session_get_401_and_roles_still_apply() {
    let Some(s) = setup("").await else { return };
    let mut browser = Browser::default();
    // XHR / fetch without a session: the contract's 401 body, never a redirect.
    let xhr = browser.fetch(&s.gateway.url("/api/orders")).await;
    xhr.assert_status(401);
    let body = xhr.json();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["request_id"], xhr.header("x-request-id").unwrap());
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("session"));
    // A fetch that accepts HTML but says it is not a navigation is a script too.
    let fetch = browser
        .request(
            "GET",
            &s.gateway.url("/api/orders"),
            &[("accept", "text/html"), ("sec-fetch-mode", "cors")],
        )
        .await;
    fetch.assert_status(401);
    // A form POST without a session is not turned into a GET at the provider.
    let post = browser
        .request(
            "POST",
            &s.gateway.url("/orders"),
            &[("accept", "text/html")],
        )
        .await;
    post.assert_status(401);

    // Signed in without the role: 403 on the admin route, 200 elsewhere.
    s.provider
        .set(json!({"id_token": {"groups": ["staff"]}}))
        .await;
    sign_in(&mut browser, &s.gateway, "/")
        .await
        .assert_status(302);
    browser.visit(&s.gateway.url("/")).await.assert_status(200);
    browser
        .visit(&s.gateway.url("/admin"))
        .await
        .assert_status(403);

    // A bearer token on a route that takes both is judged as a token (the cookie is ambient).
    let bad_token = browser
        .request(
            "GET",
            &s.gateway.url("/api"),
            &[
                ("authorization", "Bearer not.a.token"),
                ("accept", "application/json"),
            ],
        )
        .await;
    bad_token.assert_status(401);
}

#[tokio::test]
async fn attacks_on_the_callback_are_refused() {
    let Some(s) = setup("").await else { return };
    let gateway = &s.gateway;
    let refused = |reply: &support::Reply, reason: &str| {
        reply.assert_status(400);
        assert_eq!(reply.json()["error"], "invalid_request", "{reason}");
        assert!(reply.header("set-cookie").is_none(), "{reason}: no session");
    };

    // No state, and a state the gateway never issued.
    let mut browser = Browser::default();
    let callback = begin(&mut browser, &gateway.url("/")).await;
    refused(
        &browser.visit(&with_param(&callback, "state", None)).await,
        "missing",
    );
    let callback = begin(&mut browser, &gateway.url("/")).await;
    let forged = with_param(
        &callback,
        "state",
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    refused(&browser.visit(&forged).await, "unknown");

    // A replayed callback (same state, same code) after a good one.
    let callback = begin(&mut browser, &gateway.url("/")).await;
    browser.visit(&callback).await.assert_status(302);
    refused(
        &Browser {
            jar: browser.jar.clone(),
            ..Browser::default()
        }
        .visit(&callback)
        .await,
        "replayed",
    );

    // A callback finished by another browser than the one that started it (login CSRF).
    let mut victim = Browser::default();
    let mut attacker = Browser::default();
    let callback = begin(&mut attacker, &gateway.url("/")).await;
    refused(&victim.visit(&callback).await, "other browser");

    // ID tokens the provider made wrong: another nonce, another audience, expired.
    for (claims, reason) in [
        (json!({"nonce": "not-the-one-sent"}), "wrong_nonce"),
        (json!({"aud": "some-other-client"}), "wrong_audience"),
        (json!({"exp": 1_000_000_000}), "expired"),
    ] {
        s.provider.set(json!({ "id_token": claims })).await;
        let mut browser = Browser::default();
        let callback = begin(&mut browser, &gateway.url("/")).await;
        refused(&browser.visit(&callback).await, reason);
        assert!(metrics(gateway).await.contains(&format!(
            "authgate_sign_in_callbacks_failed_total{{reason=\"{reason}\"}}"
        )));
    }
    s.provider.set(json!({ "id_token": null })).await;

    // The provider declining the sign-in.
    let mut browser = Browser::default();
    let callback = begin(&mut browser, &gateway.url("/")).await;
    let declined = with_param(
        &with_param(&callback, "code", None),
        "error",
        Some("access_denied"),
    );
    let reply = browser.visit(&declined).await;
    reply.assert_status(400);
    assert_eq!(reply.json()["error"], "access_denied");

    let text = metrics(gateway).await;
    for reason in [
        "missing_state",
        "unknown_state",
        "other_browser",
        "provider_refused",
    ] {
        assert!(
            text.contains(&format!(
                "authgate_sign_in_callbacks_failed_total{{reason=\"{reason}\"}}"
            )),
            "{reason} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_browser_only_ever_returns_to_this_host() {
    let Some(s) = setup("").await else { return };
    let gateway = &s.gateway;
    let host = gateway.http.unwrap().to_string();
    let mut browser = Browser::default();
    for target in [
        "https://evil.example/".to_string(),
        "//evil.example/".to_string(),
        "/\\evil.example/".to_string(),
        format!("http://{host}.evil.example/"),
        format!("http://{host}@evil.example/"),
    ] {
        let url = with_param(
            &gateway.url("/_authgate/sign_in"),
            "return_to",
            Some(&target),
        );
        let reply = browser.visit(&url).await;
        reply.assert_status(400);
    }
    // An absolute URL naming this very host comes back as its path.
    let url = with_param(
        &gateway.url("/_authgate/sign_in"),
        "return_to",
        Some(&format!("http://{host}/orders/7?tab=items")),
    );
    let callback = begin(&mut browser, &url).await;
    let back = browser.visit(&callback).await;
    assert_eq!(back.header("location"), Some("/orders/7?tab=items"));
    // A path that looks like another host is merged into a path on this one.
    let mut browser = Browser::default();
    let callback = begin(&mut browser, &gateway.url("//evil.example/x")).await;
    let back = browser.visit(&callback).await;
    let location = back.header("location").unwrap();
    assert!(
        location.starts_with('/') && !location.starts_with("//"),
        "{location}"
    );
}

#[tokio::test]
async fn a_session_cookie_made_with_another_gateway_key_is_refused() {
    let Some(s) = setup("").await else { return };
    let mut browser = Browser::default();
    sign_in(&mut browser, &s.gateway, "/")
        .await
        .assert_status(302);
    browser.visit(&s.gateway.url("/")).await.assert_status(200);

    // The same provider, another gateway key: the cookie's MAC does not verify.
    let other = start_gateway(&config(
        &s.provider,
        &s.upstream.url(),
        "another-gateway-key-another-gateway-key",
        "",
    ))
    .await;
    wait_ready(&other).await;
    let xhr = browser.fetch(&other.url("/")).await;
    xhr.assert_status(401);
    assert!(xhr.text().contains("session has ended"), "{}", xhr.text());
    // Counted as a session refused, not as a request without credentials.
    assert!(metrics(&other).await.contains(
        "authgate_auth_decisions_total{route=\"app\",method=\"session\",result=\"deny\",reason=\"session_ended\"}"
    ));
    // A navigation is sent to sign in again instead.
    let navigation = browser.visit(&other.url("/")).await;
    navigation.assert_status(302);
    assert!(navigation
        .header("location")
        .unwrap()
        .starts_with(&s.provider.issuer()));

    // A tampered cookie, and two session cookies, are refused on the first gateway too.
    let mut tampered = browser.clone();
    let value = tampered.jar["authgate"].clone();
    let flipped = if value.ends_with('A') { "B" } else { "A" };
    tampered.jar.insert(
        "authgate".into(),
        format!("{}{flipped}", &value[..value.len() - 1]),
    );
    let reply = tampered.fetch(&s.gateway.url("/")).await;
    reply.assert_status(401);
    let twice = browser
        .request(
            "GET",
            &s.gateway.url("/"),
            &[("accept", "application/json"), ("cookie", "authgate=x.y")],
        )
        .await;
    twice.assert_status(401);
}

#[tokio::test]
async fn back_channel_logout_ends_the_session_on_the_next_request() {
    let Some(s) = setup("").await else { return };
    s.provider
        .set(json!({"id_token": {"sid": "idp-session-7"}}))
        .await;
    let mut browser = Browser::default();
    sign_in(&mut browser, &s.gateway, "/")
        .await
        .assert_status(302);
    browser.visit(&s.gateway.url("/")).await.assert_status(200);
    let mut second = Browser::default();
    s.provider
        .set(json!({"id_token": {"sid": "idp-session-8"}}))
        .await;
    sign_in(&mut second, &s.gateway, "/")
        .await
        .assert_status(302);

    let event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let post = |token: String| post_logout_token(&s.gateway, token);
    // Tokens that are not logout tokens for this client change nothing.
    for (claims, why) in [
        (
            json!({"aud": "authgate", "jti": "j0", "sid": "idp-session-7"}),
            "no event",
        ),
        (
            json!({"aud": "authgate", "jti": "j1", "sid": "idp-session-7", "events": event, "nonce": "n"}),
            "a nonce",
        ),
        (
            json!({"aud": "someone-else", "jti": "j2", "sid": "idp-session-7", "events": event}),
            "another audience",
        ),
        (
            json!({"aud": "authgate", "sid": "idp-session-7", "events": event}),
            "no jti",
        ),
    ] {
        let token = s.provider.sign(claims, Some("logout+jwt")).await;
        let reply = post(token).await;
        reply.assert_status(400);
        assert_eq!(reply.json()["error"], "invalid_request", "{why}");
    }
    let forged = post("eyJhbGciOiJub25lIn0.e30.".into()).await;
    forged.assert_status(400);
    browser.visit(&s.gateway.url("/")).await.assert_status(200);

    // The provider ends its session idp-session-7: that browser's session ends, the other's not.
    let token = s
        .provider
        .sign(
            json!({"aud": "authgate", "jti": "logout-1", "sid": "idp-session-7", "events": event}),
            Some("logout+jwt"),
        )
        .await;
    let reply = post(token.clone()).await;
    reply.assert_status(200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let after = browser.fetch(&s.gateway.url("/")).await;
    after.assert_status(401);
    second.visit(&s.gateway.url("/")).await.assert_status(200);
    // Replayed: refused.
    post(token).await.assert_status(400);

    // By subject: every session of the user.
    let token = s
        .provider
        .sign(
            json!({"aud": "authgate", "jti": "logout-2", "sub": "johndoe", "events": event}),
            None,
        )
        .await;
    post(token).await.assert_status(200);
    second.fetch(&s.gateway.url("/")).await.assert_status(401);
    assert!(metrics(&s.gateway)
        .await
        .contains("authgate_logouts_total{kind=\"back_channel\"}"));
}

#[tokio::test]
async fn rp_initiated_logout_goes_to_end_session_with_the_id_token_hint() {
    let Some(s) = setup("").await else { return };
    let mut browser = Browser::default();
    sign_in(&mut browser, &s.gateway, "/")
        .await
        .assert_status(302);
    browser.visit(&s.gateway.url("/")).await.assert_status(200);
    let before = browser.clone();

    let hops = browser.navigate(&s.gateway.url("/_authgate/logout")).await;
    let logout = &hops[0].reply;
    logout.assert_status(302);
    let end_session = logout.header("location").unwrap().to_string();
    assert!(
        end_session.starts_with(&format!("{}/endsession?", s.provider.issuer())),
        "{end_session}"
    );
    let hint = query_param(&end_session, "id_token_hint").unwrap();
    assert_eq!(hint.split('.').count(), 3, "a JWT");
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri").unwrap(),
        s.gateway.url("/public")
    );
    assert!(logout
        .header("set-cookie")
        .unwrap()
        .starts_with("authgate=; Path=/; Max-Age=0"));
    // The provider sent the browser to the landing page.
    let last = hops.last().unwrap();
    assert_eq!(last.url, s.gateway.url("/public"));
    last.reply.assert_status(200);
    let calls = s.provider.calls().await;
    assert_eq!(calls["end_session"][0]["id_token_hint"], Value::from(hint));

    // The old cookie opens nothing any more.
    let mut replayed = before;
    replayed.fetch(&s.gateway.url("/")).await.assert_status(401);
    // Logging out without a session lands on the page directly.
    let mut nobody = Browser::default();
    let reply = nobody.visit(&s.gateway.url("/_authgate/logout")).await;
    reply.assert_status(302);
    assert_eq!(reply.header("location"), Some("/public"));
}

#[tokio::test]
async fn expired_provider_tokens_are_refreshed_once_however_many_requests_wait() {
    let Some(s) = setup("").await else { return };
    // The provider's tokens expire at once: the first request after sign-in must refresh.
    s.provider.set(json!({"expires_in": 0})).await;
    let mut browser = Browser::default();
    sign_in(&mut browser, &s.gateway, "/")
        .await
        .assert_status(302);
    // The refresh is slow, and brings tokens good for an hour.
    s.provider
        .set(json!({"expires_in": 3600, "refresh_delay_ms": 300, "id_token": {"email": "renewed@example.com"}}))
        .await;
    let before = s.provider.calls().await["refresh_token"].as_u64().unwrap();
    let mut requests = Vec::new();
    for _ in 0..20 {
        let mut browser = browser.clone();
        let url = s.gateway.url("/api");
        requests.push(tokio::spawn(async move { browser.fetch(&url).await }));
    }
    for request in requests {
        let reply = request.await.unwrap();
        reply.assert_status(200);
        assert_eq!(
            reply.json()["headers"]["x-auth-email"],
            "renewed@example.com"
        );
    }
    let after = s.provider.calls().await["refresh_token"].as_u64().unwrap();
    assert_eq!(after - before, 1, "one refresh for 20 concurrent requests");
    let last = &s.provider.calls().await["last_token_request"];
    assert_eq!(last["body"]["grant_type"], "refresh_token");
    // client_secret_basic: the secret travels in Authorization, never in the body.
    assert!(last["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Basic "));
    assert!(last["body"].get("client_secret").is_none());
    assert!(metrics(&s.gateway)
        .await
        .contains("authgate_session_refreshes_total{result=\"ok\"}"));

    // A refresh the provider refuses (the user was disabled there) ends the session.
    s.provider
        .set(json!({"expires_in": 0, "refresh_delay_ms": 0, "id_token": null}))
        .await;
    let mut doomed = Browser::default();
    sign_in(&mut doomed, &s.gateway, "/")
        .await
        .assert_status(302);
    s.provider
        .set(json!({"refresh_error": "invalid_grant"}))
        .await;
    let reply = doomed.fetch(&s.gateway.url("/api")).await;
    reply.assert_status(401);
    assert!(reply.text().contains("session has ended"));
}

#[tokio::test]
async fn a_fleet_shares_sessions_sign_ins_and_logouts_through_redis() {
    if !support::redis::available() || !oidc::node_available() {
        return;
    }
    let redis = support::redis::RedisServer::start();
    let provider = Provider::start();
    let upstream = support::upstream::start("app").await;
    // A loaded test machine: the session read on the request path gets half a second.
    let state = format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout = \"500ms\"",
        redis.url()
    );
    let fleet =
        |secret: &'static str| oidc::gateway_config(&provider, &upstream.url(), secret, &state, "");
    let a = start_gateway(&fleet(COOKIE_SECRET)).await;
    let b = start_gateway(&fleet(COOKIE_SECRET)).await;
    let stranger = start_gateway(&fleet("a-gateway-outside-the-fleet-with-its-own-key")).await;
    for gateway in [&a, &b, &stranger] {
        wait_ready(gateway).await;
    }
    provider
        .set(json!({"id_token": {"sid": "fleet-session"}}))
        .await;

    // A sign-in started at A may finish at B (one store), and only once in the whole fleet.
    let mut browser = Browser::default();
    let callback = begin(&mut browser, &a.url("/")).await;
    let at_b = callback.replace(&a.http.unwrap().to_string(), &b.http.unwrap().to_string());
    browser.visit(&at_b).await.assert_status(302);
    browser.visit(&callback).await.assert_status(400);

    // Signed in once, known to every gateway of the fleet (and to no other).
    let xhr = |gateway: &TestGateway| gateway.url("/api");
    for gateway in [&a, &b] {
        let reply = browser.fetch(&xhr(gateway)).await;
        reply.assert_status(200);
        assert_eq!(reply.json()["headers"]["x-auth-subject"], "johndoe");
    }
    browser.fetch(&xhr(&stranger)).await.assert_status(401);
    wait_for_active_sessions(&b).await;

    // The provider's back-channel logout reaches B; A refuses the session on its next request.
    let token = provider
        .sign(
            json!({"aud": "authgate", "jti": "fleet-logout", "sid": "fleet-session",
                   "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
            Some("logout+jwt"),
        )
        .await;
    post_logout_token(&b, token).await.assert_status(200);
    browser.fetch(&xhr(&a)).await.assert_status(401);
}

#[test]
fn check_reports_sign_in_mistakes_at_their_place() {
    let (code, stderr) = support::check_config(
        r#"[server]
http = "127.0.0.1:0"

[[issuers]]
id = "static"
issuer = "https://idp.example.com/"
audiences = ["a"]
secret = "0123456789abcdef0123456789abcdef"

[sign_in]
issuer = "static"
client_id = "authgate"
cookie = "__Host-authgate"
domain = "example.com"
cookie_secret = "too-short"
session_idle = "48h"

[[routes]]
id = "app"
upstream = "builtin:echo"
auth = ["session"]
"#,
    );
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "gateway.toml:11:10: issuer `static` needs `discovery = true`",
        "gateway.toml:14:10: a `__Host-` cookie cannot have a `domain`",
        "gateway.toml:15:17: the cookie secret has 9 bytes; it needs at least 32",
        "gateway.toml:16:16: `session_idle` is longer than `session_max`",
    ] {
        assert!(stderr.contains(expected), "{expected}\nin:\n{stderr}");
    }
    assert!(!stderr.contains("too-short"), "the secret is never shown");

    let (code, stderr) = support::check_config(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"app\"\nupstream = \"builtin:echo\"\nauth = [\"session\"]\n",
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("gateway.toml:7:9: auth method \"session\" needs a [sign_in] section"),
        "{stderr}"
    );
}
