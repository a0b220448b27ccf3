//! Access-token verification against one snapshot: keys, issuer and revocations.
//!
//! Everything here is built when the snapshot compiles; verifying a token reads only
//! these structures (no I/O, no lock, no call to the control plane). Audience and scopes
//! depend on the proxy and the request, so [`super::ProxyAuth`] checks them on the
//! returned [`Claims`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use portcullis_proto::v1 as pb;
use serde::Deserialize;

use super::identity::IdentityValues;
use super::jwks::{JwksError, KeySet};
use super::paths::Audience;
use super::token_cache::TokenCache;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub(crate) const LEEWAY_SECS: u64 = 60;

/// Why a snapshot's token settings were rejected.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// `jwks_json` is unusable.
    #[error("jwks_json: {0}")]
    Jwks(#[from] JwksError),
    /// A revocation of a kind this data plane cannot enforce. Rejecting the snapshot
    /// (rather than ignoring the entry) keeps a revocation from silently not applying.
    #[error("revocations: unsupported kind {0:?} (expected jti, sub or client_id)")]
    RevocationKind(String),
}

/// Why a presented token was refused. The `Display` text is safe to send to the client
/// as `error_description` and never contains the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// Header `typ` is not `at+jwt` (RFC 9068): an ID token or another JWT.
    #[error("not an access token")]
    NotAccessToken,
    /// `alg` is not ES256/RS256 or not the algorithm of the named key.
    #[error("unsupported or mismatched algorithm")]
    Algorithm,
    /// No `kid` in the header.
    #[error("token has no key id")]
    NoKid,
    /// `kid` names no key in the snapshot's JWKS.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the snapshot's issuer, or no issuer is configured.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` does not name this resource.
    #[error("token is not for this resource")]
    Audience,
    /// The `jti`, subject or client is revoked.
    #[error("token revoked")]
    Revoked,
}

/// The claims a verified token carries that the data plane uses.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// Subject: the user's stable id.
    pub sub: String,
    /// Resources the token is for (RFC 8707); a single string is accepted too.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// Token id, for revocation.
    pub jti: String,
    /// Expiry (Unix seconds): how long a verified token may be answered from the cache.
    pub exp: i64,
    /// Issue time: user and client revocations cover tokens issued up to a cutoff. A
    /// token without one counts as issued at the epoch, so such revocations cover it.
    #[serde(default)]
    pub iat: i64,
    /// The OAuth client the token was issued to.
    #[serde(default)]
    pub client_id: String,
    /// Login name at the upstream identity provider.
    #[serde(default)]
    pub login: String,
    /// Email address.
    #[serde(default)]
    pub email: String,
    /// Groups (or teams) at the identity provider.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Header values for the upstream, built on first use and then shared by every
    /// request that presents this token (the claims are cached with it).
    #[serde(skip)]
    pub(crate) identity_values: OnceLock<IdentityValues>,
    /// `aud`, parsed on first use and then shared the same way ([`Self::audiences`]).
    #[serde(skip)]
    audiences: OnceLock<Box<[Audience]>>,
}

impl Claims {
    /// The audiences a request can match (`aud` values that are `http(s)` URLs), parsed
    /// once per token: a cached token's audience check then only compares.
    pub(crate) fn audiences(&self) -> &[Audience] {
        self.audiences
            .get_or_init(|| self.aud.iter().filter_map(|a| Audience::parse(a)).collect())
    }
}

/// Keys, issuer and revocations of one snapshot.
pub struct Verifier {
    issuer: Box<str>,
    keys: KeySet,
    es256: Validation,
    rs256: Validation,
    revoked_jti: HashSet<Box<str>>,
    /// Subject → tokens issued at or before this instant are revoked.
    revoked_sub: HashMap<Box<str>, i64>,
    /// Client id → tokens issued at or before this instant are revoked.
    revoked_client: HashMap<Box<str>, i64>,
    /// Tokens that passed [`Self::verify`] against exactly these keys and revocations.
    cache: TokenCache,
}

// === impl Verifier ===

impl Verifier {
    /// Builds the verifier for `snapshot` (JWKS, issuer, revocation sets).
    pub fn compile(snapshot: &pb::ConfigSnapshot) -> Result<Self, VerifierError> {
        let keys = KeySet::compile(&snapshot.jwks_json)?;
        let issuer = snapshot.oauth_issuer.trim();
        let mut revoked_jti = HashSet::new();
        let mut revoked_sub = HashMap::new();
        let mut revoked_client = HashMap::new();
        for r in &snapshot.revocations {
            let cutoffs = match r.kind.as_str() {
                "jti" => {
                    revoked_jti.insert(Box::<str>::from(r.value.as_str()));
                    continue;
                }
                "sub" => &mut revoked_sub,
                "client_id" => &mut revoked_client,
                other => return Err(VerifierError::RevocationKind(other.to_owned())),
            };
            // 0 (unset) revokes every token of theirs.
            let cutoff = if r.issued_before == 0 {
                i64::MAX
            } else {
                r.issued_before
            };
            cutoffs.insert(Box::<str>::from(r.value.as_str()), cutoff);
        }
        Ok(Self {
            issuer: issuer.into(),
            keys,
            es256: validation(Algorithm::ES256, issuer),
            rs256: validation(Algorithm::RS256, issuer),
            revoked_jti,
            revoked_sub,
            revoked_client,
            cache: TokenCache::new(),
        })
    }

    /// The issuer tokens must name; also the `authorization_servers` entry of the
    /// protected-resource metadata.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks signature, `typ`, algorithm, issuer, time and revocation; the caller checks
    /// audience and scopes. A token seen before is answered from the cache until it
    /// expires (the same instant the full check would start refusing it).
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let now = SystemTime::now();
        if let Some(claims) = self.cache.get(token.as_bytes(), now) {
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token)?);
        if let Some(refused_from) = refused_from(claims.exp) {
            self.cache.insert(token, refused_from, claims.clone(), now);
        }
        Ok(claims)
    }

    /// The claims of `credential` if it is, byte for byte, a token that passed
    /// [`Self::verify`] and has not expired: the request path's first try, before the
    /// credential is parsed at all.
    pub(crate) fn cached_claims(&self, credential: &[u8]) -> Option<Arc<Claims>> {
        self.cache.get(credential, SystemTime::now())
    }

    /// How many verified tokens the cache holds.
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache.len()
    }

    fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        if self.issuer.is_empty() {
            return Err(TokenError::Issuer);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::NotAccessToken);
        }
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::NoKid)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        if key.alg != header.alg {
            return Err(TokenError::Algorithm);
        }
        let validation = match key.alg {
            Algorithm::RS256 => &self.rs256,
            _ => &self.es256,
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, validation)
            .map_err(|e| token_error(e.kind()))?
            .claims;
        let issued_by = |cutoffs: &HashMap<Box<str>, i64>, key: &str| {
            cutoffs.get(key).is_some_and(|&cutoff| claims.iat <= cutoff)
        };
        if self.revoked_jti.contains(claims.jti.as_str())
            || issued_by(&self.revoked_sub, &claims.sub)
            || issued_by(&self.revoked_client, &claims.client_id)
        {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.len())
            .field("revoked_jti", &self.revoked_jti.len())
            .finish_non_exhaustive()
    }
}

fn validation(alg: Algorithm, issuer: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    // Audience is matched against the request by the caller (resource with path prefix).
    v.validate_aud = false;
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenError::Signature
        }
        _ => TokenError::Malformed,
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The first instant at which the full check refuses a token that expires at `exp` (Unix
/// seconds): jsonwebtoken accepts it while the current second is at most `exp` plus the
/// leeway. `None` when that is not a representable time (the token is then not cached).
fn refused_from(exp: i64) -> Option<SystemTime> {
    let secs = u64::try_from(exp.saturating_add(LEEWAY_SECS as i64 + 1)).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}
