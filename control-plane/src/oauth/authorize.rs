//! The authorization-code flow: `/authorize` validates the client's request and starts an
//! upstream login; `/callback/{idp}` learns who the user is and applies login rules; the
//! consent step records the user's approval; then a single-use, PKCE-bound code goes back to
//! the client with `iss` (RFC 9207).
//!
//! Every step after `/authorize` must happen in the browser that started it: a random
//! `__Host-` cookie is bound (by hash) to the login transaction.

use super::params::{canonical_resource, known_scopes, valid_pkce_value};
use super::{
    BASE_SCOPES, CodeRecord, ConsentRecord, ErrorCode, Identity, IdpRecord, LoginRule, LoginTx,
    OAuthError, OAuthServer, ProxyOAuthSettings, clients, device_state, idp, put, random_token,
    sha256_hex,
};
use crate::auth::hashes_equal;
use crate::model::{Proxy, now};
use crate::store::{Batch, Check, Collection, StoreError, Write};

/// How long a login may take, from `/authorize` to consent.
const LOGIN_TTL_SECS: i64 = 600;
/// Start of the `error_description` when login rules refuse a user (`access_denied`).
pub const RULES_REFUSED: &str = "the login rules do not allow this user here";
/// Start of the `error_description` when the identity provider ended the login with an
/// error (the user pressed Cancel there, or it failed).
pub const IDP_ENDED: &str = "the sign-in was cancelled or failed at the identity provider";
/// The `error_description` when the user declined on the consent page.
pub const DECLINED: &str = "the user declined";
/// Name of the browser-binding cookie.
pub const LOGIN_COOKIE: &str = "__Host-portcullis_login";

/// Query of `GET /authorize` (RFC 6749 §4.1.1, RFC 7636, RFC 8707).
#[derive(Debug, Default, Clone)]
pub struct AuthorizeRequest {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Must exactly match a registered one.
    pub redirect_uri: Option<String>,
    /// Echoed back.
    pub state: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Protected resources (audiences), repeatable.
    pub resources: Vec<String>,
    /// Our extension: preselect an identity provider by name.
    pub idp: Option<String>,
    /// OpenID Connect `prompt`: `select_account` or `login` ask the identity provider to
    /// let the user choose the account (other values are ignored).
    pub prompt: Option<String>,
}

/// Where a request that cannot be answered by redirect ends.
#[derive(Debug)]
pub enum Failure {
    /// Show an HTML error page: the redirect URI is unknown or untrusted.
    Page(OAuthError),
    /// Send the browser back to the client with the error.
    Redirect(String),
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Self::Page(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Page(e.into())
    }
}

/// What `/authorize` and the later steps ask the browser to do next.
#[derive(Debug)]
pub enum Next {
    /// Redirect to this URL; set the login cookie to `cookie` if given.
    Redirect {
        /// Target.
        url: String,
        /// Browser-binding cookie value to set.
        cookie: Option<String>,
    },
    /// Ask the user which identity provider to use.
    ChooseIdp {
        /// Login transaction.
        tx: String,
        /// Names of the providers.
        idps: Vec<String>,
        /// The resources the login is for (named on the page).
        resources: Vec<String>,
        /// Browser-binding cookie value to set.
        cookie: String,
    },
    /// Ask the user to approve the client.
    Consent(ConsentPage),
    /// Show a short message (device flow outcome).
    Message {
        /// Page title.
        title: String,
        /// Text (escaped when rendered).
        text: String,
    },
}

/// What the consent page shows; every field is escaped when rendered.
#[derive(Debug)]
pub struct ConsentPage {
    /// Login transaction.
    pub tx: String,
    /// CSRF token for the form.
    pub csrf: String,
    /// Client name (or id).
    pub client_name: String,
    /// Client id.
    pub client_id: String,
    /// Host the code will be sent to.
    pub redirect_host: String,
    /// Resources (token audiences) the client asks access to.
    pub resources: Vec<String>,
    /// Scopes that will be granted, each with its description (admin's, else built in).
    pub scopes: Vec<(String, Option<String>)>,
    /// Who is logged in.
    pub login: String,
    /// The identity provider they logged in with.
    pub idp: String,
    /// Whether an admin (or Portcullis itself) vouches for the client's name; `false` for
    /// self-registered clients (`/register`) and metadata documents.
    pub verified: bool,
}

/// Builds a redirect back to the client carrying an error, `state` and `iss`.
pub fn error_redirect(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    e: &OAuthError,
) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", e.code.as_str());
        q.append_pair("error_description", &e.description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    url.into()
}

fn success_redirect(issuer: &str, redirect_uri: &str, state: Option<&str>, code: &str) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", code);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    url.into()
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.strip_suffix(suffix).is_some_and(|rest| {
            rest.ends_with('.') && rest.len() > 1 && !rest[..rest.len() - 1].contains('.')
        }),
        None => pattern == host,
    }
}

/// Checks each requested resource against the proxies this server protects.
pub async fn validate_resources(
    server: &OAuthServer,
    raw: &[String],
) -> Result<Vec<String>, OAuthError> {
    if raw.is_empty() {
        return Ok(vec![]);
    }
    let proxies: Vec<Proxy> = server.list(Collection::Proxies).await?;
    let mut out = Vec::new();
    for r in raw {
        let (canon, host) = canonical_resource(r)?;
        // The control plane's own API is a protected resource too (`portcullis login`).
        if canon == server.issuer() {
            if !out.contains(&canon) {
                out.push(canon);
            }
            continue;
        }
        if !proxies
            .iter()
            .any(|p| p.enabled && host_matches(&p.hostname, &host))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource {r:?} is not a protected resource of this server"),
            ));
        }
        if !out.contains(&canon) {
            out.push(canon);
        }
    }
    Ok(out)
}

/// `GET /authorize`.
pub async fn start(server: &OAuthServer, req: AuthorizeRequest) -> Result<Next, Failure> {
    let client_id = req
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Failure::Page(OAuthError::invalid_request("client_id is missing")))?;
    let client = clients::resolve(server, client_id)
        .await
        .map_err(Failure::Page)?;
    let redirect_uri = match req.redirect_uri.as_deref() {
        Some(r) if client.redirect_uris.iter().any(|u| u == r) => r.to_owned(),
        Some(_) => {
            return Err(Failure::Page(OAuthError::invalid_request(
                "redirect_uri does not exactly match any registered for this client",
            )));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Failure::Page(OAuthError::invalid_request(
                "redirect_uri is required: the client has several",
            )));
        }
    };
    let state = req.state.clone();
    let fail = |e: OAuthError| {
        Failure::Redirect(error_redirect(
            server.issuer(),
            &redirect_uri,
            state.as_deref(),
            &e,
        ))
    };
    if req.response_type.as_deref() != Some("code") {
        return Err(fail(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            "response_type must be \"code\"",
        )));
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client did not register the authorization_code grant",
        )));
    }
    let challenge = match req.code_challenge.as_deref() {
        None | Some("") => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge is required (PKCE with S256)",
            )));
        }
        Some(c) => c,
    };
    if req.code_challenge_method.as_deref() != Some("S256") {
        return Err(fail(OAuthError::invalid_request(
            "code_challenge_method must be S256 (plain is not allowed)",
        )));
    }
    if !valid_pkce_value(challenge) {
        return Err(fail(OAuthError::invalid_request(
            "code_challenge must be 43-128 characters of [A-Za-z0-9-._~]",
        )));
    }
    let known = known_scopes(server).await.map_err(fail)?;
    let scopes: Vec<String> = req
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = scopes.iter().find(|s| !known.contains(s)) {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("unknown scope {unknown:?}"),
        )));
    }
    let resources = validate_resources(server, &req.resources)
        .await
        .map_err(fail)?;
    let tx = LoginTx {
        id: random_token(),
        browser_sha256: String::new(),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: req.state,
        code_challenge: challenge.to_owned(),
        scopes,
        resources,
        idp: None,
        settings_host: None,
        device_key: None,
        upstream_verifier: random_token(),
        upstream_nonce: random_token(),
        upstream_prompt: req
            .prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|v| v == "select_account" || v == "login"))
            .then(|| "select_account".to_owned()),
        identity: None,
        granted_scopes: vec![],
        csrf_sha256: String::new(),
        auth_time: 0,
        expires_at: now() + LOGIN_TTL_SECS,
    };
    begin_login(server, tx, req.idp.as_deref())
        .await
        .map_err(fail)
}

/// Stores a new login transaction and sends the browser to the identity provider (or to
/// the chooser when several are allowed and none was named).
pub(crate) async fn begin_login(
    server: &OAuthServer,
    mut tx: LoginTx,
    requested_idp: Option<&str>,
) -> Result<Next, OAuthError> {
    let settings = settings_for(server, &tx.resources).await?;
    let idps: Vec<IdpRecord> = server
        .list::<IdpRecord>(Collection::OAuthIdps)
        .await?
        .into_iter()
        .filter(|i| {
            settings
                .as_ref()
                .is_none_or(|s| s.idps.is_empty() || s.idps.contains(&i.name))
        })
        .collect();
    if idps.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "no identity provider is configured on this server",
        ));
    }
    let chosen = match requested_idp {
        Some(name) => Some(idps.iter().find(|i| i.name == name).ok_or_else(|| {
            OAuthError::invalid_request(format!("unknown identity provider {name:?}"))
        })?),
        None if idps.len() == 1 => idps.first(),
        None => None,
    };
    let browser = random_token();
    tx.browser_sha256 = sha256_hex(&browser);
    tx.idp = chosen.map(|i| i.name.clone());
    tx.settings_host = settings.as_ref().map(|s| s.hostname.clone());
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthTx, tx.id.clone())],
            writes: vec![put(Collection::OAuthTx, &tx.id, &tx)],
        })
        .await?;
    match chosen {
        Some(idp_record) => {
            let effective = effective_idp(server, idp_record, &tx).await?;
            let url = idp::authorization_url(server, &effective, &tx).await?;
            Ok(Next::Redirect {
                url,
                cookie: Some(browser),
            })
        }
        None => Ok(Next::ChooseIdp {
            tx: tx.id,
            idps: idps.into_iter().map(|i| i.name).collect(),
            resources: tx.resources,
            cookie: browser,
        }),
    }
}

async fn load_tx(
    server: &OAuthServer,
    id: &str,
    browser: Option<&str>,
) -> Result<(LoginTx, Vec<u8>), Failure> {
    let gone = || {
        Failure::Page(OAuthError::invalid_request(
            "this login is unknown or has expired; start again from the application",
        ))
    };
    let (tx, raw) = server
        .get::<LoginTx>(Collection::OAuthTx, id)
        .await?
        .ok_or_else(gone)?;
    if tx.expires_at < now() {
        return Err(gone());
    }
    let bound = browser.is_some_and(|b| hashes_equal(&sha256_hex(b), &tx.browser_sha256));
    if !bound {
        return Err(Failure::Page(OAuthError::invalid_request(
            "this login was started in another browser (or cookies are blocked); start again from the application",
        )));
    }
    Ok((tx, raw))
}

fn tx_error(server: &OAuthServer, tx: &LoginTx, e: OAuthError) -> Failure {
    if tx.device_key.is_some() {
        // No client redirect in the device flow: the user reads the outcome here.
        return Failure::Page(e);
    }
    Failure::Redirect(error_redirect(
        server.issuer(),
        &tx.redirect_uri,
        tx.state.as_deref(),
        &e,
    ))
}

/// The chooser page's choice: start the upstream login at `idp`.
pub async fn choose(
    server: &OAuthServer,
    tx_id: &str,
    idp_name: &str,
    browser: Option<&str>,
) -> Result<Next, Failure> {
    let (mut tx, raw) = load_tx(server, tx_id, browser).await?;
    let idp_record = server
        .get::<IdpRecord>(Collection::OAuthIdps, idp_name)
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| {
            Failure::Page(OAuthError::invalid_request(format!(
                "unknown identity provider {idp_name:?}"
            )))
        })?;
    if let Some(host) = &tx.settings_host
        && let Some((settings, _)) = server
            .get::<ProxyOAuthSettings>(Collection::OAuthProxySettings, host)
            .await?
        && !settings.idps.is_empty()
        && !settings.idps.contains(&idp_record.name)
    {
        return Err(Failure::Page(OAuthError::invalid_request(format!(
            "identity provider {idp_name:?} is not allowed for this application"
        ))));
    }
    tx.idp = Some(idp_record.name.clone());
    replace_tx(server, &tx, raw).await?;
    let idp_record = effective_idp(server, &idp_record, &tx).await?;
    let url = idp::authorization_url(server, &idp_record, &tx)
        .await
        .map_err(|e| tx_error(server, &tx, e))?;
    Ok(Next::Redirect { url, cookie: None })
}

async fn replace_tx(server: &OAuthServer, tx: &LoginTx, raw: Vec<u8>) -> Result<(), Failure> {
    server
        .apply(Batch {
            checks: vec![Check::Equals(Collection::OAuthTx, tx.id.clone(), raw)],
            writes: vec![put(Collection::OAuthTx, &tx.id, tx)],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => Failure::Page(OAuthError::invalid_request(
                "this login step was already completed; start again from the application",
            )),
            e => e.into(),
        })?;
    Ok(())
}

/// Query of `GET /callback/{idp}`.
#[derive(Debug, Default)]
pub struct Callback {
    /// Provider's code.
    pub code: Option<String>,
    /// Our transaction id.
    pub state: Option<String>,
    /// Provider's error, e.g. `access_denied`.
    pub error: Option<String>,
}

/// `GET /callback/{idp}`: finishes the upstream login, applies the rules, then either issues
/// the code (consent remembered) or shows the consent page.
pub async fn callback(
    server: &OAuthServer,
    idp_name: &str,
    cb: Callback,
    browser: Option<&str>,
) -> Result<Next, Failure> {
    let state = cb
        .state
        .as_deref()
        .ok_or_else(|| Failure::Page(OAuthError::invalid_request("state is missing")))?;
    let (mut tx, raw) = load_tx(server, state, browser).await?;
    if tx.idp.as_deref() != Some(idp_name) || tx.identity.is_some() {
        return Err(Failure::Page(OAuthError::invalid_request(
            "unexpected callback for this login",
        )));
    }
    if let Some(err) = cb.error {
        // A provider that does not take the prompt refuses the request: ask once more with
        // the next weaker one (`login`, which OIDC Core defines, then none).
        if err == "invalid_request"
            && let Some(prompt) = tx.upstream_prompt.take()
        {
            tx.upstream_prompt = (prompt == "select_account").then(|| "login".to_owned());
            tracing::info!(idp = %idp_name, %prompt, "identity provider refused the prompt; retrying");
            replace_tx(server, &tx, raw).await?;
            let idp_record = server
                .get::<IdpRecord>(Collection::OAuthIdps, idp_name)
                .await?
                .map(|(r, _)| r)
                .ok_or_else(|| {
                    Failure::Page(OAuthError::invalid_request(format!(
                        "unknown identity provider {idp_name:?}"
                    )))
                })?;
            let idp_record = effective_idp(server, &idp_record, &tx).await?;
            let url = idp::authorization_url(server, &idp_record, &tx)
                .await
                .map_err(|e| tx_error(server, &tx, e))?;
            return Ok(Next::Redirect { url, cookie: None });
        }
        // Wording the edge's refusal page sorts by (`data-plane/src/answer/page.rs`).
        let e = OAuthError::new(
            ErrorCode::AccessDenied,
            format!(
                "{IDP_ENDED} ({})",
                truncate(&err, 64)
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .collect::<String>()
            ),
        );
        delete_tx(server, &tx.id).await;
        return Err(tx_error(server, &tx, e));
    }
    let code = cb.code.as_deref().ok_or_else(|| {
        tx_error(
            server,
            &tx,
            OAuthError::invalid_request("the identity provider sent no code"),
        )
    })?;
    let idp_record = server
        .get::<IdpRecord>(Collection::OAuthIdps, idp_name)
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| {
            tx_error(
                server,
                &tx,
                OAuthError::server("identity provider removed during login"),
            )
        })?;
    let idp_record = effective_idp(server, &idp_record, &tx).await?;
    let identity = match idp::finish(server, &idp_record, &tx, code).await {
        Ok(i) => i,
        Err(e) => {
            delete_tx(server, &tx.id).await;
            return Err(tx_error(server, &tx, e));
        }
    };
    let allowed = match allowed_scopes(server, &identity, &tx.resources).await? {
        Some(s) => s,
        None => {
            tracing::info!(sub = %identity.sub, login = %identity.login, "login refused by rules");
            delete_tx(server, &tx.id).await;
            // Our own edge (first party) may tell the user who was refused; a third-party
            // client learns no more than that the rules refused.
            let why = if super::edge_session::is_edge_client(&tx.client_id) {
                format!(
                    "{RULES_REFUSED}: {} via {}",
                    truncate(&identity.login, 100),
                    truncate(&identity.idp, 50)
                )
            } else {
                RULES_REFUSED.to_owned()
            };
            return Err(tx_error(
                server,
                &tx,
                OAuthError::new(ErrorCode::AccessDenied, why),
            ));
        }
    };
    tx.granted_scopes = if tx.scopes.is_empty() {
        allowed
            .into_iter()
            .filter(|s| s != "offline_access")
            .collect()
    } else {
        tx.scopes
            .iter()
            .filter(|s| allowed.contains(s))
            .cloned()
            .collect()
    };
    tx.auth_time = now();
    tx.identity = Some(identity.clone());
    // The built-in clients of redirect-mode proxies and the console are first party: no
    // consent page.
    if super::edge_session::is_edge_client(&tx.client_id)
        || tx.client_id == super::console_client::CONSOLE_CLIENT_ID
        || remembered_consent(server, &identity.sub, &tx).await?
    {
        return finish(server, &tx).await;
    }
    let csrf = random_token();
    tx.csrf_sha256 = sha256_hex(&csrf);
    replace_tx(server, &tx, raw).await?;
    let client = clients::resolve(server, &tx.client_id)
        .await
        .map_err(Failure::Page)?;
    let scopes = super::scopes::describe(server, &tx.granted_scopes).await?;
    Ok(Next::Consent(ConsentPage {
        verified: client.admin_registered,
        idp: identity.idp.clone(),
        tx: tx.id.clone(),
        csrf,
        client_name: client
            .client_name
            .clone()
            .unwrap_or_else(|| client.client_id.clone()),
        client_id: client.client_id,
        redirect_host: url::Url::parse(&tx.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        resources: consent_resources(server, &tx),
        scopes,
        login: identity.login,
    }))
}

/// What a consent is given for: the requested resources, or the control plane's own API
/// (the audience of a token asked for without `resource`).
fn consent_resources(server: &OAuthServer, tx: &LoginTx) -> Vec<String> {
    if tx.resources.is_empty() {
        vec![server.issuer().to_owned()]
    } else {
        tx.resources.clone()
    }
}

/// Whether `sub` already allowed this client every scope of `tx` at each of its resources.
async fn remembered_consent(
    server: &OAuthServer,
    sub: &str,
    tx: &LoginTx,
) -> Result<bool, StoreError> {
    for resource in consent_resources(server, tx) {
        let key = consent_key(sub, &tx.client_id, &resource);
        let covered = server
            .get::<ConsentRecord>(Collection::OAuthConsents, &key)
            .await?
            .is_some_and(|(c, _)| tx.granted_scopes.iter().all(|s| c.scopes.contains(s)));
        if !covered {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The per-proxy settings that apply to a login for these resources: those of the first
/// resource whose proxy has any.
async fn settings_for(
    server: &OAuthServer,
    resources: &[String],
) -> Result<Option<ProxyOAuthSettings>, OAuthError> {
    for r in resources {
        let (_, host) = canonical_resource(r)?;
        if let Some((s, _)) = server
            .get::<ProxyOAuthSettings>(Collection::OAuthProxySettings, &host)
            .await?
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// The provider as this login must use it: a proxy's own GitHub app replaces the
/// provider's client credentials.
async fn effective_idp(
    server: &OAuthServer,
    idp_record: &IdpRecord,
    tx: &LoginTx,
) -> Result<IdpRecord, OAuthError> {
    let mut out = idp_record.clone();
    if idp_record.kind != super::IdpKind::Github {
        return Ok(out);
    }
    if let Some(host) = &tx.settings_host
        && let Some((s, _)) = server
            .get::<ProxyOAuthSettings>(Collection::OAuthProxySettings, host)
            .await?
        && let (Some(id), Some(secret)) = (s.github_client_id, s.github_client_secret_sealed)
    {
        out.client_id = id;
        out.client_secret_sealed = secret;
    }
    Ok(out)
}

/// Key of the consent of `sub` for `client_id` at `resource`: a hash, since each part may
/// contain any separator.
pub fn consent_key(sub: &str, client_id: &str, resource: &str) -> String {
    sha256_hex(&serde_json::json!([sub, client_id, resource]).to_string())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn delete_tx(server: &OAuthServer, id: &str) {
    let _ = server
        .apply(Batch {
            checks: vec![],
            writes: vec![Write::Delete(Collection::OAuthTx, id.to_owned())],
        })
        .await;
}

/// `POST /consent`: the user's answer.
pub async fn consent(
    server: &OAuthServer,
    tx_id: &str,
    csrf: &str,
    approve: bool,
    browser: Option<&str>,
) -> Result<Next, Failure> {
    let (tx, _) = load_tx(server, tx_id, browser).await?;
    if tx.csrf_sha256.is_empty() || !hashes_equal(&tx.csrf_sha256, &sha256_hex(csrf)) {
        return Err(Failure::Page(OAuthError::invalid_request(
            "the consent form is stale or forged; start again",
        )));
    }
    let Some(identity) = tx.identity.clone() else {
        return Err(Failure::Page(OAuthError::invalid_request(
            "no login to consent to",
        )));
    };
    if !approve {
        delete_tx(server, &tx.id).await;
        if let Some(key) = &tx.device_key {
            device_state::deny(server, key).await?;
        }
        return Err(tx_error(
            server,
            &tx,
            OAuthError::new(ErrorCode::AccessDenied, DECLINED),
        ));
    }
    // One consent per resource; scopes allowed before at a resource stay allowed there.
    let mut writes = Vec::new();
    for resource in consent_resources(server, &tx) {
        let key = consent_key(&identity.sub, &tx.client_id, &resource);
        let mut scopes = server
            .get::<ConsentRecord>(Collection::OAuthConsents, &key)
            .await?
            .map(|(c, _)| c.scopes)
            .unwrap_or_default();
        for s in &tx.granted_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let record = ConsentRecord {
            sub: identity.sub.clone(),
            client_id: tx.client_id.clone(),
            resource,
            scopes,
            created_at: now(),
        };
        writes.push(put(Collection::OAuthConsents, &key, &record));
    }
    server
        .apply(Batch {
            checks: vec![],
            writes,
        })
        .await?;
    finish(server, &tx).await
}

/// Ends an approved login: a code back to the client, or an approved device.
async fn finish(server: &OAuthServer, tx: &LoginTx) -> Result<Next, Failure> {
    if let Some(key) = &tx.device_key {
        device_state::approve(server, key, tx).await?;
        delete_tx(server, &tx.id).await;
        return Ok(Next::Message {
            title: "Device connected".into(),
            text: "You are signed in. Return to your device or terminal; it continues on its own."
                .into(),
        });
    }
    let url = issue_code(server, tx).await?;
    Ok(Next::Redirect { url, cookie: None })
}

/// Issues the code and ends the login transaction (atomically: a transaction yields one code).
async fn issue_code(server: &OAuthServer, tx: &LoginTx) -> Result<String, Failure> {
    let Some(identity) = tx.identity.clone() else {
        return Err(Failure::Page(OAuthError::server(
            "issuing a code without a login",
        )));
    };
    let code = random_token();
    let record = CodeRecord {
        client_id: tx.client_id.clone(),
        redirect_uri: tx.redirect_uri.clone(),
        code_challenge: tx.code_challenge.clone(),
        scopes: tx.granted_scopes.clone(),
        resources: tx.resources.clone(),
        identity,
        auth_time: tx.auth_time,
        expires_at: now() + server.settings().code_ttl.as_secs().min(60) as i64,
        used_by_family: None,
    };
    server
        .apply(Batch {
            checks: vec![Check::Present(Collection::OAuthTx, tx.id.clone())],
            writes: vec![
                Write::Delete(Collection::OAuthTx, tx.id.clone()),
                put(Collection::OAuthCodes, &sha256_hex(&code), &record),
            ],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => {
                Failure::Page(OAuthError::invalid_request("this login already finished"))
            }
            e => e.into(),
        })?;
    Ok(success_redirect(
        server.issuer(),
        &tx.redirect_uri,
        tx.state.as_deref(),
        &code,
    ))
}

/// Which scopes the rules grant `who` (for these resources), or `None` if no rule admits them.
pub async fn allowed_scopes(
    server: &OAuthServer,
    who: &Identity,
    resources: &[String],
) -> Result<Option<Vec<String>>, OAuthError> {
    let rules: Vec<LoginRule> = server.list(Collection::OAuthRules).await?;
    let hosts: Vec<String> = resources
        .iter()
        .filter_map(|r| canonical_resource(r).ok().map(|(_, h)| h))
        .collect();
    let mut matched = false;
    let mut scopes: Vec<String> = BASE_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    for rule in &rules {
        if rule
            .proxy_hostname
            .as_deref()
            .is_some_and(|p| !hosts.iter().any(|h| host_matches(p, h)))
        {
            continue;
        }
        if rule.idp.as_deref().is_some_and(|i| i != who.idp) {
            continue;
        }
        if rule_matches(rule, who) {
            matched = true;
            for s in &rule.scopes {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
        }
    }
    Ok(matched.then_some(scopes))
}

/// Whether one rule admits a user: any of its users, groups or e-mail domains matches.
pub fn rule_matches(rule: &LoginRule, who: &Identity) -> bool {
    let users = rule
        .users
        .iter()
        .any(|u| u == "*" || u.eq_ignore_ascii_case(&who.login));
    let groups = rule
        .groups
        .iter()
        .any(|g| who.groups.iter().any(|have| have.eq_ignore_ascii_case(g)));
    let domains = who
        .email
        .as_deref()
        .and_then(|e| e.rsplit_once('@'))
        .is_some_and(|(_, d)| {
            rule.email_domains
                .iter()
                .any(|want| want.eq_ignore_ascii_case(d))
        });
    users || groups || domains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_keys_tell_users_clients_and_resources_apart() {
        let key = consent_key("github:1", "c", "https://a.example");
        assert_eq!(key, consent_key("github:1", "c", "https://a.example"));
        assert_ne!(key, consent_key("github:1", "c", "https://b.example"));
        assert_ne!(key, consent_key("github:2", "c", "https://a.example"));
        // No separator can make two different triples collide.
        assert_ne!(consent_key("a|b", "c", "r"), consent_key("a", "b|c", "r"));
    }

    #[test]
    fn wildcard_hosts() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("a.example.com", "a.example.com"));
    }

    #[test]
    fn rules_match_users_groups_domains() {
        let who = Identity {
            idp: "gh".into(),
            sub: "gh:1".into(),
            login: "Alice".into(),
            email: Some("alice@corp.example".into()),
            name: None,
            groups: vec!["acme".into(), "acme/ops".into()],
        };
        let rule = |users: &[&str], groups: &[&str], domains: &[&str]| LoginRule {
            id: "r".into(),
            proxy_hostname: None,
            idp: None,
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            scopes: vec![],
            created_at: 0,
        };
        assert!(rule_matches(&rule(&["alice"], &[], &[]), &who));
        assert!(rule_matches(&rule(&["*"], &[], &[]), &who));
        assert!(rule_matches(&rule(&[], &["acme/ops"], &[]), &who));
        assert!(rule_matches(&rule(&[], &[], &["corp.example"]), &who));
        assert!(!rule_matches(
            &rule(&["bob"], &["other"], &["evil.example"]),
            &who
        ));
    }
}
