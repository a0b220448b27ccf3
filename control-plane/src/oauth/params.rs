//! Request parameter rules shared by the endpoints: resource indicators (RFC 8707), PKCE
//! (RFC 7636), the scopes this server knows and the grant type names. Imports no endpoint
//! module, so every endpoint can use it.

use base64::Engine as _;
use sha2::Digest as _;

use super::{BASE_SCOPES, ErrorCode, LoginRule, OAuthError, OAuthServer};
use crate::auth::hashes_equal;
use crate::store::Collection;

/// The device grant's type URN (RFC 8628 §3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Canonical form of a resource indicator: lowercase scheme and host, no default port, no
/// trailing slash (so `https://host` and `https://host/` are one audience).
pub fn canonical_resource(raw: &str) -> Result<(String, String), OAuthError> {
    let bad =
        |why: &str| OAuthError::new(ErrorCode::InvalidTarget, format!("resource {raw:?}: {why}"));
    let url = url::Url::parse(raw).map_err(|_| bad("is not an absolute URI"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("must be an http(s) URI"));
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("has no host"))?
        .to_ascii_lowercase();
    let mut out = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = url.path().trim_end_matches('/');
    out.push_str(path);
    Ok((out, host))
}

pub(crate) fn valid_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Every scope this server can grant: the base set plus those named in login rules.
pub async fn known_scopes(server: &OAuthServer) -> Result<Vec<String>, OAuthError> {
    let rules: Vec<LoginRule> = server.list(Collection::OAuthRules).await?;
    let mut out: Vec<String> = BASE_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    for s in rules.into_iter().flat_map(|r| r.scopes) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !valid_pkce_value(verifier) {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    hashes_equal(&computed, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_canonical() {
        assert_eq!(
            canonical_resource("https://MCP.example.com/").unwrap().0,
            "https://mcp.example.com"
        );
        assert_eq!(
            canonical_resource("https://mcp.example.com").unwrap().0,
            "https://mcp.example.com"
        );
        assert_eq!(
            canonical_resource("https://mcp.example.com:443/mcp/")
                .unwrap()
                .0,
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonical_resource("http://a.localhost:8080/x").unwrap().0,
            "http://a.localhost:8080/x"
        );
        assert!(canonical_resource("https://a.example.com/?q=1").is_err());
        assert!(canonical_resource("urn:x").is_err());
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
