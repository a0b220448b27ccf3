//! Plain-HTTP answers that belong to automatic HTTPS: ACME HTTP-01 challenge responses
//! and the 308 redirect to `https://`.

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};

use super::host::RequestHost;
use crate::body::{self, ProxyBody};
use crate::tls::{AcmeChallenges, http01_token};

/// The default HTTPS port, left out of redirect URLs.
const HTTPS_DEFAULT_PORT: u16 = 443;

/// The answer to an ACME HTTP-01 request (`GET`/`HEAD` under
/// `/.well-known/acme-challenge/`): 200 with the key authorization for a known token,
/// 404 otherwise. `None` for every other request, which then goes through host lookup.
/// The path belongs to the data plane on the HTTP listener, whatever the Host.
pub(crate) fn acme_http01<B>(
    challenges: &AcmeChallenges,
    req: &Request<B>,
) -> Option<Response<ProxyBody>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let token = http01_token(req.uri().path())?;
    let (status, body) = match challenges.http01(token) {
        Some(key_authorization) => (StatusCode::OK, body::full(key_authorization.clone())),
        None => (
            StatusCode::NOT_FOUND,
            body::full("404 Not Found: unknown ACME challenge\n"),
        ),
    };
    Some(text(status, body))
}

/// 308 Permanent Redirect to the same host and path over HTTPS. 308 (not 301) so the
/// method and body are kept.
pub(crate) fn redirect(host: &RequestHost, uri: &Uri, https_port: u16) -> Response<ProxyBody> {
    match redirect_location(host.name(), https_port, uri) {
        Some(location) => {
            let mut response = text(
                StatusCode::PERMANENT_REDIRECT,
                body::full("308 Permanent Redirect\n"),
            );
            response.headers_mut().insert(LOCATION, location);
            response
        }
        None => text(
            StatusCode::BAD_REQUEST,
            body::full("400 Bad Request: invalid request target\n"),
        ),
    }
}

/// `https://{host}[:{port}]{path_and_query}`: the normalised host (lowercase, request
/// port dropped), the HTTPS port only when it is not 443, and the request's path and
/// query unchanged. A request without an origin-form path (`OPTIONS *`) goes to `/`.
pub(crate) fn redirect_location(host: &str, https_port: u16, uri: &Uri) -> Option<HeaderValue> {
    let path = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    let location = if https_port == HTTPS_DEFAULT_PORT {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    HeaderValue::try_from(location).ok()
}

fn text(status: StatusCode, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
