//! `/verify`: a ForwardAuth endpoint for proxies that delegate the token check (nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`).
//!
//! The fronting proxy sends the client's `Authorization` header and tells us which site the
//! request was for (`X-Forwarded-Proto`/`-Host`/`-Uri`, or nginx's `X-Original-URL`). The
//! token must be ours, live, and issued for that site. Identity comes back in
//! oauth2-proxy-compatible `X-Auth-Request-*` headers.

use super::params::canonical_resource;
use super::token::{AccessClaims, verify_access_token};
use super::{ErrorCode, OAuthError, OAuthServer};

/// The site a forwarded request was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// `https` or `http`.
    pub proto: String,
    /// Host (with port when not default).
    pub host: String,
    /// Path of the original request.
    pub path: String,
}

impl Forwarded {
    /// Where the protected resource metadata of this site lives.
    pub fn resource_metadata_url(&self) -> String {
        format!(
            "{}://{}/.well-known/oauth-protected-resource",
            self.proto, self.host
        )
    }
}

/// Parses the forwarding headers (already extracted as strings).
pub fn forwarded(
    proto: Option<&str>,
    host: Option<&str>,
    uri: Option<&str>,
    original_url: Option<&str>,
) -> Result<Forwarded, OAuthError> {
    if let Some(orig) = original_url.filter(|o| !o.is_empty()) {
        let u = url::Url::parse(orig)
            .map_err(|_| OAuthError::invalid_request("X-Original-URL must be an absolute URL"))?;
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Err(OAuthError::invalid_request("X-Original-URL has no host")),
        };
        return Ok(Forwarded {
            proto: u.scheme().to_owned(),
            host,
            path: u.path().to_owned(),
        });
    }
    let host = host
        .map(|h| h.split(',').next().unwrap_or("").trim())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            OAuthError::invalid_request(
                "the fronting proxy must send X-Forwarded-Host (or X-Original-URL) so the token's audience can be checked",
            )
        })?;
    let proto = proto
        .map(|p| {
            p.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "https".into());
    let path = uri
        .and_then(|u| u.split('?').next())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    Ok(Forwarded {
        proto,
        host: host.to_owned(),
        path: path.to_owned(),
    })
}

/// Whether `aud` covers a request to `site`: the origin itself, or an audience whose path is
/// a prefix (by segments) of the request path.
pub fn audience_covers(aud: &[String], site: &Forwarded) -> bool {
    let Ok((origin, _)) = canonical_resource(&format!("{}://{}", site.proto, site.host)) else {
        return false;
    };
    aud.iter().any(|a| {
        a == &origin
            || a.strip_prefix(origin.as_str()).is_some_and(|rest| {
                rest.starts_with('/')
                    && (site.path == rest
                        || site
                            .path
                            .strip_prefix(rest)
                            .is_some_and(|tail| tail.starts_with('/')))
            })
    })
}

/// Why `/verify` refused.
#[derive(Debug)]
pub enum Refusal {
    /// 401: no token, or not a valid one for this site.
    Unauthorized(Option<OAuthError>),
    /// 403: valid token without the required scopes.
    InsufficientScope(String),
}

/// Checks the bearer token for `site`; `required` scopes must all be granted.
pub async fn verify(
    server: &OAuthServer,
    bearer: Option<&str>,
    site: &Forwarded,
    required: &[String],
) -> Result<AccessClaims, Refusal> {
    let token = bearer.ok_or(Refusal::Unauthorized(None))?;
    let claims = verify_access_token(server, token)
        .await
        .map_err(|e| Refusal::Unauthorized(Some(e)))?;
    if !audience_covers(&claims.aud, site) {
        return Err(Refusal::Unauthorized(Some(OAuthError::new(
            ErrorCode::InvalidToken,
            "the token was not issued for this resource",
        ))));
    }
    let granted: Vec<&str> = claims.scope.split(' ').collect();
    let missing: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|s| !granted.contains(s))
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::InsufficientScope(required.join(" ")));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(proto: &str, host: &str, path: &str) -> Forwarded {
        Forwarded {
            proto: proto.into(),
            host: host.into(),
            path: path.into(),
        }
    }

    #[test]
    fn audiences_match_origin_or_path_prefix() {
        let aud = vec!["https://mcp.example.com/mcp".to_owned()];
        assert!(audience_covers(
            &aud,
            &site("https", "mcp.example.com", "/mcp")
        ));
        assert!(audience_covers(
            &aud,
            &site("https", "mcp.example.com", "/mcp/x")
        ));
        assert!(!audience_covers(
            &aud,
            &site("https", "mcp.example.com", "/mcpx")
        ));
        assert!(!audience_covers(
            &aud,
            &site("https", "mcp.example.com", "/")
        ));
        assert!(!audience_covers(
            &aud,
            &site("https", "other.example.com", "/mcp")
        ));
        let origin = vec!["https://app.example.com".to_owned()];
        assert!(audience_covers(
            &origin,
            &site("https", "APP.example.com:443", "/any")
        ));
        assert!(!audience_covers(
            &origin,
            &site("http", "app.example.com", "/any")
        ));
    }

    #[test]
    fn forwarded_headers_are_required() {
        assert!(forwarded(None, None, None, None).is_err());
        let f = forwarded(Some("http"), Some("a.localhost:8080"), Some("/x?y=1"), None).unwrap();
        assert_eq!(f, site("http", "a.localhost:8080", "/x"));
        let f = forwarded(None, None, None, Some("https://b.example.com/p/q?z")).unwrap();
        assert_eq!(f, site("https", "b.example.com", "/p/q"));
    }
}
