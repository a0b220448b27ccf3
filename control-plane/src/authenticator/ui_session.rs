//! Browser sessions of the web console: an opaque cookie standing for a bearer credential.
//!
//! Signing in (`POST /ui/session`) checks a credential as a bearer token would be checked,
//! then keeps it *in this process's memory* under a random 256-bit session id; the browser
//! gets only that id, in an HttpOnly, SameSite=Lax cookie (`__Host-portcullis-ui`, Secure,
//! when the control plane is published over HTTPS — see [`UiSessions::new`]). Each request
//! authenticates the kept credential again, so deleting the API token (or the expiry of an
//! OAuth access token) ends the session at once.
//!
//! Writes need a second secret: the session's CSRF token, which only a page of this origin
//! can read (`GET /ui/session`) and must send back as `X-CSRF-Token`; compared in constant
//! time. GET/HEAD/OPTIONS need none (they change nothing).
//!
//! Invariants and costs: the map is keyed by the SHA-256 of the session id (the id itself
//! is never kept), holds at most [`MAX_SESSIONS`] entries (the oldest is dropped first), and
//! each session lives [`LIFETIME`] from sign-in. Sessions are per process: a restart signs
//! everyone out, and control planes sharing Redis need sticky sessions for the console.
//! Credentials are never written to disk or logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Sessions kept at most; one more evicts the one closest to expiry.
pub const MAX_SESSIONS: usize = 10_000;
/// How long a session lives after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The CSRF header writes carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// One signed-in browser.
struct Session {
    /// The bearer credential the session stands for (kept in memory only).
    secret: String,
    /// Per-session CSRF token (random, base64url).
    csrf: String,
    expires: Instant,
}

/// What a session cookie resolves to for a request.
pub enum SessionAuth {
    /// The credential to authenticate (and the CSRF token, for `GET /ui/session`).
    Ok {
        /// Bearer credential.
        secret: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// Unknown or expired session.
    Unknown,
    /// A write without the matching CSRF header.
    CsrfMismatch,
}

/// The console's sessions, shared by every adapter. Cheap to clone.
#[derive(Clone)]
pub struct UiSessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Session>>>,
    secure: bool,
}

impl UiSessions {
    /// `secure` when browsers reach the control plane over HTTPS (its OAuth issuer is
    /// `https://…`): the cookie is then `__Host-portcullis-ui` with `Secure`. On a plain-http
    /// install a `__Host-` cookie cannot be set, so it is `portcullis-ui` without `Secure`.
    pub fn new(secure: bool) -> Self {
        Self {
            inner: Arc::default(),
            secure,
        }
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-portcullis-ui"
        } else {
            "portcullis-ui"
        }
    }

    /// `Set-Cookie` value carrying `id` (empty + Max-Age=0 clears it).
    pub fn set_cookie(&self, id: &str) -> String {
        let max_age = if id.is_empty() { 0 } else { LIFETIME.as_secs() };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie_name()
        )
    }

    /// Starts a session for an already authenticated `secret`; returns (session id, CSRF).
    pub fn create(&self, secret: String) -> (String, String) {
        let id = random();
        let csrf = random();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&id),
            Session {
                secret,
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// Ends the session `id` (no-op if unknown).
    pub fn remove(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Resolves a session id; `csrf` is the request's header, required unless `safe`.
    pub fn resolve(&self, id: &str, csrf: Option<&str>, safe: bool) -> SessionAuth {
        let map = self.lock();
        let Some(s) = map.get(&key(id)).filter(|s| s.expires > Instant::now()) else {
            return SessionAuth::Unknown;
        };
        if !safe {
            let ok = csrf.is_some_and(|c| bool::from(c.as_bytes().ct_eq(s.csrf.as_bytes())));
            if !ok {
                return SessionAuth::CsrfMismatch;
            }
        }
        SessionAuth::Ok {
            secret: s.secret.clone(),
            csrf: s.csrf.clone(),
        }
    }

    /// The session id in a `Cookie` header, if any.
    pub fn cookie_value<'h>(&self, cookie_header: &'h str) -> Option<&'h str> {
        let name = self.cookie_name();
        cookie_header.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock cannot leave the map half-written (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_the_sessions_csrf_token_and_removed_sessions_are_unknown() {
        let s = UiSessions::new(false);
        let (id, csrf) = s.create("pcs_secret".into());
        assert!(matches!(s.resolve(&id, None, true), SessionAuth::Ok { .. }));
        assert!(matches!(
            s.resolve(&id, None, false),
            SessionAuth::CsrfMismatch
        ));
        assert!(matches!(
            s.resolve(&id, Some("nope"), false),
            SessionAuth::CsrfMismatch
        ));
        match s.resolve(&id, Some(&csrf), false) {
            SessionAuth::Ok { secret, .. } => assert_eq!(secret, "pcs_secret"),
            _ => panic!("the right CSRF token is accepted"),
        }
        assert!(matches!(
            s.resolve("other", None, true),
            SessionAuth::Unknown
        ));
        s.remove(&id);
        assert!(matches!(s.resolve(&id, None, true), SessionAuth::Unknown));
    }

    #[test]
    fn cookie_names_and_attributes_follow_the_scheme() {
        let plain = UiSessions::new(false);
        assert_eq!(
            plain.set_cookie("abc"),
            "portcullis-ui=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200"
        );
        let tls = UiSessions::new(true);
        assert!(
            tls.set_cookie("abc")
                .starts_with("__Host-portcullis-ui=abc; Path=/;")
        );
        assert!(tls.set_cookie("").ends_with("Max-Age=0; Secure"));
        assert_eq!(
            tls.cookie_value("a=1; __Host-portcullis-ui=xyz"),
            Some("xyz")
        );
        assert_eq!(tls.cookie_value("portcullis-ui=xyz"), None);
    }
}
