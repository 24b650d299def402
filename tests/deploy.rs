//! The deployment files: every Kubernetes manifest parses and references only names that
//! exist; the manifests agree with the gateway.toml they ship (ports, probe paths, mount paths,
//! grace periods); and the sidecar pattern works end to end as two local processes.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authgate::config::Config;
use http::Request;
use http_body_util::Full;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(kind)
}

/// Every document of every YAML file in `dir`, by `kind/name`.
fn manifests(dir: &Path) -> HashMap<String, Yaml> {
    let mut found = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in docs {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", path.display()));
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{}: no apiVersion",
                path.display()
            );
            let name = doc["metadata"]["name"].as_str().unwrap_or("-");
            found.insert(format!("{kind}/{name}"), doc);
        }
    }
    found
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map_or(&[], Vec::as_slice)
}

/// Loads a shipped gateway.toml the way the pod would see it: the API keys file is the
/// Secret's `keys.toml`, written where the test can read it.
fn shipped_config(dir: &Path, secret: &Yaml, secrets_mount: &str) -> (Config, tempfile::TempDir) {
    let text = std::fs::read_to_string(dir.join("gateway.toml")).unwrap();
    let keys = secret["stringData"]["keys.toml"].as_str().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("keys.toml"), keys).unwrap();
    let text = text.replace(secrets_mount, &scratch.path().display().to_string());
    let config = Config::parse(&text, &scratch.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
    (config, scratch)
}

fn seconds(duration: &str) -> i64 {
    authgate::config::units::parse_duration(duration)
        .unwrap()
        .as_secs() as i64
}

fn check_kind(kind: &str, deployment_name: &str, expected_kinds: &[&str]) {
    let dir = deploy_dir(kind);
    let docs = manifests(&dir);
    for wanted in expected_kinds {
        assert!(
            docs.keys().any(|k| k.starts_with(wanted)),
            "{kind}: no {wanted} in {:?}",
            docs.keys()
        );
    }

    // kustomization.yaml: its resources exist, and it generates the ConfigMap from gateway.toml.
    let kustomization = &docs["Kustomization/-"];
    for resource in list(&kustomization["resources"]) {
        assert!(
            dir.join(resource.as_str().unwrap()).exists(),
            "{kind}: missing resource {resource:?}"
        );
    }
    let generator = &list(&kustomization["configMapGenerator"])[0];
    let configmap_name = generator["name"].as_str().unwrap();
    let configmap_keys: Vec<&str> = list(&generator["files"])
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for file in &configmap_keys {
        assert!(dir.join(file).exists());
    }

    let deployment = &docs[&format!("Deployment/{deployment_name}")];
    let pod = &deployment["spec"]["template"]["spec"];
    let authgate = list(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("authgate"))
        .unwrap();

    // Volumes name only the generated ConfigMap, its keys, and Secrets defined here with those keys.
    let mut mounts = HashMap::new();
    for mount in list(&authgate["volumeMounts"]) {
        mounts.insert(
            mount["name"].as_str().unwrap(),
            mount["mountPath"].as_str().unwrap(),
        );
        assert!(
            mount["subPath"].is_badvalue(),
            "{kind}: subPath mounts never receive updates"
        );
    }
    let mut secret_doc = None;
    for volume in list(&pod["volumes"]) {
        let name = volume["name"].as_str().unwrap();
        assert!(
            mounts.contains_key(name),
            "{kind}: volume {name} is not mounted"
        );
        if let Some(configmap) = volume["configMap"]["name"].as_str() {
            assert_eq!(configmap, configmap_name);
            for item in list(&volume["configMap"]["items"]) {
                assert!(configmap_keys.contains(&item["key"].as_str().unwrap()));
            }
        }
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let doc = docs
                .get(&format!("Secret/{secret}"))
                .unwrap_or_else(|| panic!("{kind}: no Secret {secret}"));
            for item in list(&volume["secret"]["items"]) {
                assert!(
                    !doc["stringData"][item["key"].as_str().unwrap()].is_badvalue(),
                    "{kind}: Secret {secret} lacks {item:?}"
                );
            }
            secret_doc = Some((doc, mounts[name]));
        }
    }
    let (secret, secrets_mount) = secret_doc.unwrap();

    // The container runs the mounted gateway.toml, which must be valid as the pod sees it.
    let args: Vec<&str> = list(&authgate["args"])
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(config_path, format!("{}/gateway.toml", mounts["config"]));
    let (config, _scratch) = shipped_config(&dir, secret, secrets_mount);

    // Ports: the container's named ports are the listeners' ports, probes use the admin paths.
    let ports: HashMap<&str, i64> = list(&authgate["ports"])
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["http"], i64::from(config.server.http.unwrap().port()));
    assert_eq!(ports["admin"], i64::from(config.admin.unwrap().port()));
    assert!(
        config.server.http.unwrap().ip().is_unspecified(),
        "{kind}: must listen beyond the pod's loopback"
    );
    assert_eq!(
        authgate["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        authgate["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(authgate[probe]["httpGet"]["port"].as_str(), Some("admin"));
    }
    let service = docs
        .iter()
        .find(|(k, _)| k.starts_with("Service/"))
        .unwrap()
        .1;
    for port in list(&service["spec"]["ports"]) {
        let target = port["targetPort"].as_str().unwrap();
        assert!(
            ports.contains_key(target),
            "{kind}: Service targets unknown port {target}"
        );
    }
    assert!(list(&service["spec"]["ports"])
        .iter()
        .all(|p| p["targetPort"].as_str() != Some("app")));

    // Grace: the pod outlives the preStop pause plus authgate's own drain.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let pause = authgate["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap();
    assert!(
        grace > pause + config.server.shutdown_grace.as_secs() as i64,
        "{kind}: grace {grace}s is too short"
    );
    assert!(seconds("20s") <= config.server.shutdown_grace.as_secs() as i64);

    // Hardening.
    let security = &authgate["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(
        list(&security["capabilities"]["drop"])[0].as_str(),
        Some("ALL")
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(!authgate["resources"]["requests"]["memory"].is_badvalue());
}

#[test]
fn the_sidecar_manifests_fit_their_gateway_toml() {
    check_kind(
        "sidecar",
        "orders",
        &["Deployment/", "Service/", "Secret/", "Kustomization/"],
    );
    // The app in the pod listens on loopback only, where authgate's upstream points.
    let docs = manifests(&deploy_dir("sidecar"));
    let pod = &docs["Deployment/orders"]["spec"]["template"]["spec"];
    let app = list(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("app"))
        .unwrap();
    assert!(app["ports"].is_badvalue(), "the app exposes no port");
    let listen = list(&app["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some("LISTEN"))
        .unwrap();
    let text = std::fs::read_to_string(deploy_dir("sidecar").join("gateway.toml")).unwrap();
    assert!(text.contains(&format!("\"http://{}\"", listen["value"].as_str().unwrap())));
}

#[test]
fn the_shared_gateway_manifests_fit_their_gateway_toml() {
    check_kind(
        "gateway",
        "authgate",
        &[
            "Deployment/",
            "Service/",
            "Secret/",
            "HorizontalPodAutoscaler/",
            "PodDisruptionBudget/",
            "Kustomization/",
        ],
    );
    let docs = manifests(&deploy_dir("gateway"));
    let service = &docs["Service/authgate"];
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some("9901")
    );
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/path"].as_str(),
        Some("/metrics")
    );
    assert_eq!(
        docs["HorizontalPodAutoscaler/authgate"]["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("authgate")
    );
    assert!(
        docs["Deployment/authgate"]["spec"]["replicas"]
            .as_i64()
            .unwrap()
            >= 2
    );
}

#[test]
fn the_redis_variant_is_the_shared_gateway_with_three_replicas_on_one_redis() {
    let dir = deploy_dir("gateway-redis");
    let docs = manifests(&dir);
    let kustomization = &docs["Kustomization/-"];
    let resources: Vec<&str> = list(&kustomization["resources"])
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(resources.contains(&"../gateway"), "{resources:?}");
    for resource in &resources {
        assert!(dir.join(resource).exists(), "missing resource {resource}");
    }
    // It replaces the base's ConfigMap with its own gateway.toml, under the same name.
    let generator = &list(&kustomization["configMapGenerator"])[0];
    assert_eq!(generator["name"].as_str(), Some("authgate"));
    assert_eq!(generator["behavior"].as_str(), Some("replace"));
    // The patch: three replicas, REDIS_URL from the Secret defined here.
    let patch_path = list(&kustomization["patches"])[0]["path"].as_str().unwrap();
    assert!(dir.join(patch_path).exists());
    let patch = &docs["Deployment/authgate"];
    assert_eq!(patch["spec"]["replicas"].as_i64(), Some(3));
    let container = &list(&patch["spec"]["template"]["spec"]["containers"])[0];
    assert_eq!(container["name"].as_str(), Some("authgate"));
    let env = &list(&container["env"])[0];
    assert_eq!(env["name"].as_str(), Some("REDIS_URL"));
    let reference = &env["valueFrom"]["secretKeyRef"];
    let secret = &docs[&format!("Secret/{}", reference["name"].as_str().unwrap())];
    let url = secret["stringData"][reference["key"].as_str().unwrap()]
        .as_str()
        .unwrap();
    // gateway.toml as the pod sees it: the base's keys file, the Secret's URL.
    let base = manifests(&deploy_dir("gateway"));
    let text = std::fs::read_to_string(dir.join("gateway.toml"))
        .unwrap()
        .replace("${REDIS_URL}", url);
    let scratch = tempfile::tempdir().unwrap();
    let keys = base["Secret/authgate-keys"]["stringData"]["keys.toml"]
        .as_str()
        .unwrap();
    std::fs::write(scratch.path().join("keys.toml"), keys).unwrap();
    let text = text.replace(
        "/etc/authgate/secrets",
        &scratch.path().display().to_string(),
    );
    let config = Config::parse(&text, &scratch.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
    match &config.state {
        authgate::config::StateBackend::Redis(settings) => assert_eq!(settings.url, url),
        other => panic!("not on Redis: {other:?}"),
    }
    // The listeners are the base's, which its Service and probes point at.
    let base_config = std::fs::read_to_string(deploy_dir("gateway").join("gateway.toml")).unwrap();
    for listener in ["http = \"0.0.0.0:8080\"", "listen = \"0.0.0.0:9901\""] {
        assert!(base_config.contains(listener) && text.contains(listener));
    }
}

#[test]
fn the_systemd_unit_is_hardened_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/authgate.service"),
    )
    .unwrap();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(path),
    )
    .unwrap()
}

/// `systemd-analyze verify` accepts the unit (with the binary it names pointed at this build).
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = deploy_file("systemd/authgate.service")
        .replace("/usr/local/bin/authgate", env!("CARGO_BIN_EXE_authgate"));
    let path = dir.path().join("authgate.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (from systemd) is installed by .ci/run");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}

/// Started by a service manager or a container runtime, the gateway keeps the configuration
/// directory exactly as it found it, writes its state where the layout says, and answers.
fn start_in_layout(
    config_dir: &Path,
    state: (&str, &Path),
    rewrite: impl Fn(String) -> String,
) -> support::GatewayProcess {
    let dir = tempfile::tempdir().unwrap();
    for name in support::file_names(config_dir) {
        let text = std::fs::read_to_string(config_dir.join(&name)).unwrap();
        std::fs::write(dir.path().join(&name), rewrite(text)).unwrap();
    }
    let before = support::file_names(dir.path());
    // As ExecStartPre does: a check first, which must leave no trace either.
    let check = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .current_dir(dir.path())
        .args(["check", "--config", "gateway.toml"])
        .env(state.0, state.1)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let gateway = support::GatewayProcess::spawn_in(
        dir,
        &[(state.0, state.1.to_str().unwrap()), ("RUST_LOG", "info")],
    );
    assert_eq!(
        support::file_names(gateway.dir.path()),
        before,
        "the configuration directory was written"
    );
    gateway
}

#[tokio::test]
async fn the_systemd_layout_starts_with_its_state_in_the_state_directory() {
    let root = tempfile::tempdir().unwrap();
    // `install -t /etc/authgate gateway.toml users.toml keys.toml`, as the unit's comment says.
    let etc = root.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    for file in ["gateway.toml", "users.toml", "keys.toml"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(file),
            etc.join(file),
        )
        .unwrap();
    }
    let state = root.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let gateway = start_in_layout(&etc, ("STATE_DIRECTORY", &state), |text| {
        text.replace("127.0.0.1:8080", "127.0.0.1:0")
            .replace("127.0.0.1:9901", "127.0.0.1:0")
    });
    let reply = support::get(&format!("http://{}/", gateway.http)).await;
    reply.assert_status(200);
    let mut names = Vec::new();
    for _ in 0..100 {
        names = support::file_names(&state);
        if names.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        names,
        ["quotas.redb", "token-signing-key.pem", "token-store.redb"]
    );
}

#[tokio::test]
async fn the_container_example_starts_as_the_dockerfile_runs_it() {
    let dockerfile = deploy_file("Dockerfile");
    for line in [
        "ENV AUTHGATE_DATA_DIR=/var/lib/authgate",
        "VOLUME [\"/var/lib/authgate\"]",
        "CMD [\"run\", \"--config\", \"/etc/authgate/gateway.toml\"]",
    ] {
        assert!(
            dockerfile.lines().any(|l| l == line),
            "the Dockerfile lacks {line}"
        );
    }
    assert!(dockerfile.contains("-v \"$PWD/deploy/docker:/etc/authgate:ro\""));
    let state = tempfile::tempdir().unwrap();
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker");
    let gateway = start_in_layout(&config_dir, ("AUTHGATE_DATA_DIR", state.path()), |text| {
        // The container's 0.0.0.0 ports, as a test on a shared machine can bind them.
        text.replace("0.0.0.0:8080", "127.0.0.1:0")
            .replace("0.0.0.0:9901", "127.0.0.1:0")
    });
    let base = format!("http://{}", gateway.http);
    support::get(&format!("{base}/")).await.assert_status(200);
    support::get(&format!("{base}/orders"))
        .await
        .assert_status(401);
    assert!(state.path().join("token-signing-key.pem").exists());
}

/// The example app: `target/debug/examples/echo_upstream`, built by `cargo test` beside the tests.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_sidecar_pod_works_as_two_local_processes() {
    // The app: the example upstream, bound to loopback like the app container.
    let app_address = support::closed_port();
    let _app = Process(
        Command::new(example_binary("echo_upstream"))
            .arg(app_address.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // authgate: the sidecar's own gateway.toml, with ports and paths a test can use.
    let (key, entry) =
        authgate::auth::api_keys::new_entry(Some("pod-test"), "ci-bot", &[], &[], None).unwrap();
    let shipped = std::fs::read_to_string(deploy_dir("sidecar").join("gateway.toml")).unwrap();
    let keys_dir = tempfile::tempdir().unwrap();
    std::fs::write(keys_dir.path().join("keys.toml"), entry).unwrap();
    let config = shipped
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("0.0.0.0:9901", "127.0.0.1:0")
        .replace("127.0.0.1:3000", &app_address.to_string())
        .replace(
            "/etc/authgate/secrets",
            &keys_dir.path().display().to_string(),
        );
    let gateway = support::GatewayProcess::spawn(&config);
    let base = format!("http://{}", gateway.http);

    // Wait (bounded) for the app to listen.
    let mut app_up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(app_address).await.is_ok() {
            app_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app_up, "the example app did not start");

    let client = support::http1_client();
    let with_key = Request::get(format!("{base}/orders/7"))
        .header("x-api-key", &key)
        .header("x-auth-subject", "admin")
        .body(Full::default())
        .unwrap();
    let reply = support::send(&client, with_key).await;
    reply.assert_status(200);
    assert_eq!(
        reply.json()["subject"],
        "ci-bot",
        "the app reads the gateway's X-Auth-Subject"
    );
    assert_eq!(reply.json()["path"], "/orders/7");

    let without = support::send(
        &client,
        Request::get(format!("{base}/orders/7"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(without.status(), 401);
    let health = support::send(
        &client,
        Request::get(format!("{base}/health"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        health.status(),
        200,
        "the public health route reaches the app"
    );
}

/// The fenced block that follows `<!-- excerpt: PATH -->` in the README.
fn readme_excerpt(path: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = format!("<!-- excerpt: {path} -->");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no excerpt of {path}"))
        + marker.len()..];
    let body = &after[after.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn the_forward_auth_examples_ask_the_gateway_and_copy_its_identity_headers() {
    let dir = deploy_dir("forward-auth");
    let docs = manifests(&dir);

    // The overlay replaces the shared gateway's ConfigMap with a gateway.toml that decides.
    let kustomization = &docs["Kustomization/-"];
    assert_eq!(
        list(&kustomization["resources"])[0].as_str(),
        Some("../gateway")
    );
    let generator = &list(&kustomization["configMapGenerator"])[0];
    assert_eq!(generator["name"].as_str(), Some("authgate"));
    assert_eq!(generator["behavior"].as_str(), Some("replace"));
    let base = manifests(&deploy_dir("gateway"));
    let (config, _scratch) =
        shipped_config(&dir, &base["Secret/authgate-keys"], "/etc/authgate/secrets");
    let forward_auth = config.forward_auth.as_ref().expect("[forward_auth]");
    assert!(config
        .routes
        .iter()
        .all(|r| r.target == authgate::config::RouteTarget::None));
    assert_eq!(config.server.http.unwrap().port(), 8080);

    // Every proxy asks the base's Service on its `http` port, at the configured path.
    let service = &base["Service/authgate"];
    let port = list(&service["spec"]["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some("http"))
        .unwrap()["port"]
        .as_i64()
        .unwrap();
    let host = "authgate.default.svc.cluster.local";
    let address = if port == 80 {
        format!("http://{host}{}", forward_auth.path)
    } else {
        format!("http://{host}:{port}{}", forward_auth.path)
    };
    let identity = &config.identity;
    let identity_headers: Vec<String> = [
        &identity.subject,
        &identity.method,
        &identity.issuer,
        &identity.scopes,
        &identity.key_id,
    ]
    .iter()
    .map(|h| h.as_str().to_string())
    .collect();
    let copies_identity = |what: &str, names: Vec<String>| {
        let names: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
        assert_eq!(
            names, identity_headers,
            "{what} copies every identity header"
        );
    };

    let annotations = &docs["Ingress/api"]["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-url"].as_str(),
        Some(address.as_str())
    );
    copies_identity(
        "ingress-nginx",
        annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect(),
    );
    assert!(
        forward_auth.deny_status.is_some(),
        "ingress-nginx turns a 429 into a 500: the example sets deny_status"
    );

    let forward = &docs["Middleware/authgate"]["spec"]["forwardAuth"];
    assert_eq!(forward["address"].as_str(), Some(address.as_str()));
    copies_identity(
        "Traefik",
        list(&forward["authResponseHeaders"])
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect(),
    );
    let route = &list(&docs["IngressRoute/api"]["spec"]["routes"])[0];
    assert_eq!(
        list(&route["middlewares"])[0]["name"].as_str(),
        Some("authgate")
    );

    let provider = &list(
        &docs["IstioOperator/authgate-ext-authz"]["spec"]["meshConfig"]["extensionProviders"],
    )[0];
    let http = &provider["envoyExtAuthzHttp"];
    assert_eq!(http["service"].as_str(), Some(host));
    assert_eq!(http["port"].as_i64(), Some(port));
    assert_eq!(
        http["pathPrefix"].as_str(),
        Some(forward_auth.path.as_str())
    );
    let checked: Vec<&str> = list(&http["includeRequestHeadersInCheck"])
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let api_key_header = config
        .api_keys
        .as_ref()
        .unwrap()
        .header
        .as_str()
        .to_string();
    assert!(checked.contains(&"authorization") && checked.contains(&api_key_header.as_str()));
    copies_identity(
        "Istio",
        list(&http["headersToUpstreamOnAllow"])
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect(),
    );
    let denied: Vec<&str> = list(&http["headersToDownstreamOnDeny"])
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(denied.contains(&"www-authenticate") && denied.contains(&"retry-after"));
    let policy = &docs["AuthorizationPolicy/api-authgate"]["spec"];
    assert_eq!(policy["action"].as_str(), Some("CUSTOM"));
    assert_eq!(policy["provider"]["name"], provider["name"]);

    // The README shows these files as they are.
    for file in ["ingress-nginx.yaml", "traefik.yaml", "istio.yaml"] {
        let path = format!("kubernetes/forward-auth/{file}");
        let excerpt = readme_excerpt(&format!("deploy/{path}"));
        assert!(
            deploy_file(&path).contains(&excerpt),
            "README's excerpt of {path} differs from the file:\n{excerpt}"
        );
    }
}
