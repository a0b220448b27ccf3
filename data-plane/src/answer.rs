//! Answers the data plane gives itself instead of routing a request: refusals (400, 401,
//! 403, 404, 405, 503), documents the policy owns (RFC 9728 metadata), login redirects,
//! and the CORS headers owed to an allowed browser origin. Built by [`crate::auth`] and
//! [`crate::vhost`], turned into responses by the request path; imports nothing of the
//! crate but [`crate::body`].
//!
//! Refusals a person meets in a browser (a page load: [`is_page_load`]) are HTML pages
//! ([`page`]) that say why and offer a way on; every other request keeps its JSON body and
//! `WWW-Authenticate` challenge exactly, since API and MCP clients read those.

mod page;

pub(crate) use page::{Action, Page, is_page_load};

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    HeaderName, LOCATION, VARY, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{self, ProxyBody};

/// Response headers a browser MCP client must be able to read.
const EXPOSED: &str = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate";
/// Methods of the Streamable HTTP and SSE transports.
const METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// How long a browser may cache a preflight answer.
const MAX_AGE_SECS: &str = "600";
/// A request the policy answers itself instead of routing it: a refusal (400, 401, 403,
/// 503) or a document the policy owns (RFC 9728 metadata).
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    content_type: &'static str,
    challenge: Option<HeaderValue>,
    public_document: bool,
    body: Bytes,
    /// Boxed: rare, and keeps `Result<_, Rejection>` small.
    cors: Option<Box<CorsGrant>>,
    /// `Location` and `Set-Cookie` of login redirects; `None` otherwise (boxed to keep
    /// refusals small).
    headers: Option<Box<ExtraHeaders>>,
}

/// Headers a few answers add (`Location`, `Set-Cookie`, …).
#[derive(Debug)]
struct ExtraHeaders(Vec<(HeaderName, HeaderValue)>);

// === impl Rejection ===

impl Rejection {
    pub(crate) fn unavailable() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: authentication is not available\n",
        )
    }

    /// The route forwards to a protected proxy's upstream without its policy.
    pub(crate) fn route_blocked() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: this route targets a protected proxy\n",
        )
    }

    /// A valid session without a scope the route needs (redirect mode: logging in again
    /// would not add it, so no login redirect).
    pub(crate) fn session_lacks_scope() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "insufficient_scope",
            "the session lacks a scope this route requires",
        )
    }

    /// A valid token whose user is not on the proxy's allowlist.
    pub(crate) fn not_allowed() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "access_denied",
            "the user is not allowed to use this resource",
        )
    }

    pub(crate) fn bad_request(why: &'static str) -> Self {
        Self::json_error(StatusCode::BAD_REQUEST, None, "invalid_request", why)
    }

    /// A browser origin outside the proxy's allowlist (DNS-rebinding protection).
    pub(crate) fn origin_refused() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "forbidden",
            "origin not allowed",
        )
    }

    /// A client address outside the proxy's IP allowlist: a page for a browser's page
    /// load (naming the site and the address it came from), JSON otherwise.
    pub(crate) fn client_not_allowed(page: bool, host: &str, client: std::net::IpAddr) -> Self {
        if !page {
            return Self::json_error(
                StatusCode::FORBIDDEN,
                None,
                "access_denied",
                "your address may not reach this site",
            );
        }
        let detail = format!("your address {client} is outside the IP allowlist of {host}");
        Self::page(
            StatusCode::FORBIDDEN,
            &Page {
                title: "Your network is not allowed here",
                lead: "This site only accepts visitors from the networks its administrator \
                       listed. If you should have access, connect from one of them (a VPN, \
                       the office network) and try again, or ask the administrator to add \
                       your network.",
                who: None,
                detail: Some(&detail),
                // An empty reference is this page again.
                actions: &[Action {
                    href: "",
                    label: "Try again",
                    primary: true,
                }],
            },
            vec![],
        )
    }

    /// An HTML page (`page`) with extra headers (cookies to clear).
    pub(crate) fn page(
        status: StatusCode,
        page: &Page<'_>,
        extra: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        let mut headers = page::headers();
        headers.extend(extra);
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            challenge: None,
            public_document: false,
            body: Bytes::from(page.render()),
            cors: None,
            headers: Some(Box::new(ExtraHeaders(headers))),
        }
    }

    /// A JSON refusal (`error`, `error_description`) with extra headers, never cached.
    pub(crate) fn json_with(
        status: StatusCode,
        error: &'static str,
        description: &'static str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        let mut r = Self::json_error(status, None, error, description);
        let mut headers = headers;
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        r.headers = Some(Box::new(ExtraHeaders(headers)));
        r
    }

    /// The answer to an allowed origin's CORS preflight (204, no body).
    pub(crate) fn preflight(grant: CorsGrant) -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: "",
            challenge: None,
            public_document: false,
            body: Bytes::new(),
            cors: Some(Box::new(grant)),
            headers: None,
        }
    }

    /// A request without a session that is not a page load (redirect mode).
    pub(crate) fn login_required() -> Self {
        let mut r = Self::json_error(
            StatusCode::UNAUTHORIZED,
            None,
            "login_required",
            "no valid session; log in at /.portcullis/login",
        );
        r.headers = Some(Box::new(ExtraHeaders(vec![(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Cookie realm=\"portcullis\", login=\"/.portcullis/login\""),
        )])));
        r
    }

    /// A 302 (login, callback, logout) with its cookies; never cached.
    pub(crate) fn redirect(location: HeaderValue, cookies: Vec<(HeaderName, HeaderValue)>) -> Self {
        let mut r = Self::text(StatusCode::FOUND, "");
        let mut headers = cookies;
        headers.push((LOCATION, location));
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        r.headers = Some(Box::new(ExtraHeaders(headers)));
        r
    }

    pub(crate) fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 Not Found\n")
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers = Some(Box::new(ExtraHeaders(vec![(
            ALLOW,
            HeaderValue::from_static(allow),
        )])));
        r
    }

    /// An OAuth error answer with its `WWW-Authenticate` challenge.
    pub(crate) fn auth(
        status: StatusCode,
        challenge: HeaderValue,
        error: &'static str,
        description: &'static str,
    ) -> Self {
        Self::json_error(status, Some(challenge), error, description)
    }

    /// The protected-resource metadata document (200, public, cacheable).
    pub(crate) fn metadata(json: String) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            challenge: None,
            public_document: true,
            body: Bytes::from(json),
            cors: None,
            headers: None,
        }
    }

    fn text(status: StatusCode, body: &'static str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            challenge: None,
            public_document: false,
            body: Bytes::from_static(body.as_bytes()),
            cors: None,
            headers: None,
        }
    }

    fn json_error(
        status: StatusCode,
        challenge: Option<HeaderValue>,
        error: &'static str,
        description: &'static str,
    ) -> Self {
        let body = serde_json::json!({ "error": error, "error_description": description });
        Self {
            status,
            content_type: "application/json",
            challenge,
            public_document: false,
            body: Bytes::from(body.to_string()),
            cors: None,
            headers: None,
        }
    }

    /// Adds the CORS headers owed to an allowed browser origin (edge refusals included,
    /// so a browser client can read the 401 challenge).
    pub(crate) fn with_cors(mut self, cors: Option<CorsGrant>) -> Self {
        self.cors = cors.map(Box::new);
        self
    }

    /// Status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `WWW-Authenticate` challenge, for refusals by edge auth.
    pub fn challenge(&self) -> Option<&HeaderValue> {
        self.challenge.as_ref()
    }

    /// The body sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The full response.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let has_challenge = self.challenge.is_some();
        let mut response = Response::new(body::full(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if !self.content_type.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if self.public_document {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if has_challenge {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some(cors) = &self.cors {
            cors.apply(headers);
        }
        for (name, value) in self.headers.map(|h| h.0).unwrap_or_default() {
            headers.append(name, value);
        }
        response
    }
}

/// CORS headers for one allowed origin.
#[derive(Debug, Clone)]
pub(crate) struct CorsGrant {
    origin: HeaderValue,
    /// For preflights: the request headers the browser asked for, mirrored.
    preflight_headers: Option<Option<HeaderValue>>,
}

// === impl CorsGrant ===

impl CorsGrant {
    /// The grant for `origin`; `preflight_headers` is `Some` for a preflight, holding the
    /// request headers the browser asked for.
    pub(crate) fn new(origin: HeaderValue, preflight_headers: Option<Option<HeaderValue>>) -> Self {
        Self {
            origin,
            preflight_headers,
        }
    }

    /// Adds the CORS headers to an answer for this origin.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin.clone());
        headers.append(VARY, HeaderValue::from_static("Origin"));
        match &self.preflight_headers {
            None => {
                headers.insert(
                    ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSED),
                );
            }
            Some(requested) => {
                headers.insert(
                    ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(METHODS),
                );
                if let Some(requested) = requested {
                    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
                }
                headers.insert(
                    ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static(MAX_AGE_SECS),
                );
            }
        }
    }
}
