//! The real `authgate` binary: check-config, certs, serve (with curl) and demo.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`curl`] off the async runtime.
async fn curl_async(cmdline: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || curl(&cmdline))
        .await
        .expect("curl task")
}

/// Runs a shell command line; returns (HTTP status, body).
fn curl(cmdline: &str) -> (u16, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmdline} --max-time 10 -w '\\n%{{http_code}}'"))
        .output()
        .expect("run sh");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn authgate(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run authgate")
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_key_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "tls: {cert_file: a, key_file: b}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n").unwrap();
    // The YAML is valid; its TLS files are not there.
    let out = authgate(&[
        "check-config",
        "--config",
        good.to_str().unwrap(),
        "--skip-files",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = authgate(&["check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(": tls.cert_file: "),
        "{out:?}"
    );

    let cases = [
        (
            "tls: {cert_file: a, key_file: b}\nroutes: [{path_prefix: /, upstream: \"ftp://x\"}]\n",
            "routes[0].upstream",
        ),
        (
            "tls: {cert_file: a, key_file: b, colour: red}\nroutes: []\n",
            "unknown field `colour`",
        ),
        (
            "tls: {cert_file: a, key_file: b}\nroutes: [{path_prefix: /, upstream: \"http://x\"}]\nlimits: {handshake_timeout: forever}\n",
            "invalid duration",
        ),
    ];
    for (yaml, want) in cases {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, yaml).unwrap();
        let out = authgate(&["check-config", "--config", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "stderr {err:?} lacks {want:?}");
    }
    let out = authgate(&["check-config", "--config", "/nonexistent/authgate.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

fn write_serve_config(dir: &Path, port: u16, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let d = dir.display();
    let path = dir.join("authgate.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:{port}\"\ntls: {{cert_file: {d}/server.crt, key_file: {d}/server.key, client_ca_file: {d}/ca.crt}}\nidentity: {{rules: [{{spiffe: {{trust_domain: cluster.local}}}}, {{common_name: {{}}}}]}}\nstatic:\n  tokens: [{{token: {BOB_TOKEN}, user: bob, groups: [dev]}}]\n  allow: [{{group: dev, verbs: [get], paths: [\"/api/**\"]}}]\nroutes: [{{path_prefix: /, upstream: \"http://{upstream}\"}}]\nlimits: {{shutdown_timeout: 5s}}\nadmin: {{listen: \"off\"}}\n"
        ),
    )
    .expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn certs_made_by_the_cli_work_with_curl_against_serve_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(authgate(&["certs", "init", d]).status.success());
    let out = authgate(&[
        "certs", "client", d, "--name", "alice", "--cn", "alice", "--org", "dev", "--org", "qa",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = authgate(&[
        "certs",
        "client",
        d,
        "--name",
        "bot",
        "--uri",
        "spiffe://cluster.local/ns/ci/sa/bot",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("alice.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "private keys are not world-readable");

    let upstream = Upstream::start().await;
    let port = free_port();
    let config = write_serve_config(dir.path(), port, upstream.addr);
    let mut child = Running(
        Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let base = format!("curl -sS --cacert {d}/ca.crt https://localhost:{port}");
    let (code, _) = curl_async(format!(
        "{base}/api/x --cert {d}/alice.crt --key {d}/alice.key"
    ))
    .await;
    assert_eq!(code, 200);
    let seen = upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["alice"]);
    assert_eq!(
        seen.all("x-remote-group"),
        ["dev", "qa", "system:authenticated"]
    );
    let (code, _) = curl_async(format!(
        "{base}/api/x -H 'Authorization: Bearer {BOB_TOKEN}'"
    ))
    .await;
    assert_eq!(code, 200);
    let (code, body) =
        curl_async(format!("{base}/api/x --cert {d}/bot.crt --key {d}/bot.key")).await;
    assert_eq!(code, 403, "the SPIFFE identity has no permission: {body}");
    assert!(body.contains("system:serviceaccount:ci:bot"), "{body}");

    // SIGTERM: graceful shutdown, exit code 0.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_to_start_on_unreadable_tls_files_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let config = write_serve_config(dir.path(), free_port(), upstream.addr);
    let out = authgate(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.crt"), "{err}");
}

#[test]
fn demo_prints_curl_commands_that_each_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let mut child = Running(
        Command::new(BIN)
            .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir.path().join("certs"))
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut commands = Vec::new();
    let mut expect = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("Ctrl-C") {
            break;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let code: u16 = comment.split("-> ").nth(1).unwrap()[..3].parse().unwrap();
            expect = Some((code, comment.to_owned()));
        } else if line.starts_with("curl ") {
            commands.push((expect.take().unwrap(), line));
        }
    }
    assert_eq!(commands.len(), 10, "{commands:?}");
    wait_for_port(port);
    wait_for_port(admin);
    let token = std::fs::read_to_string(dir.path().join("certs/demo.token")).unwrap();
    for ((code, what), cmd) in commands {
        assert!(
            !cmd.contains(token.trim()),
            "the demo must not print its token"
        );
        let (got, body) = curl(&cmd);
        assert_eq!(got, code, "{what}: {cmd}\n{body}");
        if what.contains("system:serviceaccount:default:reporter") {
            assert!(
                body.contains("system:serviceaccount:default:reporter"),
                "{body}"
            );
        }
        if cmd.contains(&format!(":{admin}/")) {
            demo_admin_answer(&cmd, &body);
        } else if code == 200 {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(json["headers"]["x-remote-user"][0].is_string(), "{body}");
            assert!(json["headers"].get("authorization").is_none(), "{body}");
        }
    }
    drop(child);
}

/// What each of the demo's admin commands must show, after the gate's
/// commands ran: the migration report knows alice (certificate) and bob
/// (token), the metrics are authgate's, the flush names bob.
fn demo_admin_answer(cmd: &str, body: &str) {
    if cmd.contains("/metrics") {
        assert!(body.contains("authgate_requests_total"), "{cmd}: {body}");
    } else if cmd.contains("/cache/flush") {
        let json: serde_json::Value = serde_json::from_str(body).expect("the flush answers JSON");
        assert_eq!(json["user"], "bob", "{body}");
    } else if cmd.contains("format=text") {
        assert!(
            body.contains("alice") && body.contains("bob"),
            "{cmd}: {body}"
        );
    } else if !cmd.contains("text/html") {
        let json: serde_json::Value = serde_json::from_str(body).expect("the report is JSON");
        assert!(json.is_object(), "{body}");
        assert!(
            body.contains("alice") && body.contains("bob"),
            "{cmd}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_slow_request_refuses_new_connections_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(authgate(&["certs", "init", d]).status.success());
    let upstream = Upstream::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let config = write_serve_config(dir.path(), port, upstream.addr);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "admin: {listen: \"off\"}",
        &format!("admin: {{listen: \"127.0.0.1:{admin_port}\"}}"),
    );
    text = text.replace(
        "limits: {shutdown_timeout: 5s}",
        "limits: {shutdown_timeout: 5s, shutdown_delay: 1s}",
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Running(
        Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    wait_for_port(admin_port);
    let base = format!("curl -sS --cacert {d}/ca.crt https://localhost:{port}");
    let slow = tokio::spawn(curl_async(format!(
        "{base}/api/slow -H 'Authorization: Bearer {BOB_TOKEN}'"
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Readiness goes false first, while the listener still accepts during shutdown_delay.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = curl_async(format!("curl -sS http://127.0.0.1:{admin_port}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    // The in-flight request completes.
    let (code, _) = slow.await.unwrap();
    assert_eq!(code, 200);
    // After the delay, new connections are refused.
    while sent.elapsed() < Duration::from_millis(1300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_loads_the_tls_files_as_serving_would() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, other_key) = pki.server_pair(4001);
    let other_key_file = dir.path().join("other.key");
    std::fs::write(&other_key_file, other_key).unwrap();
    let yaml = |cert: &Path, key: &Path, crl: &Path| {
        format!(
            "tls: {{cert_file: {}, key_file: {}, client_ca_file: {}, crl_files: [{}]}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\n",
            cert.display(),
            key.display(),
            pki.bundle_file.display(),
            crl.display()
        )
    };
    let ours = pki.crl_file("ours.crl", &[]);
    let foreign = stranger.crl_file("foreign.crl", &[]);
    let run = |text: String| {
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, text).unwrap();
        authgate(&["check-config", "--config", f.to_str().unwrap()])
    };
    let out = run(yaml(&pki.server_cert, &pki.server_key, &ours));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (text, key, why) in [
        (
            yaml(&pki.server_cert, &other_key_file, &ours),
            "tls.key_file",
            "does not match",
        ),
        (
            yaml(&pki.server_cert, &pki.server_key, &foreign),
            "tls.crl_files[0]",
            "not signed by a CA in tls.client_ca_file",
        ),
    ] {
        let out = run(text);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(": {key}: ")) && err.contains(why),
            "{err}"
        );
    }
}

/// Operator mistakes that would trust everyone, make every path public, pin
/// everyone to mTLS or let an identity header frame the request: refused by
/// `check-config` (exit 2), naming the key and saying why.
#[test]
fn check_config_refuses_dangerous_configs_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "tls: {cert_file: a, key_file: b}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n";
    let auth = "tls: {cert_file: a, key_file: b}\nmode: auth\n";
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str)] = &[
        (auth, "auth: {trusted_proxies: [\"0.0.0.0/0\"]}", "auth.trusted_proxies[0]", "trusts every address"),
        (auth, "auth: {trusted_proxies: [\"::/0\"]}", "auth.trusted_proxies[0]", "::/0"),
        (auth, "auth: {trusted_proxies: [\"127.0.0.1\", \"0.0.0.0/0\"]}", "auth.trusted_proxies[1]", "0.0.0.0/0"),
        (base, "headers: {extra_prefix: \"\"}", "headers.extra_prefix", "must not be empty"),
        (base, "headers: {user: content-length}", "headers.user", "frames the message"),
        (base, "headers: {group: host}", "headers.group", "\"host\""),
        (base, "headers: {uid: transfer-encoding}", "headers.uid", "frames the message"),
        (base, "headers: {user: connection}", "headers.user", "frames the message"),
        (base, "headers: {user: Content_Length}", "headers.user", "must not be an identity header"),
        (base, "paths: {unauthenticated: [\"/**\"]}", "paths.unauthenticated[0]", "authentication would never run"),
        (base, "migration: {mtls_required: [\"**\"]}", "migration.mtls_required[0]", "matches every identity"),
        (base, "routes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\", upgrades: [h2c]}]", "routes[0].upgrades[0]", "h2c"),
    ];
    for (head, yaml, key, why) in cases {
        let head = if yaml.starts_with("routes:") {
            "tls: {cert_file: a, key_file: b}\n"
        } else {
            head
        };
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, format!("{head}{yaml}\n")).unwrap();
        let out = authgate(&[
            "check-config",
            "--config",
            f.to_str().unwrap(),
            "--skip-files",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(
            err.contains(&format!(": {key}: ")),
            "{yaml}: {err:?} does not name {key}"
        );
        assert!(err.contains(why), "{yaml}: {err:?} lacks {why:?}");
    }
}

/// A config error in a file holding plaintext tokens names the key, never
/// the token: a bad token, an unknown key next to one, a syntax error after
/// one.
#[test]
fn check_config_errors_never_echo_a_static_token() {
    let dir = tempfile::tempdir().unwrap();
    let head = "tls: {cert_file: a, key_file: b}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n";
    let cases = [
        (
            "static: {tokens: [{token: \"SECRETab cd\", user: bob}]}",
            "static.tokens[0].token",
        ),
        (
            "static: {tokens: [{token: \"SECRETab\\\"cd\", user: bob}]}",
            "static.tokens[0].token",
        ),
        (
            "static: {tokens: [{token: SECRETabcd, user: bob, SECRETkey: 1}]}",
            "static",
        ),
        (
            "static:\n  tokens:\n    - {token: SECRETabcd, user: bob\n",
            "static",
        ),
        (
            "static:\n  tokens:\n    - token: SECRETabcd\n      user: [bob\n",
            "static",
        ),
        (
            "static:\n  tokens:\n    - {token: SECRETabcd, user: bob}\n    - {token: SECRETabcd, user: eve}\n",
            "static.tokens",
        ),
    ];
    for (yaml, key) in cases {
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, format!("{head}{yaml}\n")).unwrap();
        let out = authgate(&[
            "check-config",
            "--config",
            f.to_str().unwrap(),
            "--skip-files",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(key), "{yaml}: {err:?} does not name {key}");
        assert!(!err.contains("SECRET"), "{yaml}: the token leaked: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SECRET"));
    }
}

/// The binary logs through its writer thread: an access line reaches stderr
/// while the server runs (the thread writes each batch as it drains), and
/// `/metrics` counts the lines it had to drop (none here).
#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_written_in_batches_and_its_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(authgate(&["certs", "init", d]).status.success());
    let upstream = Upstream::start().await;
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("authgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{port}\"\ntls: {{cert_file: {d}/server.crt, key_file: {d}/server.key}}\nstatic:\n  tokens: [{{token: {BOB_TOKEN}, user: bob, groups: [dev]}}]\n  allow: [{{group: dev, verbs: [get], paths: [\"/api/**\"]}}]\nroutes: [{{path_prefix: /, upstream: \"http://{}\"}}]\nlog: {{format: json}}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\n",
            upstream.addr
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let _child = Running(
        Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("TOKIO_WORKER_THREADS", "1")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    wait_for_port(admin);
    let (code, _) = curl_async(format!(
        "curl -sS --cacert {d}/ca.crt https://localhost:{port}/api/x -H 'Authorization: Bearer {BOB_TOKEN}'"
    ))
    .await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text
            .lines()
            .any(|l| l.contains("authgate::access") && l.contains("\"status\":200"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access line while serving:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = curl_async(format!("curl -sS http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(code, 200);
    assert!(
        body.lines()
            .any(|l| l == "authgate_log_lines_dropped_total 0"),
        "{body}"
    );
}

#[test]
fn check_config_loads_the_upstream_client_certificate_and_names_a_key_that_does_not_match() {
    let pki = Pki::new();
    let front = pki.client("front", &ClientOpts::cn("front-proxy", &[]));
    let other = pki.client("other", &ClientOpts::cn("other", &[]));
    let dir = tempfile::tempdir().unwrap();
    let run = |cert: &Path, key: &Path| {
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            format!(
                "tls: {{cert_file: {}, key_file: {}}}\nroutes: [{{path_prefix: /, upstream: \"https://127.0.0.1:6443\", upstream_ca_file: {}, upstream_client_cert_file: {}, upstream_client_key_file: {}}}]\n",
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca_file.display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        authgate(&["check-config", "--config", f.to_str().unwrap()])
    };
    let out = run(&front.cert_file, &front.key_file);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run(&front.cert_file, &other.key_file);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(": routes[0].upstream_client_key_file: ") && err.contains("does not match"),
        "{err}"
    );
    let out = run(&dir.path().join("missing.crt"), &front.key_file);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(": routes[0].upstream_client_cert_file: "),
        "{err}"
    );
}
