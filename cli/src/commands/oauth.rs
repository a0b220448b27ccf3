//! `oauth …`: thin calls to the OAuthAdminService; JSON output mirrors the wire messages.

use portcullis_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Ctx, ReplyExt};
use crate::args::OAuthCommand;
use crate::args::oauth::{
    ClientCommand, ConsentCommand, IdpCommand, ProxySettingsCommand, RuleCommand, ScopeCommand,
    SessionCommand,
};
use crate::error::CliError;

fn idp_json(i: &pb::OAuthIdp) -> Value {
    json!({"name": i.name, "kind": i.kind, "client_id": i.client_id, "base_url": i.base_url,
           "api_url": i.api_url, "scopes": i.scopes, "created_at": i.created_at})
}

fn rule_json(r: &pb::OAuthRule) -> Value {
    json!({"id": r.id, "proxy_hostname": r.proxy_hostname, "idp": r.idp, "users": r.users,
           "groups": r.groups, "email_domains": r.email_domains, "scopes": r.scopes,
           "created_at": r.created_at})
}

fn scope_json(s: &pb::OAuthScope) -> Value {
    json!({"scope": s.scope, "description": (!s.description.is_empty()).then_some(&s.description),
           "source": s.source})
}

fn client_json(c: &pb::OAuthClient) -> Value {
    let mut v = json!({"client_id": c.client_id, "client_name": c.client_name,
           "redirect_uris": c.redirect_uris, "token_endpoint_auth_method": c.token_endpoint_auth_method,
           "grant_types": c.grant_types, "created_at": c.created_at});
    if !c.client_secret.is_empty() {
        v["client_secret"] = c.client_secret.clone().into();
    }
    if !c.registration_access_token.is_empty() {
        v["registration_access_token"] = c.registration_access_token.clone().into();
    }
    v
}

fn lines<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.iter().map(f).collect::<Vec<_>>().join("\n")
    }
}

/// Runs one `oauth` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: OAuthCommand) -> Result<(), CliError> {
    let c = &mut ctx.oauth;
    let call = &ctx.call;
    let out = &ctx.out;
    match cmd {
        OAuthCommand::Setup { hostname, target } => {
            let r = c
                .setup(pb::OAuthSetupInput {
                    hostname,
                    target_url: target.unwrap_or_default(),
                })
                .await
                .reply(call)?;
            let host = r
                .proxy
                .as_ref()
                .map(|p| p.hostname.clone())
                .unwrap_or_default();
            let target = r
                .proxy
                .as_ref()
                .map(|p| p.target_url.clone())
                .unwrap_or_default();
            out.emit(
                &json!({"hostname": host, "target_url": target, "issuer": r.issuer, "warning": r.warning}),
                || {
                    let mut s = format!("OAuth endpoints published at https://{host} -> {target}\nissuer: {}", r.issuer);
                    if !r.warning.is_empty() {
                        s.push_str(&format!("\nwarning: {}", r.warning));
                    }
                    s
                },
            )
        }
        OAuthCommand::Idp(IdpCommand::Add(a)) => {
            let i = c
                .create_idp(pb::OAuthIdp {
                    name: a.name,
                    kind: a.kind,
                    client_id: a.client_id,
                    client_secret: a
                        .client_secret
                        .or(a.client_secret_file)
                        .map(|s| s.expose().to_owned())
                        .unwrap_or_default(),
                    base_url: a.base_url.unwrap_or_default(),
                    api_url: a.api_url.unwrap_or_default(),
                    scopes: a.scopes,
                    created_at: 0,
                })
                .await
                .reply(call)?;
            out.emit(&idp_json(&i), || {
                format!("added {} provider {} ({})", i.kind, i.name, i.base_url)
            })
        }
        OAuthCommand::Idp(IdpCommand::List) => {
            let l = c.list_idps(pb::Empty {}).await.reply(call)?;
            out.emit(
                &json!({"items": l.items.iter().map(idp_json).collect::<Vec<_>>()}),
                || {
                    lines(&l.items, |i| {
                        format!("{}\t{}\t{}\t{}", i.name, i.kind, i.client_id, i.base_url)
                    })
                },
            )
        }
        OAuthCommand::Idp(IdpCommand::Delete { name }) => {
            c.delete_idp(pb::ByName {
                name: name.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("deleted provider {name}"))
        }
        OAuthCommand::Rule(RuleCommand::Add(a)) => {
            let r = c
                .create_rule(pb::OAuthRule {
                    proxy_hostname: a.proxy.unwrap_or_default(),
                    idp: a.idp.unwrap_or_default(),
                    users: a.users,
                    groups: a.groups,
                    email_domains: a.email_domains,
                    scopes: a.scopes,
                    ..Default::default()
                })
                .await
                .reply(call)?;
            out.emit(&rule_json(&r), || format!("added rule {}", r.id))
        }
        OAuthCommand::Rule(RuleCommand::List) => {
            let l = c.list_rules(pb::Empty {}).await.reply(call)?;
            out.emit(
                &json!({"items": l.items.iter().map(rule_json).collect::<Vec<_>>()}),
                || {
                    lines(&l.items, |r| {
                        format!(
                            "{}\tproxy={}\tusers={}\tgroups={}\tdomains={}\tscopes={}",
                            r.id,
                            if r.proxy_hostname.is_empty() {
                                "*"
                            } else {
                                &r.proxy_hostname
                            },
                            r.users.join(","),
                            r.groups.join(","),
                            r.email_domains.join(","),
                            r.scopes.join(",")
                        )
                    })
                },
            )
        }
        OAuthCommand::Scope(ScopeCommand::List) => {
            let l = c.list_scopes(pb::Empty {}).await.reply(call)?;
            out.emit(
                &json!({"items": l.items.iter().map(scope_json).collect::<Vec<_>>()}),
                || {
                    lines(&l.items, |s| {
                        format!("{}\t{}\t{}", s.scope, s.source, s.description)
                    })
                },
            )
        }
        OAuthCommand::Scope(ScopeCommand::Set { scope, description }) => {
            let s = c
                .set_scope_description(pb::OAuthScope {
                    scope,
                    description,
                    ..Default::default()
                })
                .await
                .reply(call)?;
            out.emit(&scope_json(&s), || {
                format!("scope {}: {}", s.scope, s.description)
            })
        }
        OAuthCommand::Scope(ScopeCommand::Delete { scope }) => {
            c.delete_scope_description(pb::ByName {
                name: scope.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("removed the description of {scope}"))
        }
        OAuthCommand::Rule(RuleCommand::Delete { id }) => {
            c.delete_rule(pb::ByName {
                name: id.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("deleted rule {id}"))
        }
        OAuthCommand::Client(ClientCommand::Register {
            redirect_uris,
            name,
            public,
            grants,
        }) => {
            let grants = if grants.is_empty() {
                vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
            } else {
                grants
            };
            let r = c
                .register_client(pb::OAuthClient {
                    client_name: name.unwrap_or_default(),
                    redirect_uris,
                    token_endpoint_auth_method: if public { "none".into() } else { String::new() },
                    grant_types: grants,
                    ..Default::default()
                })
                .await
                .reply(call)?;
            out.emit(&client_json(&r), || {
                let mut s = format!("client_id: {}", r.client_id);
                if !r.client_secret.is_empty() {
                    s.push_str(&format!(
                        "\nclient_secret (shown once): {}",
                        r.client_secret
                    ));
                }
                s
            })
        }
        OAuthCommand::Client(ClientCommand::List) => {
            let l = c.list_clients(pb::Empty {}).await.reply(call)?;
            out.emit(
                &json!({"items": l.items.iter().map(client_json).collect::<Vec<_>>()}),
                || {
                    lines(&l.items, |x| {
                        format!(
                            "{}\t{}\t{}\t{}",
                            x.client_id,
                            x.client_name,
                            x.token_endpoint_auth_method,
                            x.redirect_uris.join(",")
                        )
                    })
                },
            )
        }
        OAuthCommand::Client(ClientCommand::Delete { client_id }) => {
            c.delete_client(pb::ByName {
                name: client_id.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("deleted client {client_id}"))
        }
        OAuthCommand::Session(SessionCommand::List) => {
            let l = c.list_sessions(pb::Empty {}).await.reply(call)?;
            let items: Vec<Value> = l
                .items
                .iter()
                .map(|s| json!({"id": s.id, "client_id": s.client_id, "sub": s.sub, "login": s.login,
                                 "scopes": s.scopes, "resources": s.resources, "created_at": s.created_at,
                                 "refresh_expires_at": s.refresh_expires_at}))
                .collect();
            out.emit(&json!({"items": items}), || {
                lines(&l.items, |s| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        s.id,
                        s.login,
                        s.client_id,
                        s.scopes.join(" ")
                    )
                })
            })
        }
        OAuthCommand::Session(SessionCommand::Revoke { id }) => {
            c.revoke_session(pb::ByName {
                name: id.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("revoked session {id}"))
        }
        OAuthCommand::Session(SessionCommand::RevokeUser { sub }) => {
            c.revoke_user(pb::ByName {
                name: sub.clone(),
                force: false,
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || format!("revoked every session of {sub}"))
        }
        OAuthCommand::Consent(ConsentCommand::List) => {
            let l = c.list_consents(pb::Empty {}).await.reply(call)?;
            let items: Vec<Value> = l
                .items
                .iter()
                .map(|x| json!({"sub": x.sub, "client_id": x.client_id, "resource": x.resource, "scopes": x.scopes, "created_at": x.created_at}))
                .collect();
            out.emit(&json!({"items": items}), || {
                lines(&l.items, |x| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        x.sub,
                        x.client_id,
                        x.resource,
                        x.scopes.join(" ")
                    )
                })
            })
        }
        OAuthCommand::Consent(ConsentCommand::Revoke { sub, client_id }) => {
            c.revoke_consent(pb::OAuthConsent {
                sub: sub.clone(),
                client_id: client_id.clone(),
                ..Default::default()
            })
            .await
            .reply(call)?;
            out.emit(&json!({}), || {
                format!("revoked consent of {sub} for {client_id}")
            })
        }
        OAuthCommand::Proxy(cmd) => {
            let r = match cmd {
                ProxySettingsCommand::Show { hostname } => c
                    .get_proxy_settings(pb::ByName {
                        name: hostname,
                        force: false,
                    })
                    .await
                    .reply(call)?,
                ProxySettingsCommand::Set(a) => {
                    let secret = a
                        .github_client_secret
                        .or(a.github_client_secret_file)
                        .map(|s| s.expose().to_owned());
                    c.set_proxy_settings(pb::OAuthProxySettings {
                        hostname: a.hostname,
                        set_idps: !a.idps.is_empty() || a.all_idps,
                        idps: a.idps,
                        set_github: a.github_client_id.is_some() || a.no_github,
                        github_client_id: a.github_client_id.unwrap_or_default(),
                        github_client_secret: secret.unwrap_or_default(),
                        set_metadata: a.metadata_json.is_some() || a.clear_metadata,
                        metadata_json: a.metadata_json.unwrap_or_else(|| "{}".into()),
                        updated_at: 0,
                    })
                    .await
                    .reply(call)?
                }
                ProxySettingsCommand::Clear { hostname } => {
                    c.clear_proxy_settings(pb::ByName {
                        name: hostname.clone(),
                        force: false,
                    })
                    .await
                    .reply(call)?;
                    return out.emit(&json!({}), || {
                        format!("cleared OAuth settings of {hostname}")
                    });
                }
            };
            let metadata: Value = serde_json::from_str(&r.metadata_json).unwrap_or(json!({}));
            out.emit(
                &json!({"hostname": r.hostname, "idps": r.idps, "github_client_id": r.github_client_id,
                        "metadata": metadata, "updated_at": r.updated_at}),
                || {
                    format!(
                        "hostname: {}\nidps: {}\ngithub app: {}\nmetadata overrides: {}",
                        r.hostname,
                        if r.idps.is_empty() { "(all)".into() } else { r.idps.join(", ") },
                        if r.github_client_id.is_empty() { "(provider default)" } else { &r.github_client_id },
                        metadata
                    )
                },
            )
        }
        OAuthCommand::RotateKeys => {
            let r = c.rotate_keys(pb::Empty {}).await.reply(call)?;
            out.emit(&json!({"kid": r.kid}), || {
                format!("new signing key {}", r.kid)
            })
        }
        OAuthCommand::Metrics => {
            let m = c.get_metrics(pb::Empty {}).await.reply(call)?;
            out.emit(
                &json!({"issuer": m.issuer, "issued": m.issued, "refreshed": m.refreshed,
                        "revoked": m.revoked, "clients": m.clients, "sessions": m.sessions}),
                || {
                    format!(
                        "issuer: {}\nissued: {}\nrefreshed: {}\nrevoked: {}\nclients: {}\nsessions: {}",
                        m.issuer, m.issued, m.refreshed, m.revoked, m.clients, m.sessions
                    )
                },
            )
        }
    }
}
