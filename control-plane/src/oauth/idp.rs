//! Upstream login: GitHub (github.com or Enterprise Server) and any OpenID Connect provider.
//!
//! Both use the authorization-code flow with PKCE towards the provider and our own
//! `/callback/{idp}` redirect URI; the login transaction id is the `state`. The result is an
//! [`Identity`] with a stable `sub` (`{idp}:{provider user id}`).

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ErrorCode, Identity, IdpKind, IdpRecord, LoginTx, OAuthError, OAuthServer};

/// How long discovered OpenID provider metadata (with its JWKS) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Discovered provider metadata by issuer URL, so a login (authorize, then callback) costs
/// one discovery instead of two, and busy login periods none at all.
#[derive(Default)]
pub(crate) struct DiscoveryCache(Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>);

impl DiscoveryCache {
    fn get(&self, issuer: &str) -> Option<CoreProviderMetadata> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(issuer)
            .filter(|(at, _)| at.elapsed() < DISCOVERY_TTL)
            .map(|(_, meta)| meta.clone())
    }

    fn put(&self, issuer: &str, meta: &CoreProviderMetadata) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
        map.insert(issuer.to_owned(), (Instant::now(), meta.clone()));
    }

    /// Forgets `issuer`: an id_token that failed verification may mean rotated keys.
    fn forget(&self, issuer: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(issuer);
    }
}

/// Default GitHub scopes: profile, e-mail addresses, org and team membership.
pub const GITHUB_SCOPES: &[&str] = &["read:user", "user:email", "read:org"];
/// Default OIDC scopes.
pub const OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];

fn upstream_error(idp: &str, what: impl std::fmt::Display) -> OAuthError {
    tracing::warn!(idp, error = %what, "upstream login failed");
    OAuthError::new(
        ErrorCode::AccessDenied,
        format!("login with {idp} failed: {what}"),
    )
}

fn redirect_uri(server: &OAuthServer, idp: &IdpRecord) -> String {
    format!("{}/callback/{}", server.issuer(), idp.name)
}

fn secret(server: &OAuthServer, idp: &IdpRecord) -> Result<String, OAuthError> {
    let raw = server
        .cp()
        .master_key()
        .open(&idp.client_secret_sealed)
        .map_err(OAuthError::server)?;
    String::from_utf8(raw).map_err(OAuthError::server)
}

/// Where to send the browser to log in at `idp`.
pub async fn authorization_url(
    server: &OAuthServer,
    idp: &IdpRecord,
    tx: &LoginTx,
) -> Result<String, OAuthError> {
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        tx.upstream_verifier.clone(),
    ));
    match idp.kind {
        IdpKind::Github => {
            let mut url = url::Url::parse(&format!("{}/login/oauth/authorize", idp.base_url))
                .map_err(OAuthError::server)?;
            url.query_pairs_mut()
                .append_pair("client_id", &idp.client_id)
                .append_pair("redirect_uri", &redirect_uri(server, idp))
                .append_pair("scope", &idp.scopes.join(" "))
                .append_pair("state", &tx.id)
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", "S256")
                .append_pair("allow_signup", "false");
            // GitHub knows only this prompt: any retry goes without one.
            if tx.upstream_prompt.as_deref() == Some("select_account") {
                url.query_pairs_mut()
                    .append_pair("prompt", "select_account");
            }
            Ok(url.into())
        }
        IdpKind::Oidc => {
            let client = oidc_client(server, idp).await?;
            let state = tx.id.clone();
            let nonce = tx.upstream_nonce.clone();
            let mut req = client
                .authorize_url(
                    CoreAuthenticationFlow::AuthorizationCode,
                    move || CsrfToken::new(state.clone()),
                    move || Nonce::new(nonce.clone()),
                )
                .set_pkce_challenge(challenge);
            for s in idp.scopes.iter().filter(|s| *s != "openid") {
                req = req.add_scope(Scope::new(s.clone()));
            }
            match tx.upstream_prompt.as_deref() {
                Some("select_account") => {
                    req = req.add_prompt(openidconnect::core::CoreAuthPrompt::SelectAccount);
                }
                Some("login") => req = req.add_prompt(openidconnect::core::CoreAuthPrompt::Login),
                _ => {}
            }
            Ok(req.url().0.into())
        }
    }
}

/// Exchanges the provider's code and learns who the user is.
pub async fn finish(
    server: &OAuthServer,
    idp: &IdpRecord,
    tx: &LoginTx,
    code: &str,
) -> Result<Identity, OAuthError> {
    match idp.kind {
        IdpKind::Github => github_finish(server, idp, tx, code).await,
        IdpKind::Oidc => oidc_finish(server, idp, tx, code).await,
    }
}

// === GitHub ===

#[derive(Deserialize)]
struct GithubToken {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct GithubOrg {
    login: String,
}

#[derive(Deserialize)]
struct GithubTeam {
    slug: String,
    organization: GithubOrg,
}

async fn github_get<T: serde::de::DeserializeOwned>(
    server: &OAuthServer,
    idp: &IdpRecord,
    token: &str,
    path: &str,
) -> Result<T, OAuthError> {
    let resp = server
        .http()
        .get(format!("{}{path}", idp.api_url))
        .bearer_auth(token)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| upstream_error(&idp.name, format!("GET {path}: {e}")))?;
    if !resp.status().is_success() {
        return Err(upstream_error(
            &idp.name,
            format!("GET {path} answered {}", resp.status()),
        ));
    }
    resp.json()
        .await
        .map_err(|e| upstream_error(&idp.name, format!("GET {path}: unexpected body: {e}")))
}

async fn github_finish(
    server: &OAuthServer,
    idp: &IdpRecord,
    tx: &LoginTx,
    code: &str,
) -> Result<Identity, OAuthError> {
    let secret = secret(server, idp)?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &idp.client_id)
        .append_pair("client_secret", &secret)
        .append_pair("code", code)
        .append_pair("redirect_uri", &redirect_uri(server, idp))
        .append_pair("code_verifier", &tx.upstream_verifier)
        .finish();
    let resp = server
        .http()
        .post(format!("{}/login/oauth/access_token", idp.base_url))
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| upstream_error(&idp.name, format!("token exchange: {e}")))?;
    if !resp.status().is_success() {
        return Err(upstream_error(
            &idp.name,
            format!("token exchange answered {}", resp.status()),
        ));
    }
    let token: GithubToken = resp
        .json()
        .await
        .map_err(|e| upstream_error(&idp.name, format!("token exchange: unexpected body: {e}")))?;
    let Some(access) = token.access_token else {
        return Err(upstream_error(
            &idp.name,
            format!(
                "token exchange refused: {} {}",
                token.error.unwrap_or_default(),
                token.error_description.unwrap_or_default()
            ),
        ));
    };
    let user: GithubUser = github_get(server, idp, &access, "/user").await?;
    let emails: Vec<GithubEmail> = github_get(server, idp, &access, "/user/emails")
        .await
        .unwrap_or_default();
    let email = emails
        .iter()
        .find(|e| e.primary && e.verified)
        .map(|e| e.email.clone())
        .or(user.email);
    let orgs: Vec<GithubOrg> = github_get(server, idp, &access, "/user/orgs")
        .await
        .unwrap_or_default();
    let teams: Vec<GithubTeam> = github_get(server, idp, &access, "/user/teams")
        .await
        .unwrap_or_default();
    let mut groups: Vec<String> = orgs.into_iter().map(|o| o.login).collect();
    groups.extend(
        teams
            .into_iter()
            .map(|t| format!("{}/{}", t.organization.login, t.slug)),
    );
    Ok(Identity {
        idp: idp.name.clone(),
        sub: format!("{}:{}", idp.name, user.id),
        login: user.login,
        email,
        name: user.name,
        groups,
    })
}

// === OpenID Connect ===

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

async fn oidc_http(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
    let mut out = http::Response::new(bytes.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

type Oidc = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

async fn oidc_client(server: &OAuthServer, idp: &IdpRecord) -> Result<Oidc, OAuthError> {
    let meta = match server.discovery().get(&idp.base_url) {
        Some(meta) => meta,
        None => {
            let issuer =
                IssuerUrl::new(idp.base_url.clone()).map_err(|e| upstream_error(&idp.name, e))?;
            let http = |req| oidc_http(server.http().clone(), req);
            let meta = CoreProviderMetadata::discover_async(issuer, &http)
                .await
                .map_err(|e| upstream_error(&idp.name, format!("discovery: {e}")))?;
            server.discovery().put(&idp.base_url, &meta);
            meta
        }
    };
    let redirect = RedirectUrl::new(redirect_uri(server, idp)).map_err(OAuthError::server)?;
    Ok(CoreClient::from_provider_metadata(
        meta,
        ClientId::new(idp.client_id.clone()),
        Some(ClientSecret::new(secret(server, idp)?)),
    )
    .set_redirect_uri(redirect))
}

async fn oidc_finish(
    server: &OAuthServer,
    idp: &IdpRecord,
    tx: &LoginTx,
    code: &str,
) -> Result<Identity, OAuthError> {
    let client = oidc_client(server, idp).await?;
    let http = |req| oidc_http(server.http().clone(), req);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| upstream_error(&idp.name, e))?
        .set_pkce_verifier(PkceCodeVerifier::new(tx.upstream_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| upstream_error(&idp.name, format!("token exchange: {e}")))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| upstream_error(&idp.name, "no id_token in the token response"))?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(tx.upstream_nonce.clone()))
        .map_err(|e| {
            server.discovery().forget(&idp.base_url);
            upstream_error(&idp.name, format!("id_token rejected: {e}"))
        })?;
    // The token verified above; read claims the standard set does not model (groups).
    let mut extra = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    // Userinfo usually carries groups and e-mail when the id_token does not.
    if let Some(ep) = client.user_info_url()
        && let Ok(resp) = server
            .http()
            .get(ep.as_str())
            .bearer_auth(tokens.access_token().secret())
            .send()
            .await
        && let Ok(info) = resp.json::<serde_json::Value>().await
        && info.get("sub").and_then(|s| s.as_str()) == Some(claims.subject().as_str())
        && let (Some(obj), Some(more)) = (extra.as_object_mut(), info.as_object())
    {
        for (k, v) in more {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let text = |k: &str| extra.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let email = text("email")
        .filter(|_| extra.get("email_verified").and_then(|v| v.as_bool()) != Some(false));
    let groups = extra
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let sub = claims.subject().as_str().to_owned();
    Ok(Identity {
        idp: idp.name.clone(),
        sub: format!("{}:{sub}", idp.name),
        login: text("preferred_username")
            .or_else(|| email.clone())
            .unwrap_or_else(|| sub.clone()),
        email,
        name: text("name"),
        groups,
    })
}
