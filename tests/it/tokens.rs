//! Token management end to end: the Devo-style API over HTTP (lifecycle, permission
//! boundaries, malformed requests), its effect on the proxy from the very next request, route
//! scope and audience requirements, wildcard narrowing at /v1/oauth/token, and the CLI.

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use warden::clock::Clock;

use crate::harness::{Client, Config, Proxy, Reply, Upstream, printed_after, run_cli};

const ROUTES: &str = "\
[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n\
[[routes]]\nname = \"tables\"\npath = \"/tables/**\"\nauth = \"bearer\"\nscopes = [\"table://my.app.*\"]\n\
[[routes]]\nname = \"orders\"\npath = \"/orders/**\"\nauth = \"bearer\"\naudience = \"orders-api\"\n\
[[routes]]\nname = \"rest\"\npath = \"/**\"\nauth = \"none\"\n";

/// (id, secret, account, scopes)
type ClientDef = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// Administers account `acme` with every table.
const ADMIN: ClientDef = (
    "acme-admin",
    "acme-admin-secret-1",
    "acme",
    &["level://admin", "table://**", "read"],
);
/// Same account, no admin level.
const READER: ClientDef = (
    "acme-reader",
    "acme-reader-secret-2",
    "acme",
    &["read", "table://**"],
);
/// Administers `acme` but holds only `my.app` tables.
const NARROW: ClientDef = (
    "acme-narrow",
    "acme-narrow-secret-3",
    "acme",
    &["level://admin", "table://my.app.*"],
);
/// Administers another account.
const OTHER: ClientDef = (
    "globex-admin",
    "globex-admin-secret-4",
    "globex",
    &["level://admin", "table://**"],
);

const BASE: &str = "/ws/accounts/acme/credentials/tokens";

fn client_toml((id, secret, account, scopes): ClientDef) -> String {
    format!(
        "[[clients]]\nid = {id:?}\naccount = {account:?}\nsecret_sha256 = \"{}\"\nscopes = {scopes:?}\n",
        hex::encode(warden::secret::hash(secret))
    )
}

fn tokens_config(up: &Upstream) -> Config {
    Config::new(&up.url())
        .routes(ROUTES)
        .tokens("max_name_length = 16")
        .append(&[ADMIN, READER, NARROW, OTHER].map(client_toml).concat())
}

struct Setup {
    up: Upstream,
    proxy: Proxy,
    http: Client,
}

async fn setup(tweak: impl FnOnce(Config) -> Config) -> Setup {
    let up = Upstream::start().await;
    let proxy = Proxy::start(tweak(tokens_config(&up))).await;
    Setup {
        up,
        proxy,
        http: Client::http1(),
    }
}

fn request(method: Method, url: &str, token: &str, body: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::from(body.unwrap_or("").to_owned())).unwrap()
}

impl Setup {
    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    /// An access token for `client`, from `POST /v1/oauth/token` (optionally narrowed).
    async fn access_token(&self, (id, secret, ..): ClientDef, scope: Option<&str>) -> String {
        let raw = format!("{id}:{secret}");
        let basic = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut body = "grant_type=client_credentials".to_string();
        if let Some(s) = scope {
            body.push_str(&format!("&scope={}", s.replace(' ', "+")));
        }
        let req = Request::post(self.url("/v1/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::from(body))
            .unwrap();
        let reply = self.http.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<&str>) -> Reply {
        self.http
            .send(request(method, &self.url(path), token, body))
            .await
    }

    /// `POST {BASE}` that must succeed; the 201 entity.
    async fn create(&self, admin: &str, body: Value) -> Value {
        let reply = self
            .call(Method::POST, BASE, admin, Some(&body.to_string()))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()
    }

    /// A managed token with `scopes` (and `extra` fields), created by `admin`: (id, value).
    async fn managed(&self, admin: &str, scopes: &str, extra: Value) -> (String, String) {
        let mut body = json!({"name": "t", "scopes": scopes});
        if let Value::Object(more) = extra {
            body.as_object_mut().unwrap().extend(more);
        }
        let v = self.create(admin, body).await;
        (
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }
}

fn item(base_id: &str) -> String {
    format!("{BASE}/{base_id}")
}

// ------------------------------------------------------------------ lifecycle

#[tokio::test]
async fn a_token_lives_through_create_list_show_disable_enable_rename_and_delete() {
    let s = setup(|c| c).await;
    let admin = s.access_token(ADMIN, None).await;

    let created = s
        .create(
            &admin,
            json!({
                "name": "etl job",
                "user": "ops@acme.example",
                "audience": "orders-api",
                "scopes": "table://my.app.test.tokenapi read",
                "expiresIn": 3600,
            }),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let value = created["token"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("mt_") && value.starts_with("wdn_mt_"),
        "{created}"
    );
    assert_eq!(created["name"], "etl job");
    assert_eq!(created["user"], "ops@acme.example");
    assert_eq!(created["audience"], "orders-api");
    assert_eq!(created["scopes"], "table://my.app.test.tokenapi read");
    assert_eq!(created["active"], true);
    assert_eq!(created["clientId"], ADMIN.0);
    assert_eq!(
        created["expiresAt"].as_i64().unwrap() - created["createdAt"].as_i64().unwrap(),
        3600
    );

    // The value is never shown again: not in the list, not in the details.
    let list = s.get(BASE, &admin).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert_eq!(list.header("cache-control"), Some("no-store"));
    assert!(!list.text().contains(&value), "{}", list.text());
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], id.as_str());
    assert!(tokens[0].get("token").is_none());
    let shown = s.get(&item(&id), &admin).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.text().contains(&value));
    assert_eq!(shown.json()["name"], "etl job");

    // The token works on the proxy; its identity is what was asked for.
    let echo = s.get("/api/x", &value).await.echo();
    assert_eq!(echo.header("x-warden-token-id"), Some(id.clone()));
    assert_eq!(
        echo.header("x-warden-scopes").as_deref(),
        Some("table://my.app.test.tokenapi read")
    );

    // Disable: shown inactive with the reason, refused from the very next request.
    let disable = s
        .call(
            Method::PUT,
            &format!("{}/disable", item(&id)),
            &admin,
            Some(r#"{"reason":"leaked in CI"}"#),
        )
        .await;
    assert_eq!(disable.status, StatusCode::OK, "{}", disable.text());
    let v = disable.json();
    assert_eq!(
        (&v["active"], &v["enabled"], &v["disabledReason"]),
        (&json!(false), &json!(false), &json!("leaked in CI"))
    );
    s.get("/api/x", &value).await.problem(401, "invalid_token");
    assert_eq!(s.get(&item(&id), &admin).await.json()["active"], false);

    // Enable, with no body at all.
    let enable = s
        .call(Method::PUT, &format!("{}/enable", item(&id)), &admin, None)
        .await;
    assert_eq!(enable.status, StatusCode::OK, "{}", enable.text());
    assert_eq!(enable.json()["disabledReason"], Value::Null);
    assert_eq!(s.get("/api/x", &value).await.status, StatusCode::OK);

    // Rename.
    let rename = s
        .call(
            Method::PUT,
            &format!("{}/rename", item(&id)),
            &admin,
            Some(r#"{"name":"etl nightly"}"#),
        )
        .await;
    assert_eq!(rename.status, StatusCode::OK, "{}", rename.text());
    assert_eq!(rename.json()["name"], "etl nightly");
    assert_eq!(
        s.get(&item(&id), &admin).await.json()["name"],
        "etl nightly"
    );
    assert_eq!(s.get("/api/x", &value).await.status, StatusCode::OK);

    // Delete: gone for the API and refused by the proxy at once.
    let delete = s.call(Method::DELETE, &item(&id), &admin, None).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.text());
    s.get("/api/x", &value).await.problem(401, "invalid_token");
    s.get(&item(&id), &admin).await.problem(404, "not_found");
    s.call(Method::DELETE, &item(&id), &admin, None)
        .await
        .problem(404, "not_found");
    assert_eq!(s.get(BASE, &admin).await.json()["tokens"], json!([]));
}

#[tokio::test]
async fn a_created_token_answers_201_with_location_and_no_store() {
    let s = setup(|c| c).await;
    let admin = s.access_token(ADMIN, None).await;
    let reply = s
        .call(
            Method::POST,
            BASE,
            &admin,
            Some(r#"{"name":"a","scopes":["read"]}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.header("location"), Some(item(&id).as_str()));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn expired_tokens_are_listed_inactive_and_refused_by_the_proxy() {
    let clock = Clock::default();
    let s = setup(|c| c.clock(&clock)).await;
    let admin = s.access_token(ADMIN, None).await;
    let (id, value) = s.managed(&admin, "read", json!({"expiresIn": 60})).await;
    assert_eq!(s.get("/api/x", &value).await.status, StatusCode::OK);
    clock.advance(61);
    s.get("/api/x", &value).await.problem(401, "invalid_token");
    let v = s.get(&item(&id), &admin).await.json();
    assert_eq!(
        (&v["active"], &v["expired"], &v["enabled"]),
        (&json!(false), &json!(true), &json!(true))
    );
    let listed = s.get(BASE, &admin).await.json();
    let entry = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["active"], false);
}

// ------------------------------------------------------------------ who may do what

#[tokio::test]
async fn another_accounts_tokens_look_like_nothing_at_all() {
    let s = setup(|c| c).await;
    let admin = s.access_token(ADMIN, None).await;
    let other = s.access_token(OTHER, None).await;
    let (id, value) = s.managed(&admin, "read", json!({})).await;

    // globex's admin, on acme's paths: 404 whether the token exists or not.
    let known = s.get(&item(&id), &other).await.problem(404, "not_found");
    let unknown = s
        .get(&item("mt_00000000000000000000000000000000"), &other)
        .await
        .problem(404, "not_found");
    assert_eq!(known, unknown);
    s.get(BASE, &other).await.problem(404, "not_found");
    s.call(Method::DELETE, &item(&id), &other, None)
        .await
        .problem(404, "not_found");
    s.call(
        Method::POST,
        BASE,
        &other,
        Some(r#"{"name":"x","scopes":"read"}"#),
    )
    .await
    .problem(404, "not_found");
    // On its own account's path, acme's token id is unknown.
    s.get(
        &format!("/ws/accounts/globex/credentials/tokens/{id}"),
        &other,
    )
    .await
    .problem(404, "not_found");
    assert_eq!(
        s.get("/api/x", &value).await.status,
        StatusCode::OK,
        "untouched"
    );
    // Its own account works.
    let own = s
        .get("/ws/accounts/globex/credentials/tokens", &other)
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert_eq!(own.json()["tokens"], json!([]));
}

#[tokio::test]
async fn a_caller_without_the_admin_level_is_refused_with_insufficient_scope() {
    let s = setup(|c| c).await;
    let reader = s.access_token(READER, None).await;
    let reply = s.get(BASE, &reader).await;
    reply.problem(403, "insufficient_scope");
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"level://admin\""), "{challenge}");
    // An admin's token narrowed to fewer scopes is no admin either.
    let narrowed = s.access_token(ADMIN, Some("read")).await;
    s.get(BASE, &narrowed)
        .await
        .problem(403, "insufficient_scope");
    // No credential, or a bad one.
    let anon = s
        .http
        .send(Request::get(s.url(BASE)).body(Full::default()).unwrap())
        .await;
    anon.problem(401, "token_missing");
    s.get(BASE, "wdn_mt_nope")
        .await
        .problem(401, "invalid_token");
}

#[tokio::test]
async fn a_caller_grants_only_scopes_it_holds_itself_wildcards_included() {
    let s = setup(|c| c).await;
    let narrow = s.access_token(NARROW, None).await;
    // table://my.app.* grants one table under my.app, not more.
    let (_, ok) = s.managed(&narrow, "table://my.app.orders", json!({})).await;
    assert!(ok.starts_with("wdn_mt_"));
    s.managed(&narrow, "table://my.app.*", json!({})).await;
    for escalation in [
        "table://**",
        "table://my.app.**",
        "table://my.apple",
        "table://my.app",
        "table://my.app.orders read",
    ] {
        let body = json!({"name": "x", "scopes": escalation}).to_string();
        let v = s
            .call(Method::POST, BASE, &narrow, Some(&body))
            .await
            .problem(403, "scope_not_held");
        assert!(v["detail"].as_str().unwrap().contains("not held"), "{v}");
    }
    // A caller holding table://** may grant any table, or a narrower wildcard.
    let admin = s.access_token(ADMIN, None).await;
    s.managed(&admin, "table://a.b table://*.**", json!({}))
        .await;
    // A caller limited to an audience can only grant that audience.
    let (_, aud_admin) = s
        .managed(
            &admin,
            "level://admin read",
            json!({"audience": "orders-api"}),
        )
        .await;
    let body = json!({"name": "x", "scopes": "read", "audience": "billing"}).to_string();
    s.call(Method::POST, BASE, &aud_admin, Some(&body))
        .await
        .problem(403, "scope_not_held");
    let inherited = s
        .create(&aud_admin, json!({"name": "x", "scopes": "read"}))
        .await;
    assert_eq!(inherited["audience"], "orders-api");
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx_codes() {
    let s = setup(|c| c).await;
    let admin = s.access_token(ADMIN, None).await;
    let (id, _) = s.managed(&admin, "read", json!({})).await;
    let post = |body: &'static str| s.call(Method::POST, BASE, &admin, Some(body));

    s.get(&item("not-an-id"), &admin)
        .await
        .problem(400, "malformed_token_id");
    s.get(&item("at_0123456789abcdef0123456789abcdef"), &admin)
        .await
        .problem(400, "malformed_token_id");
    let v = post(r#"{"name":"a","scopes":"read","admin":true}"#)
        .await
        .problem(400, "invalid_json");
    assert!(v["detail"].as_str().unwrap().contains("admin"), "{v}");
    post(r#"{"scopes":"read"}"#)
        .await
        .problem(400, "invalid_json");
    post(r#"{"name":"a","scopes":"read""#)
        .await
        .problem(400, "invalid_json");
    post(r#"{"name":"a","scopes":7}"#)
        .await
        .problem(400, "invalid_json");
    post(r#"{"name":"seventeen chars!!","scopes":"read"}"#)
        .await
        .problem(400, "name_too_long");
    post(r#"{"name":"  ","scopes":"read"}"#)
        .await
        .problem(400, "invalid_field");
    post(r#"{"name":"a","scopes":"table://a..b"}"#)
        .await
        .problem(400, "invalid_field");
    post(r#"{"name":"a","scopes":""}"#)
        .await
        .problem(400, "invalid_field");
    post(r#"{"name":"a","scopes":"read","expiresAt":1}"#)
        .await
        .problem(400, "invalid_field");
    let rename = format!("{}/rename", item(&id));
    s.call(Method::PUT, &rename, &admin, Some(r#"{"name":"a","x":1}"#))
        .await
        .problem(400, "invalid_json");
    s.call(
        Method::PUT,
        &rename,
        &admin,
        Some(r#"{"name":"seventeen chars!!"}"#),
    )
    .await
    .problem(400, "name_too_long");
    let form = Request::post(s.url(BASE))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("name=a&scopes=read"))
        .unwrap();
    s.http
        .send(form)
        .await
        .problem(415, "unsupported_media_type");
    let big = format!(r#"{{"name":"a","scopes":"{}"}}"#, "read ".repeat(4000));
    s.call(Method::POST, BASE, &admin, Some(&big))
        .await
        .problem(413, "payload_too_large");
    s.call(Method::PUT, &format!("{}/explode", item(&id)), &admin, None)
        .await
        .problem(404, "not_found");
    let wrong = s.call(Method::DELETE, BASE, &admin, None).await;
    wrong.problem(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("GET, POST"));
    let wrong = s
        .call(Method::POST, &format!("{}/enable", item(&id)), &admin, None)
        .await;
    wrong.problem(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("PUT"));
    s.get(&format!("{BASE}/"), &admin)
        .await
        .problem(404, "not_found");
    // Nothing under the base is ever forwarded, even with a catch-all route.
    assert_eq!(s.up.calls(), 0);
}

// ------------------------------------------------------------------ route requirements

#[tokio::test]
async fn routes_refuse_missing_scopes_and_wrong_audiences_with_403() {
    let s = setup(|c| c).await;
    let admin = s.access_token(ADMIN, None).await;

    // One table only: does not cover all of my.app.* .
    let (_, one) = s.managed(&admin, "table://my.app.test", json!({})).await;
    let refused = s.get("/tables/x", &one).await;
    refused.problem(403, "insufficient_scope");
    assert_eq!(
        refused.header("www-authenticate"),
        Some(
            "Bearer realm=\"warden\", error=\"insufficient_scope\", error_description=\"the token \
             does not hold the scope this request needs\", scope=\"table://my.app.*\""
        )
    );
    for granted in [
        "table://my.app.*",
        "table://my.**",
        "table://*.**",
        "table://**",
    ] {
        let (_, t) = s.managed(&admin, granted, json!({})).await;
        assert_eq!(
            s.get("/tables/x", &t).await.status,
            StatusCode::OK,
            "{granted}"
        );
    }
    for not_granted in ["table://my.apple.*", "table://My.app.*", "read"] {
        let body = json!({"name": "x", "scopes": not_granted});
        let t = s.create(&admin, body).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        s.get("/tables/x", &t)
            .await
            .problem(403, "insufficient_scope");
    }
    // OAuth access tokens carry their client's scopes.
    assert_eq!(s.get("/tables/x", &admin).await.status, StatusCode::OK);
    let reader = s.access_token(READER, Some("read")).await;
    s.get("/tables/x", &reader)
        .await
        .problem(403, "insufficient_scope");

    // Audience: exactly the route's.
    s.get("/orders/1", &admin)
        .await
        .problem(403, "invalid_audience");
    let (_, wrong) = s
        .managed(&admin, "read", json!({"audience": "billing-api"}))
        .await;
    s.get("/orders/1", &wrong)
        .await
        .problem(403, "invalid_audience");
    let (_, right) = s
        .managed(&admin, "read", json!({"audience": "orders-api"}))
        .await;
    let echo = s.get("/orders/1", &right).await.echo();
    assert_eq!(echo.path, "/orders/1");
    // Refusals never reach the upstream.
    assert_eq!(s.up.calls(), 6);
}

#[tokio::test]
async fn oauth_scope_narrowing_grants_through_wildcards() {
    let s = setup(|c| c).await;
    let token = s.access_token(ADMIN, Some("table://my.app.test")).await;
    let echo = s.get("/api/x", &token).await.echo();
    assert_eq!(
        echo.header("x-warden-scopes").as_deref(),
        Some("table://my.app.test")
    );
    // ... but only within what it holds.
    let raw = format!("{}:{}", NARROW.0, NARROW.1);
    let basic = base64::engine::general_purpose::STANDARD.encode(raw);
    let req = Request::post(s.url("/v1/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::from(
            "grant_type=client_credentials&scope=table://my.apple.x",
        ))
        .unwrap();
    let reply = s.http.send(req).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"], "invalid_scope");
}

#[tokio::test]
async fn a_disabled_tokens_api_leaves_its_paths_to_the_routes() {
    let s = setup(|c| c.append("[endpoints]\ntokens = \"\"\n")).await;
    let admin = s.access_token(ADMIN, None).await;
    let echo = s.get(BASE, &admin).await.echo();
    assert_eq!(echo.path, BASE);
}

// ------------------------------------------------------------------ the CLI

#[tokio::test]
async fn cli_token_commands_act_on_a_running_warden_at_once() {
    let up = Upstream::start().await;
    let config = tokens_config(&up);
    let cli = config.write_file();
    let s = Setup {
        proxy: Proxy::start(config).await,
        up,
        http: Client::http1(),
    };
    let out = run_cli(
        &cli,
        &[
            "token",
            "create",
            "--client",
            ADMIN.0,
            "--name",
            "from cli",
            "--scope",
            "table://my.app.x read",
            "--user",
            "ops@acme.example",
        ],
    )
    .await;
    let id = printed_after(&out, "token created:").to_owned();
    let value = printed_after(&out, "token (shown once, store it now):").to_owned();
    assert!(value.starts_with("wdn_mt_"), "{out}");
    for _ in 0..2 {
        assert_eq!(s.get("/api/x", &value).await.status, StatusCode::OK);
    }
    let listed = run_cli(&cli, &["token", "list", "--account", "acme"]).await;
    assert!(listed.contains(&id) && !listed.contains(&value), "{listed}");
    let shown = run_cli(&cli, &["token", "show", &id]).await;
    assert!(
        shown.contains("ops@acme.example") && !shown.contains(&value),
        "{shown}"
    );

    // Made by another process, each change reaches the cached decision before the next request.
    run_cli(&cli, &["token", "disable", &id, "--reason", "rotating"]).await;
    s.get("/api/x", &value).await.problem(401, "invalid_token");
    let admin = s.access_token(ADMIN, None).await;
    let v = s.get(&item(&id), &admin).await.json();
    assert_eq!(
        (&v["active"], &v["disabledReason"]),
        (&json!(false), &json!("rotating"))
    );
    run_cli(&cli, &["token", "enable", &id]).await;
    assert_eq!(s.get("/api/x", &value).await.status, StatusCode::OK);
    run_cli(&cli, &["token", "rename", &id, "renamed"]).await;
    assert_eq!(s.get(&item(&id), &admin).await.json()["name"], "renamed");
    run_cli(&cli, &["token", "delete", &id]).await;
    s.get("/api/x", &value).await.problem(401, "invalid_token");

    // The CLI grants only what the client holds.
    let (code, err) = crate::harness::run_binary(
        &[
            "--config",
            cli.to_str().unwrap(),
            "token",
            "create",
            "--client",
            NARROW.0,
            "--name",
            "x",
            "--scope",
            "table://**",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not held"), "{err}");
}

// ------------------------------------------------------------------ DELETE /v1/auth

impl Setup {
    /// `POST /v1/auth` for `client`: (accessTokenId, accessToken).
    async fn auth_entity(&self, (id, secret, ..): ClientDef) -> (String, String) {
        let req = Request::post(self.url("/v1/auth"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::from(format!("clientId={id}&clientSecret={secret}")))
            .unwrap();
        let reply = self.http.send(req).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let v = reply.json();
        (
            v["accessTokenId"].as_str().unwrap().to_owned(),
            v["accessToken"].as_str().unwrap().to_owned(),
        )
    }

    /// `DELETE /v1/auth?accessTokenId={id}` with `caller`.
    async fn revoke_by_id(&self, caller: &str, id: &str) -> Reply {
        let path = format!("/v1/auth?accessTokenId={id}");
        self.call(Method::DELETE, &path, caller, None).await
    }
}

#[tokio::test]
async fn delete_v1_auth_revokes_an_access_token_by_itself_or_by_an_admin_of_its_account() {
    let up = Upstream::start().await;
    let config = tokens_config(&up);
    let cli = config.write_file();
    let s = Setup {
        proxy: Proxy::start(config).await,
        up,
        http: Client::http1(),
    };
    let (_, admin) = s.auth_entity(ADMIN).await;
    let (alice_id, alice) = s.managed(&admin, "read", json!({})).await;
    let (carol_id, carol) = s.managed(&admin, "read", json!({})).await;
    let (admin2_id, admin2) = s.auth_entity(ADMIN).await;
    let (reader_id, reader) = s.auth_entity(READER).await;
    let (other_id, other) = s.auth_entity(OTHER).await;
    let out = run_cli(&cli, &["api-key", "create", "--client", READER.0]).await;
    let key_id = printed_after(&out, "api key created:").to_owned();
    let key = printed_after(&out, "api key (shown once, store it now):").to_owned();
    let works = |token: String| {
        let s = &s;
        async move { s.get("/api/x", &token).await.status == StatusCode::OK }
    };

    // The review's reproduction: carol, a managed token without the admin level, can revoke
    // neither a sibling managed token nor an admin's access token.
    for id in [&alice_id, &admin2_id] {
        let reply = s.revoke_by_id(&carol, id).await;
        reply.problem(403, "insufficient_scope");
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.contains("scope=\"level://admin\""), "{challenge}");
    }
    // A non-admin access token: not another of its account, nor an unknown id (same answer).
    let sibling = s.revoke_by_id(&reader, &admin2_id).await;
    sibling.problem(403, "insufficient_scope");
    let unknown = s
        .revoke_by_id(&reader, "at_00000000000000000000000000000000")
        .await;
    assert_eq!(sibling.body, unknown.body);
    assert!(works(alice.clone()).await && works(admin2.clone()).await);

    // An admin: not managed tokens, not API keys (their own endpoints and commands), not
    // another account's tokens, which look exactly like unknown ones.
    for id in [&alice_id, &key_id] {
        s.revoke_by_id(&admin, id).await.problem(404, "not_found");
    }
    let elsewhere = s.revoke_by_id(&admin, &other_id).await;
    elsewhere.problem(404, "not_found");
    let unknown = s
        .revoke_by_id(&admin, "at_00000000000000000000000000000000")
        .await;
    assert_eq!(elsewhere.body, unknown.body);
    assert!(works(alice.clone()).await && works(key.clone()).await && works(other).await);
    let shown = s.get(&item(&alice_id), &admin).await.json();
    assert_eq!(shown["active"], true, "{shown}");

    // An admin revokes any access token of its account, another client's included.
    let reply = s.revoke_by_id(&admin, &reader_id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert!(!works(reader).await);
    // Any access token revokes itself; a managed token naming itself is not an access token.
    let reply = s.revoke_by_id(&admin2, &admin2_id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert!(!works(admin2).await);
    s.revoke_by_id(&carol, &carol_id)
        .await
        .problem(404, "not_found");
    assert!(works(carol).await);
}

// ------------------------------------------------------------------ narrowing a client

/// `acme-ops`: administers `acme` with `scopes`, from `trusted_ips`.
fn ops_toml(scopes: &[&str], trusted_ips: &[&str]) -> String {
    ops_toml_in("acme", scopes, trusted_ips)
}

/// `acme-ops` as a client of `account`.
fn ops_toml_in(account: &str, scopes: &[&str], trusted_ips: &[&str]) -> String {
    format!(
        "[[clients]]\nid = \"acme-ops\"\naccount = \"{account}\"\nsecret_sha256 = \"{}\"\n\
         scopes = {scopes:?}\ntrusted_ips = {trusted_ips:?}\n",
        hex::encode(warden::secret::hash("acme-ops-secret-5"))
    )
}

const OPS: ClientDef = ("acme-ops", "acme-ops-secret-5", "acme", &[]);

const OPS_ROUTES: &str = "\
[[routes]]\nname = \"admin\"\npath = \"/admin/**\"\nauth = \"bearer\"\nscopes = [\"level://admin\"]\n\
[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n";

/// A Warden on `store`, forwarding to `up`, whose config declares `acme-ops` with `scopes` and
/// `trusted_ips` (the upstream the setup holds is a spare: it only fills the field).
async fn ops_warden(
    up: &Upstream,
    store: &crate::harness::StoreDir,
    scopes: &[&str],
    trusted_ips: &[&str],
) -> Setup {
    let config = Config::new(&up.url())
        .routes(OPS_ROUTES)
        .store(store)
        .append(&ops_toml(scopes, trusted_ips));
    Setup {
        proxy: Proxy::start(config).await,
        up: Upstream::start().await,
        http: Client::http1(),
    }
}

/// Each credential has lost `level://admin` on `s`'s Warden, routes and the tokens API alike.
async fn assert_narrowed(s: &Setup, credentials: &[&String], managed: &str) {
    for c in credentials {
        s.get("/admin/x", c)
            .await
            .problem(403, "insufficient_scope");
        let echo = s.get("/api/x", c).await.echo();
        assert_eq!(echo.header("x-warden-scopes").as_deref(), Some("read"));
    }
    s.get(BASE, managed)
        .await
        .problem(403, "insufficient_scope");
}

#[tokio::test]
async fn narrowing_a_client_narrows_its_api_keys_access_and_managed_tokens_on_the_next_request() {
    let up = Upstream::start().await;
    let store = crate::harness::StoreDir::new();
    let wide = Config::new(&up.url())
        .routes(OPS_ROUTES)
        .store(&store)
        .append(&ops_toml(&["read", "level://admin"], &["127.0.0.1/32"]));
    let cli = wide.write_file();
    let a = Setup {
        proxy: Proxy::start(wide).await,
        up: Upstream::start().await,
        http: Client::http1(),
    };
    let access = a.access_token(OPS, None).await;
    let out = run_cli(&cli, &["api-key", "create", "--client", OPS.0]).await;
    let key = printed_after(&out, "api key (shown once, store it now):").to_owned();
    let (_, managed) = a.managed(&access, "read level://admin", json!({})).await;
    let credentials = [&access, &key, &managed];
    for c in credentials {
        let echo = a.get("/admin/x", c).await.echo();
        assert_eq!(
            echo.header("x-warden-scopes").as_deref(),
            Some("read level://admin")
        );
    }
    assert_eq!(a.get(BASE, &managed).await.status, StatusCode::OK);

    // The config loses level://admin. A command run with it, another process, writes the
    // narrowed client: the running Warden, whose cache held all three, refuses the admin level
    // from the very next request, the tokens API included; so does a Warden started with it.
    let narrowed = Config::new(&up.url())
        .routes(OPS_ROUTES)
        .store(&store)
        .append(&ops_toml(&["read"], &["127.0.0.1/32"]));
    let (_dir, narrowed) = crate::harness::config_file(&narrowed.to_toml());
    run_cli(&narrowed, &["client", "show", OPS.0]).await;
    assert_narrowed(&a, &credentials, &managed).await;
    let b = ops_warden(&up, &store, &["read"], &["127.0.0.1/32"]).await;
    assert_narrowed(&b, &credentials, &managed).await;

    // The client is fenced into another network: no credential of it works from here.
    let c = ops_warden(&up, &store, &["read"], &["10.0.0.0/8"]).await;
    for s in [&a, &b, &c] {
        for cred in credentials {
            s.get("/api/x", cred).await.problem(403, "ip_not_allowed");
        }
    }
}

#[tokio::test]
async fn a_client_moved_to_another_account_no_longer_speaks_for_the_old_one() {
    let up = Upstream::start().await;
    let store = crate::harness::StoreDir::new();
    let admin = ["read", "level://admin"];
    let first = Config::new(&up.url())
        .routes(OPS_ROUTES)
        .store(&store)
        .append(&ops_toml_in("acme", &admin, &["127.0.0.1/32"]));
    let a = Setup {
        proxy: Proxy::start(first).await,
        up: Upstream::start().await,
        http: Client::http1(),
    };
    let access = a.access_token(OPS, None).await;
    let (_, managed) = a.managed(&access, "read level://admin", json!({})).await;
    assert_eq!(a.get(BASE, &managed).await.status, StatusCode::OK);
    drop(a);

    // The operator moves the client to another account: what it was issued for `acme` (an
    // access token, a managed token administering acme) stops working, there and everywhere.
    let moved = Config::new(&up.url())
        .routes(OPS_ROUTES)
        .store(&store)
        .append(&ops_toml_in("globex", &admin, &["127.0.0.1/32"]));
    let b = Setup {
        proxy: Proxy::start(moved).await,
        up: Upstream::start().await,
        http: Client::http1(),
    };
    for cred in [&access, &managed] {
        b.get(BASE, cred).await.problem(401, "invalid_token");
        b.get("/api/x", cred).await.problem(401, "invalid_token");
    }
}
