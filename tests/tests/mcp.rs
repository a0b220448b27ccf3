//! MCP end to end: the official MCP TypeScript SDK client talks to the reference MCP server
//! (`server-everything`) through a Portcullis proxy protected in `forward` mode.
//!
//! Two ways to the token. The Streamable HTTP and SSE tests play the MCP client's OAuth
//! part in Rust, exactly as the spec describes: the 401's `WWW-Authenticate` names the
//! RFC 9728 metadata, whose `authorization_servers` lead to the control plane's RFC 8414
//! metadata, and the token comes from a real login (GitHub-compatible server, consent,
//! `/token`) for the advertised `resource`; the SDK client then sends it on every request.
//! The third test lets the SDK do all of that itself (discovery, dynamic registration,
//! PKCE, resource indicator, token exchange); only the browser's part is done here.
//!
//! The proxy's hostname is `localhost` so the Node client reaches the data plane by name
//! (`http://localhost:PORT`), with the Host header a browser or SDK would send.

use std::time::Duration;

use portcullis_tests::browser::{self, alice, browse, github_login};
use portcullis_tests::github::GithubServer;
use portcullis_tests::mcp::{AuthorizingClient, EverythingServer, Transport, run_client};
use portcullis_tests::{ControlPlane, DataPlane, eventually, http_client};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:53997/callback";
/// Where the SDK client's own OAuth provider says the browser returns (never listened on).
const SDK_REDIRECT: &str = "http://127.0.0.1:53996/oauth/callback";

/// A control plane with GitHub login and a rule granting org `acme` scope `mcp`, a data
/// plane, a real MCP server behind proxy `localhost` protected in forward mode, and a
/// registered public client.
struct Fixture {
    cp: ControlPlane,
    dp: DataPlane,
    _github: GithubServer,
    _server: EverythingServer,
    client_id: String,
    /// `http://localhost:{data plane port}`: the proxy as the MCP client reaches it.
    base: String,
}

async fn fixture(transport: Transport, node: &str) -> Fixture {
    let cp = ControlPlane::start().await;
    let github = github_login(&cp, vec![alice()]).await;
    let server = EverythingServer::start(transport).await;
    let dp = DataPlane::start(&cp, node).await;
    cp.cli_ok(&["proxy", "create", "localhost", &server.url]);
    cp.enable_forward_auth("localhost", "auth.test", Some("mcp"));
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code"], "client_name": "MCP e2e"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    let port = url::Url::parse(&dp.http)
        .expect("data plane url")
        .port()
        .expect("data plane port");
    Fixture {
        cp,
        dp,
        _github: github,
        _server: server,
        client_id: client["client_id"].as_str().expect("client_id").to_owned(),
        base: format!("http://localhost:{port}"),
    }
}

/// What an MCP client learns from an unauthenticated request: the resource to ask a token
/// for and the authorization server's metadata, following RFC 9728 and RFC 8414.
async fn discover(f: &Fixture, path: &str) -> (String, Value) {
    let http = http_client();
    let resp = http
        .post(format!("{}{path}", f.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("unauthenticated request");
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("WWW-Authenticate")
        .to_owned();
    let metadata_url = challenge
        .strip_prefix("Bearer resource_metadata=\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no resource_metadata in {challenge:?}"));
    assert_eq!(
        metadata_url,
        format!("{}/.well-known/oauth-protected-resource", f.base)
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    let prm: Value = http
        .get(metadata_url)
        .send()
        .await
        .expect("protected resource metadata")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(prm["resource"], f.base.as_str(), "{prm}");
    assert_eq!(prm["scopes_supported"], json!(["mcp"]), "{prm}");
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no authorization server in {prm}"));
    assert_eq!(issuer, f.cp.http);
    let asm: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("authorization server metadata")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(asm["issuer"], issuer, "{asm}");
    assert!(
        asm["code_challenge_methods_supported"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "S256")),
        "{asm}"
    );
    let resource = prm["resource"].as_str().expect("resource").to_owned();
    (resource, asm)
}

/// `authorization_endpoint` → GitHub → `/callback` → consent → `token_endpoint`: an access
/// token for `resource`, as an MCP client gets one.
async fn access_token(f: &Fixture, asm: &Value, resource: &str) -> String {
    let endpoint = |name: &str| asm[name].as_str().expect(name).to_owned();
    let (authorize, token) = (
        endpoint("authorization_endpoint"),
        endpoint("token_endpoint"),
    );
    browser::access_token(&f.cp, &authorize, &token, &f.client_id, REDIRECT, resource).await
}

/// Logs in for the proxy's advertised resource and waits until the data plane accepts the
/// token (it has applied the proxy's protection).
async fn token_for(f: &Fixture, path: &str) -> String {
    let (resource, asm) = discover(f, path).await;
    let token = access_token(f, &asm, &resource).await;
    let probe = format!("{}/not-an-mcp-path", f.base);
    eventually(
        Duration::from_secs(20),
        "data plane accepts the token",
        || {
            let (probe, token) = (probe.clone(), token.clone());
            async move {
                let resp = http_client()
                    .get(probe)
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()?;
                // The MCP server itself answers 404: the request got through.
                (resp.status() == 404).then_some(())
            }
        },
    )
    .await;
    token
}

fn echoed(result: &Value) -> &str {
    result["echo"][0]["text"].as_str().unwrap_or_default()
}

/// The SDK's own tool list must include what server-everything registers.
fn assert_everything_tools(result: &Value) {
    let tools: Vec<&str> = result["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["echo", "get-sum", "get-tiny-image"] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    assert_eq!(
        result["server"]["name"], "mcp-servers/everything",
        "{result}"
    );
}

/// A raw Streamable HTTP request in an existing session, through the proxy.
async fn in_session(
    f: &Fixture,
    method: reqwest::Method,
    session: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = http_client()
        .request(method, format!("{}/mcp", f.base))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    req.send().await.expect("request through the proxy")
}

#[tokio::test]
async fn streamable_http_client_needs_a_token_and_keeps_its_session_through_the_proxy() {
    let f = fixture(Transport::StreamableHttp, "dp-mcp-1").await;
    let url = format!("{}/mcp", f.base);

    // No token: the SDK's first POST (initialize) is refused by the proxy.
    let run = run_client(Transport::StreamableHttp, &url, "hello", None).await;
    assert!(!run.success, "connected without a token: {}", run.stdout);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    // A token that is not a JWT of this authorization server fares no better.
    let run = run_client(Transport::StreamableHttp, &url, "hello", Some("not.a.jwt")).await;
    assert!(!run.success, "connected with a junk token: {}", run.stdout);
    assert!(run.stderr.contains("401"), "{}", run.stderr);

    let token = token_for(&f, "/mcp").await;
    let run = run_client(
        Transport::StreamableHttp,
        &url,
        "hello through portcullis",
        Some(&token),
    )
    .await;
    let result = run.json();
    assert_everything_tools(&result);
    assert_eq!(
        echoed(&result),
        "Echo: hello through portcullis",
        "{result}"
    );

    // The server's Mcp-Session-Id came back through the proxy, and the client's requests
    // carried it (listTools and callTool only work inside the initialized session).
    let session = result["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session id in {result}"))
        .to_owned();
    assert_eq!(session.len(), 36, "not a UUID: {session}");
    // The session lives on the server, reachable with the header and the token only.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "again"}}});
    let resp = in_session(
        &f,
        reqwest::Method::POST,
        &session,
        None,
        Some(call.clone()),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = in_session(
        &f,
        reqwest::Method::POST,
        &session,
        Some(&token),
        Some(call.clone()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.contains("Echo: again"), "{body}");
    // DELETE ends the session at the server; the id is then unknown (server-everything
    // answers an unknown session with 400).
    let resp = in_session(&f, reqwest::Method::DELETE, &session, Some(&token), None).await;
    assert_eq!(resp.status(), 200);
    let resp = in_session(
        &f,
        reqwest::Method::POST,
        &session,
        Some(&token),
        Some(call),
    )
    .await;
    assert_eq!(resp.status(), 400);

    // A fresh SDK session still works after that.
    let run = run_client(Transport::StreamableHttp, &url, "once more", Some(&token)).await;
    let again = run.json();
    assert_eq!(echoed(&again), "Echo: once more", "{again}");
    assert_ne!(again["sessionId"], session.as_str());
}

#[tokio::test]
async fn legacy_sse_client_needs_a_token_and_works_through_the_proxy() {
    let f = fixture(Transport::Sse, "dp-mcp-2").await;
    let url = format!("{}/sse", f.base);

    let run = run_client(Transport::Sse, &url, "hello", None).await;
    assert!(!run.success, "connected without a token: {}", run.stdout);
    assert!(run.stderr.contains("401"), "{}", run.stderr);

    let token = token_for(&f, "/sse").await;
    let run = run_client(Transport::Sse, &url, "hello over sse", Some(&token)).await;
    let result = run.json();
    assert_everything_tools(&result);
    assert_eq!(echoed(&result), "Echo: hello over sse", "{result}");
    // The server's `endpoint` event, resolved against the proxy URL: the client's POSTs
    // went through the proxy too, in the server's session.
    let endpoint = result["endpoint"].as_str().unwrap_or_default();
    assert!(
        endpoint.starts_with(&format!("{}/message?sessionId=", f.base)),
        "{result}"
    );
    // Without the token, a message to that live session is refused at the proxy.
    let resp = http_client()
        .post(endpoint)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn sdk_client_authorizes_itself_from_the_401_and_uses_the_proxy() {
    let f = fixture(Transport::StreamableHttp, "dp-mcp-3").await;
    let url = format!("{}/mcp", f.base);
    // A first login makes the signing key and waits until the data plane has it, so the
    // SDK's token is not refused for a key still on its way.
    token_for(&f, "/mcp").await;

    // The SDK answers the 401 on its own: RFC 9728 and RFC 8414 discovery, dynamic client
    // registration, PKCE, the resource indicator and the scope from the challenge.
    let client = AuthorizingClient::start(&url, "authorized by the sdk", SDK_REDIRECT).await;
    let a = &client.authorize;
    assert_eq!(
        format!("{}://{}{}", a.scheme(), a.authority(), a.path()),
        format!("{}/authorize", f.cp.http),
        "{a}"
    );
    let params: std::collections::HashMap<String, String> = a.query_pairs().into_owned().collect();
    assert_eq!(
        params.get("response_type").map(String::as_str),
        Some("code"),
        "{a}"
    );
    assert_eq!(
        params.get("resource").map(String::as_str),
        Some(f.base.as_str()),
        "{a}"
    );
    assert_eq!(params.get("scope").map(String::as_str), Some("mcp"), "{a}");
    assert_eq!(
        params.get("code_challenge_method").map(String::as_str),
        Some("S256"),
        "{a}"
    );
    assert_eq!(
        params.get("redirect_uri").map(String::as_str),
        Some(SDK_REDIRECT),
        "{a}"
    );
    let registered = params.get("client_id").expect("client_id");
    assert!(!registered.is_empty() && *registered != f.client_id, "{a}");

    let back = browse(&f.cp, client.authorize.clone(), true).await.back;
    assert!(back.as_str().starts_with(SDK_REDIRECT), "{back}");
    let run = client.finish(back.as_str()).await;
    let result = run.json();
    assert_everything_tools(&result);
    assert_eq!(echoed(&result), "Echo: authorized by the sdk", "{result}");
    assert!(
        result["sessionId"].as_str().is_some_and(|s| s.len() == 36),
        "{result}"
    );
    // The token the SDK obtained is bound to this proxy and accepted by it.
    let token = result["token"].as_str().expect("token in client output");
    let resp = http_client()
        .get(format!("{}/not-an-mcp-path", f.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("probe");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn sdk_client_gets_a_token_for_the_endpoint_resource_when_one_is_configured() {
    let f = fixture(Transport::StreamableHttp, "dp-mcp-4").await;
    let url = format!("{}/mcp", f.base);
    token_for(&f, "/mcp").await;
    f.cp.cli_ok(&[
        "proxy",
        "resource",
        "set",
        "localhost",
        "--endpoint",
        "/mcp",
        "--scopes",
        "mcp",
    ]);
    let version = f.cp.version().await;
    f.cp.wait_applied(&f.dp.node_id, version).await;

    // The challenge now leads to the endpoint's metadata, whose resource is the endpoint.
    let client = AuthorizingClient::start(&url, "endpoint resource", SDK_REDIRECT).await;
    let params: std::collections::HashMap<String, String> =
        client.authorize.query_pairs().into_owned().collect();
    let endpoint_resource = format!("{}/mcp", f.base);
    assert_eq!(
        params.get("resource"),
        Some(&endpoint_resource),
        "{}",
        client.authorize
    );
    let back = browse(&f.cp, client.authorize.clone(), true).await.back;
    let run = client.finish(back.as_str()).await;
    let result = run.json();
    assert_eq!(echoed(&result), "Echo: endpoint resource", "{result}");
    // The token (aud = the endpoint) is good for the endpoint only.
    let token = result["token"].as_str().expect("token in client output");
    let resp = http_client()
        .get(format!("{}/not-an-mcp-path", f.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("probe");
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.contains("token is not for this resource"),
        "{challenge}"
    );
}
