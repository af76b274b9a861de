//! The migration page in a real browser: headless Chromium (Debian's
//! `chromium`) loads `GET /migration` from the real binary, runs the page's
//! script under its Content-Security-Policy, and the test reads the
//! rendered DOM (and takes a screenshot). Identities named like markup
//! (`<script>`, `<img onerror>`, quotes) render as text, never as elements,
//! and nothing of theirs runs.
//!
//! Without `/usr/bin/chromium` the test is skipped, unless
//! `AUTHGATE_REQUIRE_CHROMIUM=1` (CI sets it), when it fails.

use std::process::Command;

use testkit::*;

use crate::migration_fleet::{Replica, have};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A user name that, were it markup, would run script and mark the page.
const HOSTILE: &str = "<script>document.body.setAttribute(\"data-pwned\",\"1\")</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">";
const HOSTILE_TOKEN: &str = "hostile-token-4e5f60";
/// Quotes and an ampersand that would end an attribute or an entity.
const QUOTES: &str = "q\"uote'&amp;<b>bold</b>";
const QUOTES_TOKEN: &str = "quotes-token-7a8b9c";

/// Runs Chromium headless on `url` with `args`; (exit success, stdout).
fn chromium(url: &str, args: &[String]) -> (bool, String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("timeout")
        .arg("90")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// YAML single-quoted scalar.
fn yaml(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_renders_in_chromium_with_hostile_names_as_text() {
    if !have(CHROMIUM, "AUTHGATE_REQUIRE_CHROMIUM") {
        return;
    }
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let config = format!(
        "static:\n  tokens:\n    - {{token: {BOB_TOKEN}, user: bob}}\n    - {{token: {HOSTILE_TOKEN}, user: {}}}\n    - {{token: {QUOTES_TOKEN}, user: {}}}\n  allow:\n    - {{group: \"system:authenticated\", verbs: [get], paths: [\"/**\"]}}\nroutes:\n  - {{path_prefix: /, upstream: \"{{UP}}\"}}\n  - {{path_prefix: /closing, upstream: \"{{UP}}\", auth: {{methods: [mtls], enforce: false}}}}\n",
        yaml(HOSTILE),
        yaml(QUOTES)
    );
    let g = Replica::start_with(
        &pki,
        upstream.addr,
        &config,
        "  mtls_required: [{glob: \"q*\", enforce: false}]\n",
    );
    let alice = pki.client("alice", &ClientOpts::cn("alice", &["dev"]));
    for _ in 0..3 {
        let r = g
            .client(&pki)
            .with_cert(&alice)
            .get("/x", &[])
            .await
            .expect("alice");
        assert_eq!(r.status, 200);
    }
    for (path, token) in [
        ("/x", BOB_TOKEN),
        ("/closing/x", HOSTILE_TOKEN),
        ("/x", QUOTES_TOKEN),
    ] {
        let r = g
            .client(&pki)
            .get_with_token(path, token)
            .await
            .expect("token");
        assert_eq!(r.status, 200, "{path}");
    }
    let url = format!("http://127.0.0.1:{}/migration", g.admin);

    // The response: HTML under a policy that allows nothing but its own code.
    let head = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept: text/html",
            &url,
        ])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP: {head}"));
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");

    // Chromium sends `Accept: text/html`; --dump-dom prints the DOM after
    // the page's script ran.
    let (ok, dom, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || chromium(&url, &["--dump-dom".to_owned()])
    })
    .await
    .expect("chromium");
    assert!(ok, "chromium failed: {err}");
    // The script ran: the CSP hash matches what is served.
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run:\n{dom}\n{err}"
    );
    assert!(
        dom.contains("<span class=\"ago\">("),
        "no relative times:\n{dom}"
    );
    assert!(
        dom.contains("4 of 4 shown"),
        "the filter did not count rows:\n{dom}"
    );
    // Nothing of the hostile names ran or became an element.
    assert!(
        dom.contains("<body data-ready=\"1\">") && !dom.contains("data-pwned=\""),
        "hostile markup ran:\n{dom}"
    );
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(!dom.contains("<img") && !dom.contains("<b>"), "{dom}");
    // They show as text, in their cells (the DOM serialiser escapes text).
    assert!(
        dom.contains("<td class=\"identity\">&lt;script&gt;document.body.setAttribute(\"data-pwned\",\"1\")&lt;/script&gt;&lt;img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"&gt;</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"identity\">q\"uote'&amp;amp;&lt;b&gt;bold&lt;/b&gt;</td>"),
        "{dom}"
    );
    // Progress, per-route token use and the identity rows.
    assert!(
        dom.contains("<strong id=\"requests-mtls\">50%</strong> (3 of 6)"),
        "{dom}"
    );
    assert!(
        dom.contains("<strong id=\"identities-mtls\">25%</strong> (1 of 4)"),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"would-refuse\">1 (token_forbidden)</td>"),
        "{dom}"
    );
    assert!(dom.contains("<td class=\"pinned\">dry-run</td>"), "{dom}");
    assert!(dom.contains("<tr data-route=\"/closing\">"), "{dom}");

    // A screenshot: the page paints.
    let shot = tempfile::tempdir().expect("dir");
    let file = shot.path().join("migration.png");
    let (ok, _, err) = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            chromium(
                &url,
                &[
                    format!("--screenshot={}", file.display()),
                    "--window-size=1200,900".to_owned(),
                ],
            )
        }
    })
    .await
    .expect("chromium");
    assert!(ok, "chromium screenshot failed: {err}");
    let png = std::fs::read(&file).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
