//! `OAuthAdminService`: one line of glue per RPC over [`crate::oauth::admin`].

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{api_caller, ok};
use crate::authenticator::Authenticator;
use crate::error::ServiceError;
use crate::oauth::{self, IdpKind, OAuthServer, admin};

/// The OAuth admin RPCs the CLI uses.
pub struct OAuthAdminApi {
    server: OAuthServer,
    authn: Authenticator,
}

impl OAuthAdminApi {
    /// Wraps the authorization server; callers are identified by `authn`.
    pub fn new(server: OAuthServer, authn: Authenticator) -> Self {
        Self { server, authn }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn idp(v: oauth::IdpView) -> pb::OAuthIdp {
    pb::OAuthIdp {
        name: v.name,
        kind: match v.kind {
            IdpKind::Github => "github".into(),
            IdpKind::Oidc => "oidc".into(),
        },
        client_id: v.client_id,
        client_secret: String::new(),
        base_url: v.base_url,
        api_url: v.api_url,
        scopes: v.scopes,
        created_at: v.created_at,
    }
}

fn rule(r: oauth::LoginRule) -> pb::OAuthRule {
    pb::OAuthRule {
        id: r.id,
        proxy_hostname: r.proxy_hostname.unwrap_or_default(),
        idp: r.idp.unwrap_or_default(),
        users: r.users,
        groups: r.groups,
        email_domains: r.email_domains,
        scopes: r.scopes,
        created_at: r.created_at,
    }
}

fn scope(v: oauth::scopes::ScopeView) -> pb::OAuthScope {
    pb::OAuthScope {
        scope: v.scope,
        description: v.description.unwrap_or_default(),
        source: v.source.into(),
    }
}

fn proxy_settings(v: oauth::ProxyOAuthView) -> pb::OAuthProxySettings {
    pb::OAuthProxySettings {
        hostname: v.hostname,
        idps: v.idps,
        github_client_id: v.github_client_id.unwrap_or_default(),
        metadata_json: serde_json::Value::Object(v.metadata).to_string(),
        updated_at: v.updated_at,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl pb::o_auth_admin_service_server::OAuthAdminService for OAuthAdminApi {
    async fn create_idp(&self, req: Request<pb::OAuthIdp>) -> Reply<pb::OAuthIdp> {
        let c = api_caller(&self.authn, &req).await?;
        let i = req.into_inner();
        let kind = match i.kind.as_str() {
            "github" => IdpKind::Github,
            "oidc" => IdpKind::Oidc,
            other => {
                return Err(ServiceError::invalid(
                    "kind",
                    format!("{other:?}: use \"github\" or \"oidc\""),
                )
                .into());
            }
        };
        let input = oauth::IdpInput {
            name: i.name,
            kind,
            client_id: i.client_id,
            client_secret: i.client_secret,
            base_url: opt(i.base_url),
            api_url: opt(i.api_url),
            scopes: (!i.scopes.is_empty()).then_some(i.scopes),
        };
        ok(idp(admin::create_idp(&self.server, &c, input).await?))
    }

    async fn list_idps(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthIdpList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_idps(&self.server, &c).await?;
        ok(pb::OAuthIdpList {
            items: items.into_iter().map(idp).collect(),
        })
    }

    async fn delete_idp(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::delete_idp(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn create_rule(&self, req: Request<pb::OAuthRule>) -> Reply<pb::OAuthRule> {
        let c = api_caller(&self.authn, &req).await?;
        let r = req.into_inner();
        let input = oauth::LoginRuleInput {
            proxy_hostname: opt(r.proxy_hostname),
            idp: opt(r.idp),
            users: r.users,
            groups: r.groups,
            email_domains: r.email_domains,
            scopes: r.scopes,
        };
        ok(rule(admin::create_rule(&self.server, &c, input).await?))
    }

    async fn list_rules(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthRuleList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_rules(&self.server, &c).await?;
        ok(pb::OAuthRuleList {
            items: items.into_iter().map(rule).collect(),
        })
    }

    async fn delete_rule(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::delete_rule(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn list_scopes(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthScopeList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_scopes(&self.server, &c).await?;
        ok(pb::OAuthScopeList {
            items: items.into_iter().map(scope).collect(),
        })
    }

    async fn set_scope_description(&self, req: Request<pb::OAuthScope>) -> Reply<pb::OAuthScope> {
        let c = api_caller(&self.authn, &req).await?;
        let i = req.get_ref();
        ok(scope(
            admin::set_scope_description(&self.server, &c, &i.scope, &i.description).await?,
        ))
    }

    async fn delete_scope_description(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::delete_scope_description(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn register_client(&self, req: Request<pb::OAuthClient>) -> Reply<pb::OAuthClient> {
        let c = api_caller(&self.authn, &req).await?;
        let i = req.into_inner();
        let m = oauth::clients::ClientMetadata {
            redirect_uris: i.redirect_uris,
            token_endpoint_auth_method: opt(i.token_endpoint_auth_method),
            grant_types: (!i.grant_types.is_empty()).then_some(i.grant_types),
            client_name: opt(i.client_name),
            ..Default::default()
        };
        let r = admin::register_client(&self.server, &c, m).await?;
        ok(pb::OAuthClient {
            client_id: r.client_id,
            client_name: r.client_name.unwrap_or_default(),
            redirect_uris: r.redirect_uris,
            token_endpoint_auth_method: r.token_endpoint_auth_method,
            grant_types: r.grant_types,
            created_at: r.client_id_issued_at,
            client_secret: r.client_secret.unwrap_or_default(),
            registration_access_token: r.registration_access_token.unwrap_or_default(),
        })
    }

    async fn list_clients(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthClientList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_clients(&self.server, &c).await?;
        ok(pb::OAuthClientList {
            items: items
                .into_iter()
                .map(|v| pb::OAuthClient {
                    client_id: v.client_id,
                    client_name: v.client_name.unwrap_or_default(),
                    redirect_uris: v.redirect_uris,
                    token_endpoint_auth_method: v.token_endpoint_auth_method,
                    grant_types: v.grant_types,
                    created_at: v.created_at,
                    ..Default::default()
                })
                .collect(),
        })
    }

    async fn delete_client(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::delete_client(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn list_sessions(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthSessionList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_sessions(&self.server, &c).await?;
        ok(pb::OAuthSessionList {
            items: items
                .into_iter()
                .map(|s| pb::OAuthSession {
                    id: s.id,
                    client_id: s.client_id,
                    sub: s.sub,
                    login: s.login,
                    scopes: s.scopes,
                    resources: s.resources,
                    created_at: s.created_at,
                    refresh_expires_at: s.refresh_expires_at,
                })
                .collect(),
        })
    }

    async fn revoke_session(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::revoke_session(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn revoke_user(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::revoke_user(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn list_consents(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthConsentList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = admin::list_consents(&self.server, &c).await?;
        ok(pb::OAuthConsentList {
            items: items
                .into_iter()
                .map(|x| pb::OAuthConsent {
                    sub: x.sub,
                    client_id: x.client_id,
                    resource: x.resource,
                    scopes: x.scopes,
                    created_at: x.created_at,
                })
                .collect(),
        })
    }

    async fn revoke_consent(&self, req: Request<pb::OAuthConsent>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        let r = req.get_ref();
        admin::revoke_consent(&self.server, &c, &r.sub, &r.client_id).await?;
        ok(pb::Empty {})
    }

    async fn rotate_keys(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthKeyReply> {
        let c = api_caller(&self.authn, &req).await?;
        ok(pb::OAuthKeyReply {
            kid: admin::rotate_keys(&self.server, &c).await?,
        })
    }

    async fn get_metrics(&self, req: Request<pb::Empty>) -> Reply<pb::OAuthMetrics> {
        let c = api_caller(&self.authn, &req).await?;
        let m = admin::metrics(&self.server, &c).await?;
        ok(pb::OAuthMetrics {
            issued: m.issued,
            refreshed: m.refreshed,
            revoked: m.revoked,
            clients: m.clients as u64,
            sessions: m.sessions as u64,
            issuer: self.server.issuer().to_owned(),
        })
    }

    async fn setup(&self, req: Request<pb::OAuthSetupInput>) -> Reply<pb::OAuthSetupReply> {
        let c = api_caller(&self.authn, &req).await?;
        let i = req.get_ref();
        let r = admin::setup(&self.server, &c, &i.hostname, Some(&i.target_url)).await?;
        ok(pb::OAuthSetupReply {
            proxy: Some(r.proxy.into()),
            issuer: r.issuer,
            warning: r.warning.unwrap_or_default(),
        })
    }

    async fn get_proxy_settings(&self, req: Request<pb::ByName>) -> Reply<pb::OAuthProxySettings> {
        let c = api_caller(&self.authn, &req).await?;
        ok(proxy_settings(
            admin::get_proxy_settings(&self.server, &c, &req.get_ref().name).await?,
        ))
    }

    async fn set_proxy_settings(
        &self,
        req: Request<pb::OAuthProxySettings>,
    ) -> Reply<pb::OAuthProxySettings> {
        let c = api_caller(&self.authn, &req).await?;
        let i = req.into_inner();
        let metadata = if i.set_metadata {
            match serde_json::from_str::<serde_json::Value>(&i.metadata_json) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => {
                    return Err(ServiceError::invalid("metadata", "must be a JSON object").into());
                }
            }
        } else {
            None
        };
        let input = oauth::ProxyOAuthInput {
            idps: i.set_idps.then_some(i.idps),
            github_client_id: i.set_github.then_some(i.github_client_id),
            github_client_secret: (i.set_github && !i.github_client_secret.is_empty())
                .then_some(i.github_client_secret),
            metadata,
        };
        ok(proxy_settings(
            admin::set_proxy_settings(&self.server, &c, &i.hostname, input).await?,
        ))
    }

    async fn clear_proxy_settings(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        admin::clear_proxy_settings(&self.server, &c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }
}
