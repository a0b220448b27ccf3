//! How a proxy is protected: its policy, validated from the wire ([`PolicySpec`]) and
//! linked with the snapshot's verifier ([`Policy`]). Phase 2 of every request applies it
//! through [`crate::vhost::admit`].
//!
//! Unprotected proxies admit everything unchanged. Protected proxies verify bearer tokens
//! locally (see [`crate::auth`]) and rewrite the request's identity headers on admission.
//! `redirect` mode proxies log browsers in and keep a sealed session cookie
//! ([`crate::auth::SessionAuth`]); their reserved paths are answered by
//! [`crate::vhost::intercept`] before admission. A protection this data plane cannot
//! enforce (a mode it does not know, or redirect mode without an issuer) fails closed with
//! 503 rather than being served unprotected.

use std::sync::Arc;

use http::header::HeaderName;
use portcullis_proto::v1 as pb;

use crate::auth::{self, AuthSpec, MetadataError, ProxyAuth, SessionAuth, SessionSpec, Verifier};
use crate::spec::InvalidField;

/// How a proxy is protected.
#[derive(Clone, Debug)]
pub(crate) enum Policy {
    /// No protection configured.
    Open,
    /// Bearer tokens verified at the edge (`forward` or `passthrough` mode).
    Protected(Arc<ProxyAuth>),
    /// Protection configured that this data plane cannot enforce: refuse every request.
    Unenforceable,
    /// Browser login and session cookie (`redirect` mode).
    Session(Arc<SessionAuth>),
}

/// A proxy's protection as validated from the wire, before the snapshot's verifier is
/// attached.
#[derive(Debug)]
pub(crate) enum PolicySpec {
    Open,
    Protected(AuthSpec),
    Unenforceable,
    Session(SessionSpec),
}

// === impl Policy ===

impl Policy {
    /// Attaches the snapshot's verifier to a validated spec.
    pub(crate) fn link(spec: &PolicySpec, verifier: &Arc<Verifier>) -> Result<Self, MetadataError> {
        Ok(match spec {
            PolicySpec::Open => Self::Open,
            PolicySpec::Unenforceable => Self::Unenforceable,
            PolicySpec::Protected(auth) => {
                Self::Protected(Arc::new(ProxyAuth::new(auth.clone(), verifier.clone())?))
            }
            PolicySpec::Session(spec) => match SessionAuth::new(spec, verifier.clone()) {
                Some(session) => Self::Session(Arc::new(session)),
                None => Self::Unenforceable,
            },
        })
    }
}

// === impl PolicySpec ===

impl PolicySpec {
    /// Identity header names configured outside the default families, if protected.
    pub(crate) fn configured_identity_headers(&self) -> &[HeaderName] {
        match self {
            Self::Protected(auth) => auth.identity.configured(),
            Self::Session(session) => session.identity().configured(),
            Self::Open | Self::Unenforceable => &[],
        }
    }

    /// Reads the wire policy. Modes this data plane does not enforce become
    /// [`PolicySpec::Unenforceable`] (fail closed for that proxy only); malformed values
    /// are errors naming the field.
    pub(crate) fn from_proto(auth: Option<&pb::ProxyAuthPolicy>) -> Result<Self, InvalidField> {
        let Some(auth) = auth.filter(|a| a.enabled) else {
            return Ok(Self::Open);
        };
        let mode = match auth.mode.as_str() {
            "forward" => auth::Mode::Forward,
            "passthrough" => auth::Mode::Passthrough,
            // Without a key (an older control plane) there is no safe session: fail closed.
            "redirect" if auth.session_key.is_empty() => return Ok(Self::Unenforceable),
            "redirect" => return SessionSpec::from_proto(auth).map(Self::Session),
            _ => return Ok(Self::Unenforceable),
        };
        AuthSpec::from_proto(mode, auth).map(Self::Protected)
    }
}
