//! Bearer tokens and authorization through the static backend, over real TLS.

use testkit::*;

#[tokio::test]
async fn static_token_gets_200_with_its_identity() {
    let env = Env::start(|_| {}).await;
    let r = env
        .client()
        .get_with_token("/api/things", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["bob"]);
    assert_eq!(seen.all("x-remote-uid"), ["1001"]);
    assert_eq!(seen.all("x-remote-group"), ["dev", "system:authenticated"]);
    assert!(
        seen.headers.get("authorization").is_none(),
        "Authorization must not be forwarded"
    );
}

#[tokio::test]
async fn missing_and_bad_credentials_are_401_with_a_reason_and_never_forwarded() {
    let env = Env::start(|_| {}).await;
    let c = env.client();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 6] = [
        (&[], "missing_credentials", r#"Bearer realm="authgate""#),
        (
            &[("authorization", "Bearer wrong-token")],
            "token_rejected",
            r#"Bearer realm="authgate", error="invalid_token""#,
        ),
        (
            &[("authorization", "Basic Ym9iOnB3")],
            "invalid_token",
            r#"Bearer realm="authgate", error="invalid_token""#,
        ),
        (
            &[("authorization", "Bearer ")],
            "invalid_token",
            r#"Bearer realm="authgate", error="invalid_token""#,
        ),
        (
            &[("authorization", "Bearer a b")],
            "invalid_token",
            r#"Bearer realm="authgate", error="invalid_token""#,
        ),
        (
            &[
                ("authorization", "Bearer bob-token-7f3a9c"),
                ("authorization", "Bearer bob-token-7f3a9c"),
            ],
            "invalid_token",
            r#"Bearer realm="authgate", error="invalid_token""#,
        ),
    ];
    for (headers, reason, challenge) in cases {
        let r = c.get("/api/x", headers).await.unwrap();
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.reason(), reason, "{headers:?}");
        assert_eq!(r.headers["www-authenticate"], challenge, "{headers:?}");
        assert_eq!(r.headers["content-type"], "application/json");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("wrong-token") && !body.contains(BOB_TOKEN),
            "{body}"
        );
    }
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn authenticated_identity_on_a_denied_path_is_403_naming_user_verb_and_path() {
    let env = Env::start(|_| {}).await;
    let r = env
        .client()
        .get_with_token("/admin/users", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), "forbidden");
    assert_eq!(
        r.json()["message"],
        "user \"bob\" may not get path \"/admin/users\""
    );
    // carol has no permissions anywhere.
    let r = env
        .client()
        .get_with_token("/api/x", CAROL_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // bob may get and create but not delete.
    let req = http::Request::delete("/api/x")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(env.client().send(req).await.unwrap().status, 403);
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn head_is_authorized_as_get() {
    let env = Env::start(|_| {}).await;
    let req = http::Request::head("/api/x")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(env.client().send(req).await.unwrap().status, 200);
    assert_eq!(env.upstream.last().method, "HEAD");
}

#[tokio::test]
async fn post_bodies_stream_to_the_upstream_and_back() {
    let env = Env::start(|_| {}).await;
    let req = http::Request::post("/api/items?dry=1")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            vec![b'x'; 256 * 1024],
        )))
        .unwrap();
    let r = env.client().http2().send(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/api/items?dry=1");
    assert_eq!(env.upstream.last().method, "POST");
}
