use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn ok(rows: &[(&str, &str, f64)]) -> Vec<u8> {
    let result: Vec<Value> = rows
        .iter()
        .map(|(label, key, v)| {
            serde_json::json!({"metric": {*label: key}, "value": [1_700_000_000.0, v.to_string()]})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result}
    }))
    .unwrap()
}

#[test]
fn queries_name_the_route_escaped_and_the_window_in_seconds() {
    let [by_method, by_identity] = queries("/a\"b\\c", 7 * DAY);
    assert_eq!(
        by_method,
        "max by (method) (max_over_time(authgate_route_last_seen_timestamp_seconds{route=\"/a\\\"b\\\\c\"}[604800s]))"
    );
    assert_eq!(
        by_identity,
        "max by (identity) (max_over_time(authgate_identity_last_seen_timestamp_seconds{route=\"/a\\\"b\\\\c\",method=\"token\"}[604800s]))"
    );
}

#[test]
fn answers_are_read_and_errors_are_errors() {
    let rows = parse_vector(&ok(&[("identity", "alice", 1_700_000_000.0)]), "identity").unwrap();
    assert_eq!(rows, [("alice".to_owned(), 1_700_000_000.0)]);
    let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
    assert_eq!(
        parse_vector(err, "identity"),
        Err(Error::Answer("bad_data: parse error".into()))
    );
    assert!(matches!(
        parse_vector(b"<html>proxy error</html>", "x"),
        Err(Error::Answer(_))
    ));
    let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    assert!(matches!(parse_vector(matrix, "x"), Err(Error::Answer(_))));
    let no_value =
        br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#;
    assert!(matches!(parse_vector(no_value, "x"), Err(Error::Answer(_))));
}

#[test]
fn the_verdict_counts_only_token_use_inside_the_window() {
    let now = 1_000_000;
    let m = |token: f64| vec![("mtls".to_owned(), 999_000.0), ("token".to_owned(), token)];
    let ids = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(k, t)| ((*k).to_owned(), *t))
            .collect::<Vec<_>>()
    };
    let w = Duration::from_secs(100);
    // Unknown route: no answer, never "nobody".
    assert_eq!(
        verdict("/x", &[], &[], now, w),
        Err(Error::UnknownRoute("/x".into()))
    );
    // Never a token.
    assert_eq!(
        verdict("/x", &m(0.0), &[], now, w),
        Ok(Verdict::Quiet { last_token: 0 })
    );
    // Tokens, but before the window (the gauge still says so).
    assert_eq!(
        verdict("/x", &m(999_899.0), &ids(&[("bob", 999_899.0)]), now, w),
        Ok(Verdict::Quiet {
            last_token: 999_899
        })
    );
    // Inside it: who, last seen first.
    let got = verdict(
        "/x",
        &m(999_990.0),
        &ids(&[("bob", 999_900.0), ("alice", 999_990.0), ("old", 5.0)]),
        now,
        w,
    );
    assert_eq!(
        got,
        Ok(Verdict::WouldBreak {
            who: vec![
                Breaker {
                    identity: "alice".into(),
                    last_seen: 999_990
                },
                Breaker {
                    identity: "bob".into(),
                    last_seen: 999_900
                },
            ],
            last_token: 999_990
        })
    );
    let out = describe("/x", w, got.as_ref().unwrap());
    assert_eq!(out.code, EXIT_WOULD_BREAK);
    assert!(out.stdout.contains("\nalice "), "{}", out.stdout);
    // The route saw a token but nobody is named: still no.
    let unnamed = verdict("/x", &m(999_950.0), &[], now, w).unwrap();
    let out = describe("/x", w, &unnamed);
    assert_eq!(out.code, EXIT_WOULD_BREAK);
    assert!(
        out.stdout.contains("migration.track_identities"),
        "{}",
        out.stdout
    );
    // An identity in the window with the route gauge behind: still no.
    assert!(matches!(
        verdict("/x", &m(0.0), &ids(&[("carol", 999_999.0)]), now, w),
        Ok(Verdict::WouldBreak { .. })
    ));
    assert_eq!(
        describe("/x", w, &Verdict::Quiet { last_token: 0 }).code,
        EXIT_QUIET
    );
}

#[tokio::test]
async fn no_answer_is_exit_2_never_0() {
    let args = |url: &str| CheckArgs {
        prometheus: url.to_owned(),
        route: "/x".into(),
        quiet_for: DAY,
        timeout: Duration::from_secs(2),
    };
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        "ftp://example".to_owned(),
        "not a url".to_owned(),
    ] {
        let out = run(&args(&url)).await;
        assert_eq!(out.code, EXIT_ERROR, "{url}: {out:?}");
        assert!(out.stdout.is_empty(), "{url}: {out:?}");
        assert!(out.stderr.contains("no answer"), "{url}: {out:?}");
    }
}

/// review-b: a Prometheus (or Thanos/Mimir querier) that could not read every
/// source answers `status: success` with `warnings` (a partial answer, e.g.
/// "partial response: store unavailable"). The check must not conclude
/// "nobody" from it: fail closed means exit 2, never 0.
#[tokio::test]
async fn a_partial_answer_with_warnings_is_never_exit_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = serde_json::json!({
        "status": "success",
        "warnings": ["partial response: store 10.0.0.7:10901 unavailable"],
        "data": {"resultType": "vector", "result": [
            {"metric": {"method": "mtls"}, "value": [1_700_000_000.0, "0"]},
            {"metric": {"method": "token"}, "value": [1_700_000_000.0, "0"]}
        ]}
    })
    .to_string();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.expect("write");
        }
    });
    let out = run(&CheckArgs {
        prometheus: format!("http://127.0.0.1:{port}"),
        route: "/x".into(),
        quiet_for: DAY,
        timeout: Duration::from_secs(5),
    })
    .await;
    server.abort();
    assert_ne!(
        out.code, EXIT_QUIET,
        "a partial answer (warnings) concluded nobody would break: {out:?}"
    );
}
