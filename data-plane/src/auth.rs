//! Edge authentication: OAuth bearer tokens verified locally with the snapshot's keys.
//!
//! Built once per snapshot ([`Verifier`] for keys, issuer and revocations; one
//! [`ProxyAuth`] per protected proxy for mode, scopes, public paths and metadata), so a
//! request only parses its token and reads these structures: no I/O, no lock, nothing
//! recompiled.
//!
//! Per request on a protected proxy ([`ProxyAuth::check`]):
//! - `/.well-known/oauth-protected-resource[/…]` is answered here (RFC 9728).
//! - Public paths, and routes an admin marked public, pass without a token.
//! - `forward`: a valid bearer token for this resource is required: 401 with a
//!   `WWW-Authenticate` challenge naming the metadata URL otherwise, 403 when scopes are
//!   missing.
//!   A valid token whose user is not on the proxy's allowlist ([`allow`]) gets 403
//!   `access_denied` (no challenge: another token of the same user would not help).
//! - `passthrough`: never refuses; identity is added only for a fully valid token.
//!
//! Whatever the outcome, an admitted request loses any `Authorization: Bearer` header
//! (no token passthrough to the upstream, unless the proxy opted in with `forward_token`
//! and the token was verified) and any client-sent identity headers; identity headers
//! (names configurable per proxy) are then set from verified claims only ([`identity`]).

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};

mod allow;
mod cors;
mod identity;
mod jwks;
mod metadata;
mod paths;
mod session;
mod token_cache;
mod verify;
mod view;

pub(crate) use self::metadata::MetadataError;
pub(crate) use self::session::SessionAuth;
pub(crate) use self::session::{SessionSpec, strip_cookies as strip_session_cookies};
pub use self::verify::{Claims, TokenError, Verifier, VerifierError};
pub(crate) use self::view::HeaderView;

use self::allow::Allowlist;
use self::cors::AllowedOrigins;
pub(crate) use self::cors::Decision as OriginDecision;
pub(crate) use self::identity::IdentityHeaders;
use self::metadata::MetadataTemplate;
use self::paths::PublicPaths;
use crate::answer::Rejection;
use crate::metrics::{self, TokenOutcome};
use crate::spec::RouteAccess;
use crate::spec::{InvalidField, Reason};

/// How a protected proxy treats requests without a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// APIs and MCP servers: 401/403 without a valid token.
    Forward,
    /// Never refuse; identity headers only when a valid token came.
    Passthrough,
}

/// What the request looks like from outside: the listener's scheme, the Host the
/// client used and the port clients reach the listener on. Resource URLs and audience
/// checks are relative to the Host; `redirect`-mode callbacks use the public port.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    secure: bool,
    authority: &'a str,
    public_port: u16,
}

/// The validated auth settings of one proxy, before the snapshot's verifier is attached.
#[derive(Clone, Debug)]
pub(crate) struct AuthSpec {
    pub(crate) mode: Mode,
    pub(crate) required_scopes: Box<[Box<str>]>,
    pub(crate) scopes_supported: Box<[Box<str>]>,
    pub(crate) public_paths: PublicPaths,
    pub(crate) resource_documentation: Box<str>,
    pub(crate) resource_metadata_json: String,
    /// The MCP endpoint path; empty = none.
    pub(crate) endpoint: Box<str>,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) allow: Allowlist,
    /// Token passthrough and identity header names.
    pub(crate) identity: Arc<IdentityHeaders>,
}

/// A protected proxy's compiled policy.
#[derive(Debug)]
pub(crate) struct ProxyAuth {
    mode: Mode,
    verifier: Arc<Verifier>,
    required_scopes: Box<[Box<str>]>,
    /// `a b c`, ready for the `scope` challenge parameter; empty when none are required.
    scope_param: Box<str>,
    public_paths: PublicPaths,
    metadata: MetadataTemplate,
    /// The MCP endpoint path (`/mcp`); empty = none.
    endpoint: Box<str>,
    allowed_origins: AllowedOrigins,
    allow: Allowlist,
    /// Token passthrough and identity header names, prebuilt.
    identity: Arc<IdentityHeaders>,
}

/// What the policy decided for an admitted request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Forward without identity.
    Anonymous,
    /// Forward with the identity of these verified claims.
    Authenticated(Arc<Claims>),
}

impl Verdict {
    /// The verified claims, if any (moved, not cloned).
    pub(crate) fn into_claims(self) -> Option<Arc<Claims>> {
        match self {
            Self::Anonymous => None,
            Self::Authenticated(claims) => Some(claims),
        }
    }
}

/// Why a protected proxy's request has no acceptable bearer token. `forward` mode answers
/// each with its own refusal ([`ProxyAuth::check`]); `passthrough` mode lets the request
/// through anonymously whatever the reason.
#[derive(Debug)]
enum Refusal {
    /// No `Authorization` header.
    NoToken,
    /// An `Authorization` header that cannot carry a bearer token.
    Unusable(&'static str),
    /// The token failed verification or is meant for another resource.
    Invalid(TokenError),
    /// The token lacks a scope the proxy or the route requires.
    Scope,
    /// The token's user is not on the proxy's allowlist.
    NotAllowed(Arc<Claims>),
}

impl Refusal {
    /// The metrics label of a bearer-token decision.
    fn outcome(decided: &Result<Arc<Claims>, Self>) -> TokenOutcome {
        match decided {
            Ok(_) => TokenOutcome::Valid,
            Err(Self::NoToken) => TokenOutcome::Missing,
            Err(Self::Unusable(_)) => TokenOutcome::Unusable,
            Err(Self::Scope) => TokenOutcome::Scope,
            Err(Self::NotAllowed(_)) => TokenOutcome::NotAllowed,
            Err(Self::Invalid(error)) => match error {
                TokenError::Malformed => TokenOutcome::Malformed,
                TokenError::NotAccessToken
                | TokenError::Algorithm
                | TokenError::NoKid
                | TokenError::UnknownKey => TokenOutcome::Unsupported,
                TokenError::Signature => TokenOutcome::Signature,
                TokenError::Expired | TokenError::NotYetValid => TokenOutcome::Expired,
                TokenError::Issuer | TokenError::Audience => TokenOutcome::Audience,
                TokenError::Revoked => TokenOutcome::Revoked,
            },
        }
    }
}

// === impl Origin ===

impl<'a> Origin<'a> {
    /// `secure`: the request arrived on the HTTPS listener. `authority`: the Host the
    /// client sent (name and optional port). The listener is taken to be reached on the
    /// scheme's default port unless [`Self::with_public_port`] says otherwise.
    pub fn new(secure: bool, authority: &'a str) -> Self {
        let public_port = if secure { 443 } else { 80 };
        Self {
            secure,
            authority,
            public_port,
        }
    }

    /// The port clients reach the listener on (the data plane's configuration, never
    /// the Host header's port, which the client chooses).
    pub(crate) fn with_public_port(mut self, port: u16) -> Self {
        self.public_port = port;
        self
    }

    /// The listener's public port, `None` when it is the scheme's default (left out of
    /// URLs).
    fn explicit_port(&self) -> Option<u16> {
        (self.public_port != self.default_port()).then_some(self.public_port)
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }

    fn default_port(&self) -> u16 {
        if self.secure { 443 } else { 80 }
    }

    /// The Host as sent.
    pub(crate) fn authority(&self) -> &'a str {
        self.authority
    }

    /// Only characters a hostname, IP literal and port use, so the authority can be
    /// embedded in URLs and quoted header parameters as is.
    fn is_well_formed(&self) -> bool {
        !self.authority.is_empty()
            && self
                .authority
                .bytes()
                .all(|b| AUTHORITY_BYTES[usize::from(b)])
    }
}

/// The bytes [`Origin::is_well_formed`] accepts, as a table: one load per byte where the
/// character-class tests took about three times the instructions (every protected
/// request checks its Host).
const AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']');
        i += 1;
    }
    table
};

/// Splits `host[:port]` / `[v6][:port]`; the port is `None` when absent or unparsable.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let split = if authority.starts_with('[') {
        crate::ascii::find(authority, b']')
            .map(|end| authority.split_at(end + 1))
            .map(|(h, rest)| (h, rest.strip_prefix(':')))
    } else {
        Some(match crate::ascii::split_once(authority, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        })
    };
    match split {
        Some((host, port)) => (
            host.strip_suffix('.').unwrap_or(host),
            port.and_then(|p| p.parse().ok()),
        ),
        None => (authority, None),
    }
}

/// An edge-auth setting refused at compile time, named by its wire field.
fn invalid(field: &'static str, why: impl Into<String>) -> InvalidField {
    InvalidField::new(field, Reason::Auth(why.into()))
}

// === impl AuthSpec ===

impl AuthSpec {
    /// Validates the wire settings of an enforced mode. Errors name the wire field.
    pub(crate) fn from_proto(
        mode: Mode,
        p: &portcullis_proto::v1::ProxyAuthPolicy,
    ) -> Result<Self, InvalidField> {
        let required_scopes =
            scopes(&p.required_scopes).map_err(|e| invalid("auth.required_scopes", e))?;
        let scopes_supported =
            scopes(&p.scopes_supported).map_err(|e| invalid("auth.scopes_supported", e))?;
        let public_paths = PublicPaths::parse(&p.public_paths)
            .map_err(|e| invalid("auth.public_paths", e.to_string()))?;
        let doc = p.resource_documentation.trim();
        if !doc.is_empty() {
            let ok = url::Url::parse(doc)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                && !doc.contains('"');
            if !ok {
                return Err(invalid(
                    "auth.resource_documentation",
                    format!("{doc:?} is not an absolute http(s) URL"),
                ));
            }
        }
        let endpoint = p.resource_endpoint.as_str();
        if !endpoint.is_empty() && !paths::is_endpoint(endpoint) {
            return Err(invalid(
                "auth.resource_endpoint",
                format!("{endpoint:?} is not a clean absolute path other than \"/\""),
            ));
        }
        let allowed_origins = AllowedOrigins::parse(&p.allowed_origins)
            .map_err(|e| invalid("auth.allowed_origins", e.to_string()))?;
        Ok(Self {
            mode,
            required_scopes,
            scopes_supported,
            public_paths,
            resource_documentation: doc.into(),
            resource_metadata_json: p.resource_metadata_json.clone(),
            endpoint: endpoint.into(),
            allowed_origins,
            allow: Allowlist::from_proto(p)?,
            identity: Arc::new(IdentityHeaders::from_proto(
                p.forward_token,
                &p.identity_headers,
            )?),
        })
    }
}

/// Scope tokens (RFC 6749 §3.3: printable ASCII except space, double quote and backslash), deduplicated.
pub(crate) fn scopes(raw: &[String]) -> Result<Box<[Box<str>]>, String> {
    let mut out: Vec<Box<str>> = Vec::with_capacity(raw.len());
    for s in raw {
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            return Err(format!("{s:?} is not a scope token"));
        }
        if !out.iter().any(|o| **o == **s) {
            out.push(s.as_str().into());
        }
    }
    Ok(out.into())
}

// === impl ProxyAuth ===

impl ProxyAuth {
    /// Links a proxy's settings with the snapshot's verifier and prepares the metadata
    /// template and challenge parameters.
    pub(crate) fn new(spec: AuthSpec, verifier: Arc<Verifier>) -> Result<Self, MetadataError> {
        let advertised = if spec.scopes_supported.is_empty() {
            &spec.required_scopes
        } else {
            &spec.scopes_supported
        };
        let metadata = MetadataTemplate::new(
            verifier.issuer(),
            advertised,
            &spec.resource_documentation,
            &spec.resource_metadata_json,
        )?;
        Ok(Self {
            mode: spec.mode,
            scope_param: spec.required_scopes.join(" ").into(),
            required_scopes: spec.required_scopes,
            public_paths: spec.public_paths,
            verifier,
            metadata,
            allow: spec.allow,
            endpoint: spec.endpoint,
            allowed_origins: spec.allowed_origins,
            identity: spec.identity,
        })
    }

    /// Token passthrough and identity header names, for [`apply_identity`].
    pub(crate) fn identity(&self) -> &IdentityHeaders {
        &self.identity
    }

    /// The browser-origin decision for one request, taken before [`Self::check`] so
    /// preflights (which never carry a token) are answered. The public metadata
    /// documents are exempt.
    pub(crate) fn origin_decision(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> OriginDecision {
        if metadata::metadata_suffix(path).is_some() {
            return OriginDecision::None;
        }
        self.allowed_origins.decide(method, headers)
    }

    /// Decides one request. `Err` is the answer to send instead of routing: a refusal or
    /// the metadata document.
    pub(crate) fn check<H: HeaderView + ?Sized>(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        method: &Method,
        path: &str,
        headers: &H,
    ) -> Result<Verdict, Rejection> {
        if !origin.is_well_formed() {
            return Err(Rejection::bad_request("malformed Host header"));
        }
        if let Some(suffix) = metadata::metadata_suffix(path) {
            return Err(self.metadata_answer(origin, method, suffix));
        }
        if route.public || self.public_paths.matches(path) {
            return Ok(Verdict::Anonymous);
        }
        let decided = self.bearer_claims(origin, route, path, headers);
        metrics::token_checked(Refusal::outcome(&decided));
        match decided {
            Ok(claims) => Ok(Verdict::Authenticated(claims)),
            // Passthrough: a request without an acceptable token goes on anonymously.
            Err(refusal) if self.mode == Mode::Passthrough => {
                match refusal {
                    Refusal::Unusable(reason) => {
                        tracing::debug!(reason, "passthrough: unusable Authorization header");
                    }
                    Refusal::Invalid(error) => {
                        tracing::debug!(%error, "passthrough: token not accepted");
                    }
                    Refusal::NoToken | Refusal::Scope | Refusal::NotAllowed(_) => {}
                }
                Ok(Verdict::Anonymous)
            }
            Err(refusal) => Err(self.refuse(origin, route, path, refusal)),
        }
    }

    /// [`Self::check`] for a caller that answers nothing itself (the HTTP/1.1 fast path):
    /// the verdict when `check` would admit the request with a public path or route, or
    /// with a valid bearer token (the same [`Self::bearer_claims`]); `None` for everything
    /// else (the metadata document, a malformed Host, every refusal, and in `passthrough`
    /// mode a request without an acceptable token), which the caller hands to the full
    /// path, whose `check` decides and counts it. A valid token is not counted here: the
    /// caller counts it ([`metrics::token_checked`], `Valid`) once it serves the request.
    pub(crate) fn admits<H: HeaderView + ?Sized>(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        path: &str,
        headers: &H,
    ) -> Option<Verdict> {
        if !origin.is_well_formed() || metadata::metadata_suffix(path).is_some() {
            return None;
        }
        if route.public || self.public_paths.matches(path) {
            return Some(Verdict::Anonymous);
        }
        let claims = self.bearer_claims(origin, route, path, headers).ok()?;
        Some(Verdict::Authenticated(claims))
    }

    /// The claims of the request's bearer token if it is present, valid, meant for this
    /// resource, carries the proxy's and the route's scopes, and names an allowed user;
    /// otherwise why not.
    fn bearer_claims<H: HeaderView + ?Sized>(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        path: &str,
        headers: &H,
    ) -> Result<Arc<Claims>, Refusal> {
        let credential = bearer_credential(headers)
            .map_err(Refusal::Unusable)?
            .ok_or(Refusal::NoToken)?;
        // A credential equal to a token verified before skips the format checks: that
        // token passed them.
        let verified = match self.verifier.cached_claims(credential.0) {
            Some(claims) => Ok(claims),
            None => match credential.token() {
                Ok(token) => self.verifier.verify(token),
                Err(reason) => return Err(Refusal::Unusable(reason)),
            },
        };
        let claims = verified
            .and_then(|claims| self.check_audience(origin, path, claims))
            .map_err(Refusal::Invalid)?;
        if !has_scopes(&self.required_scopes, &claims.scope)
            || !has_scopes(&route.required_scopes, &claims.scope)
        {
            return Err(Refusal::Scope);
        }
        if !self.allow.permits(&claims) {
            return Err(Refusal::NotAllowed(claims));
        }
        Ok(claims)
    }

    /// The answer to a request refused in `forward` mode.
    fn refuse(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        path: &str,
        refusal: Refusal,
    ) -> Rejection {
        match refusal {
            Refusal::NoToken => Rejection::auth(
                StatusCode::UNAUTHORIZED,
                self.challenge(origin, route, path, None),
                "invalid_token",
                "a bearer token is required",
            ),
            Refusal::Unusable(reason) => Rejection::auth(
                StatusCode::BAD_REQUEST,
                self.challenge(origin, route, path, Some(("invalid_request", reason))),
                "invalid_request",
                reason,
            ),
            Refusal::Invalid(error) => {
                tracing::debug!(%error, "bearer token refused");
                let description = error_description(error);
                Rejection::auth(
                    StatusCode::UNAUTHORIZED,
                    self.challenge(origin, route, path, Some(("invalid_token", description))),
                    "invalid_token",
                    description,
                )
            }
            Refusal::Scope => {
                const WHY: &str = "the token lacks a required scope";
                Rejection::auth(
                    StatusCode::FORBIDDEN,
                    self.challenge(origin, route, path, Some(("insufficient_scope", WHY))),
                    "insufficient_scope",
                    WHY,
                )
            }
            Refusal::NotAllowed(claims) => {
                tracing::debug!(sub = %claims.sub, "user not on the proxy's allowlist");
                Rejection::not_allowed()
            }
        }
    }

    fn check_audience(
        &self,
        origin: &Origin<'_>,
        path: &str,
        claims: Arc<Claims>,
    ) -> Result<Arc<Claims>, TokenError> {
        let request = split_authority(origin.authority());
        if claims
            .audiences()
            .iter()
            .any(|aud| aud.matches(origin, request, path))
        {
            Ok(claims)
        } else {
            Err(TokenError::Audience)
        }
    }

    /// The challenge names the proxy's and the route's scopes; built only on refusals.
    fn challenge(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        path: &str,
        error: Option<(&str, &str)>,
    ) -> http::HeaderValue {
        let extra = route
            .required_scopes
            .iter()
            .filter(|s| !self.required_scopes.contains(s));
        let mut scope_param = String::from(&*self.scope_param);
        for s in extra {
            if !scope_param.is_empty() {
                scope_param.push(' ');
            }
            scope_param.push_str(s);
        }
        // Under the MCP endpoint, point at the endpoint's path-suffixed metadata.
        let resource_path = if !self.endpoint.is_empty() && paths::within(path, &self.endpoint) {
            &*self.endpoint
        } else {
            ""
        };
        metadata::challenge(origin, resource_path, &scope_param, error)
    }

    fn metadata_answer(&self, origin: &Origin<'_>, method: &Method, suffix: &str) -> Rejection {
        if method != Method::GET && method != Method::HEAD {
            return Rejection::method_not_allowed("GET, HEAD");
        }
        if !suffix.is_empty() && !paths::is_clean(suffix) {
            return Rejection::not_found();
        }
        let mut resource = metadata::origin_url(origin);
        resource.push_str(suffix);
        Rejection::metadata(self.metadata.render(&resource))
    }
}

fn has_scopes(required: &[Box<str>], granted: &str) -> bool {
    required
        .iter()
        .all(|need| granted.split(' ').any(|g| g == &**need))
}

/// `error_description` texts; static so they never carry token content.
fn error_description(error: TokenError) -> &'static str {
    match error {
        TokenError::Malformed => "malformed token",
        TokenError::NotAccessToken => "not an access token",
        TokenError::Algorithm => "unsupported or mismatched algorithm",
        TokenError::NoKid => "token has no key id",
        TokenError::UnknownKey => "unknown signing key",
        TokenError::Signature => "invalid signature",
        TokenError::Expired => "token expired",
        TokenError::NotYetValid => "token not yet valid",
        TokenError::Issuer => "wrong issuer",
        TokenError::Audience => "token is not for this resource",
        TokenError::Revoked => "token revoked",
    }
}

/// The credential of an `Authorization: Bearer` header as sent (surrounding spaces
/// removed), before its format is checked: most requests repeat a token verified before,
/// and a byte-for-byte cache hit makes checking its ~600 bytes again unnecessary.
struct Credential<'a>(&'a [u8]);

impl<'a> Credential<'a> {
    /// The token, if the credential can be one. hyper has already refused control
    /// characters in header values, so what is left to refuse is bytes outside ASCII and
    /// inner spaces.
    fn token(&self) -> Result<&'a str, &'static str> {
        let text = std::str::from_utf8(self.0)
            .ok()
            .filter(|text| text.is_ascii())
            .ok_or("malformed Authorization header")?;
        if text.as_bytes().contains(&b' ') {
            return Err("malformed bearer token");
        }
        Ok(text)
    }
}

/// The bearer credential of the request: `Ok(None)` when there is no Authorization
/// header or it uses another scheme; `Err` for a header that cannot be a usable bearer
/// credential.
fn bearer_credential<H: HeaderView + ?Sized>(
    headers: &H,
) -> Result<Option<Credential<'_>>, &'static str> {
    let mut values = headers.values(&http::header::AUTHORIZATION);
    let Some(bytes) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme is not ours to judge, but never one outside ASCII.
        return if bytes.is_ascii() {
            Ok(None)
        } else {
            Err("malformed Authorization header")
        };
    }
    let start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
    let end = rest
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    match &rest[start..end] {
        [] => Err("empty bearer token"),
        token => Ok(Some(Credential(token))),
    }
}

/// Whether `headers` carries a bearer credential (which is never forwarded upstream).
/// Leading whitespace is skipped and a tab ends the scheme too: an HTTP/2 client can send
/// ` Bearer x`, which an HTTP/1.1 upstream reads as `Bearer x`.
pub(crate) fn is_bearer(value: &http::HeaderValue) -> bool {
    is_bearer_bytes(value.as_bytes())
}

/// [`is_bearer`] for a field value as bytes.
pub(crate) fn is_bearer_bytes(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    bytes
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
        && bytes.get(6).is_none_or(|b| matches!(b, b' ' | b'\t'))
}

pub(crate) use self::identity::{
    apply as apply_identity, is_client_claim, keeps_token, strip_client_claims,
    write_fields as write_identity_fields,
};

#[cfg(test)]
mod tests;
