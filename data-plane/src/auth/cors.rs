//! Browser access to a protected proxy: the `Origin` allowlist and CORS.
//!
//! The MCP Streamable HTTP transport requires servers to validate `Origin` against DNS
//! rebinding: a page on another site, or on a name rebound to this proxy, must not drive
//! the endpoint from a victim's browser. With an allowlist configured, a request whose
//! `Origin` is present and not listed is refused (403); listed origins get CORS headers
//! on every answer (edge refusals included, so a browser client can read the 401
//! challenge) and their preflights are answered here, before auth, because preflights
//! never carry a token. Requests without `Origin` (non-browser clients) are unaffected.
//! Without an allowlist nothing here applies.

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, Method};

use crate::answer::CorsGrant;

/// Longest origin accepted in the snapshot.
const MAX_ORIGIN_LEN: usize = 512;

/// Why an allowed origin from the snapshot was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an origin like https://app.example.com[:port]")]
pub(crate) struct OriginError(String);

/// The origins allowed to call one proxy from a browser; empty = no check, no CORS.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedOrigins {
    /// Lowercase `scheme://host[:port]`.
    origins: Box<[Box<str>]>,
}

/// What the allowlist decided for one request.
#[derive(Debug)]
pub(crate) enum Decision {
    /// No allowlist, or no `Origin` header: nothing to add.
    None,
    /// A listed origin: add [`CorsGrant`]'s headers to the answer.
    Allowed(CorsGrant),
    /// A listed origin's preflight: answer it here with [`CorsGrant`]'s headers.
    Preflight(CorsGrant),
    /// `Origin` present and not listed.
    Refused,
}

// === impl AllowedOrigins ===

impl AllowedOrigins {
    /// Validates the wire list (the control plane normalises; this re-checks the shape).
    pub(crate) fn parse(raw: &[String]) -> Result<Self, OriginError> {
        let mut origins = Vec::with_capacity(raw.len());
        for o in raw {
            let lower = o.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            let ok = o.len() <= MAX_ORIGIN_LEN
                && rest.is_some_and(|r| {
                    !r.is_empty()
                        && r.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                        })
                });
            if !ok {
                return Err(OriginError(o.clone()));
            }
            origins.push(lower.into_boxed_str());
        }
        Ok(Self {
            origins: origins.into(),
        })
    }

    /// Decides a request by its `Origin` header and, for preflights, its method.
    pub(crate) fn decide(&self, method: &Method, headers: &HeaderMap) -> Decision {
        if self.origins.is_empty() {
            return Decision::None;
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Decision::None;
        };
        let listed = self
            .origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()));
        if !listed {
            return Decision::Refused;
        }
        let preflight =
            method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let grant = CorsGrant::new(
            origin.clone(),
            preflight.then(|| headers.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned()),
        );
        if preflight {
            Decision::Preflight(grant)
        } else {
            Decision::Allowed(grant)
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::{ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN};

    use super::*;

    fn allowed() -> AllowedOrigins {
        AllowedOrigins::parse(&["https://app.example".into(), "http://localhost:6274".into()])
            .unwrap_or_default()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn origins_decide_requests() {
        let a = allowed();
        assert!(matches!(
            a.decide(&Method::POST, &headers(&[])),
            Decision::None
        ));
        assert!(matches!(
            a.decide(
                &Method::POST,
                &headers(&[("origin", "https://evil.example")])
            ),
            Decision::Refused
        ));
        assert!(matches!(
            a.decide(&Method::POST, &headers(&[("origin", "null")])),
            Decision::Refused
        ));
        assert!(matches!(
            a.decide(
                &Method::POST,
                &headers(&[("origin", "HTTP://localhost:6274")])
            ),
            Decision::Allowed(_)
        ));
        // Same host, other port: another origin.
        assert!(matches!(
            a.decide(
                &Method::POST,
                &headers(&[("origin", "http://localhost:6275")])
            ),
            Decision::Refused
        ));
        let pre = headers(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, mcp-session-id",
            ),
        ]);
        let Decision::Preflight(grant) = a.decide(&Method::OPTIONS, &pre) else {
            panic!("not a preflight")
        };
        let mut out = HeaderMap::new();
        grant.apply(&mut out);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, mcp-session-id"
        );
        // Without an allowlist nothing applies, whatever the Origin.
        assert!(matches!(
            AllowedOrigins::default().decide(&Method::POST, &headers(&[("origin", "https://x")])),
            Decision::None
        ));
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "*",
            "app.example",
            "https://a.example/path",
            "ftp://a",
            "https://",
        ] {
            assert!(AllowedOrigins::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
