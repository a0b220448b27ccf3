//! Route operations.

use rand::RngCore as _;

use super::{ControlPlane, Result, require_admin, require_owner, require_writer};
use crate::auth::{self, Caller};
use crate::error::ServiceError;
use crate::model::{
    DEFAULT_ROUTE_PRIORITY, ExternalService, MAX_ROUTE_PRIORITY, Proxy, Route, RouteInput,
    TargetKind, now, validate,
};
use crate::store::{Batch, Check, Collection, Write};

impl ControlPlane {
    /// Creates a route. Global routes and public routes need an admin; scoped routes need
    /// ownership of every proxy in scope, and targets must exist and be the caller's.
    pub async fn create_route(&self, caller: &Caller, input: RouteInput) -> Result<Route> {
        require_writer(caller)?;
        let id = match input.id.as_deref() {
            Some(id) => id.to_owned(),
            None => {
                let mut b = [0u8; 5];
                rand::rng().fill_bytes(&mut b);
                format!("r-{}", auth::hex(&b))
            }
        };
        let route = build_route(id, input, caller.token_id.clone(), now())?;
        let id = route.id.clone();
        if route.public {
            require_admin(
                caller,
                "a public route (exempt from its proxy's protection)",
            )?;
        }
        if route.proxy_hostnames.is_empty() {
            require_admin(caller, "a global route (it applies to every proxy)")?;
        }
        let mut checks = vec![Check::Absent(Collection::Routes, id.clone())];
        let mut missing: Vec<String> = Vec::new();
        for h in &route.proxy_hostnames {
            match self.get::<Proxy>(h).await? {
                Some((p, raw)) => {
                    require_owner(caller, "proxy", h, &p.owner_token_id)?;
                    checks.push(Check::Equals(Collection::Proxies, h.clone(), raw));
                }
                None => missing.push(format!("proxy {h:?}")),
            }
        }
        let name = &route.target_value;
        match route.target_kind {
            TargetKind::Url => {}
            TargetKind::Service => match self.get::<ExternalService>(name).await? {
                Some((s, raw)) => {
                    require_owner(caller, "service", name, &s.owner_token_id)?;
                    checks.push(Check::Equals(Collection::Services, name.clone(), raw));
                }
                None => missing.push(format!("service {name:?}")),
            },
            TargetKind::Proxy => match self.get::<Proxy>(name).await? {
                Some((p, raw)) => {
                    require_owner(caller, "proxy", name, &p.owner_token_id)?;
                    refuse_protected_target(name, &p)?;
                    checks.push(Check::Equals(Collection::Proxies, name.clone(), raw));
                }
                None => missing.push(format!("proxy {name:?}")),
            },
        }
        if !missing.is_empty() {
            return Err(ServiceError::Unprocessable(format!(
                "route refers to {} which does not exist",
                missing.join(" and ")
            )));
        }
        self.commit(
            Batch {
                checks,
                writes: vec![Write::put(&route)],
            },
            |i| {
                if i == 0 {
                    ServiceError::already_exists(format!("route {id:?} already exists"))
                } else {
                    ServiceError::concurrent(
                        "a proxy or service the route refers to changed; retry",
                    )
                }
            },
        )
        .await?;
        Ok(route)
    }

    /// Reads one route.
    pub async fn get_route(&self, _caller: &Caller, id: &str) -> Result<Route> {
        self.get(id)
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| ServiceError::not_found("route", id))
    }

    /// Lists routes, highest priority first.
    pub async fn list_routes(&self, _caller: &Caller) -> Result<Vec<Route>> {
        let mut routes: Vec<Route> = self.list().await?;
        routes.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        Ok(routes)
    }

    /// Deletes a route the caller owns.
    pub async fn delete_route(&self, caller: &Caller, id: &str) -> Result<()> {
        require_writer(caller)?;
        let Some((route, raw)) = self.get::<Route>(id).await? else {
            return Err(ServiceError::not_found("route", id));
        };
        require_owner(caller, "route", id, &route.owner_token_id)?;
        self.commit(
            Batch {
                checks: vec![Check::Equals(Collection::Routes, id.to_owned(), raw)],
                writes: vec![crate::store::Write::Delete(
                    Collection::Routes,
                    id.to_owned(),
                )],
            },
            |_| ServiceError::concurrent(format!("route {id:?} changed while deleting; retry")),
        )
        .await?;
        Ok(())
    }
}

/// The route `input` describes under `id`, validated field by field, owned by `owner`;
/// references (proxies, services) are the caller's to check against the store.
pub(crate) fn build_route(id: String, input: RouteInput, owner: String, now: i64) -> Result<Route> {
    let id = validate::ident("id", &id)?;
    let priority = input.priority.unwrap_or(DEFAULT_ROUTE_PRIORITY);
    if priority > MAX_ROUTE_PRIORITY {
        return Err(ServiceError::invalid("priority", "must be 0 to 999"));
    }
    let match_kind = input.match_kind.unwrap_or_default();
    let path_pattern = validate::path_pattern(match_kind, &input.path_pattern)?;
    let methods = validate::methods(input.methods.as_deref().unwrap_or_default())?;
    let target_kind = input
        .target_kind
        .ok_or_else(|| ServiceError::invalid("target_kind", "required: url, service or proxy"))?;
    let required_scopes = validate::scopes(
        "required_scopes",
        input.required_scopes.as_deref().unwrap_or_default(),
    )?;
    let mut proxy_hostnames = Vec::new();
    for h in input.proxy_hostnames.unwrap_or_default() {
        let h = validate::hostname("proxy_hostnames", &h)?;
        if !proxy_hostnames.contains(&h) {
            proxy_hostnames.push(h);
        }
    }
    let target_value = match target_kind {
        TargetKind::Url => validate::target_url("target_value", &input.target_value)?,
        TargetKind::Service => validate::ident("target_value", &input.target_value)?,
        TargetKind::Proxy => validate::hostname("target_value", &input.target_value)?,
    };
    Ok(Route {
        id,
        priority,
        match_kind,
        path_pattern,
        methods,
        target_kind,
        target_value,
        proxy_hostnames,
        enabled: input.enabled.unwrap_or(true),
        description: validate::description(input.description.as_deref().unwrap_or_default())?,
        public: input.public.unwrap_or(false),
        required_scopes,
        owner_token_id: owner,
        created_at: now,
    })
}

/// A route to a protected proxy would reach that proxy's upstream without its edge-auth
/// policy (the route runs under the policy of the proxy it is attached to). Data planes
/// also block such routes (503) if the target is protected later.
pub(crate) fn refuse_protected_target(host: &str, target: &Proxy) -> Result<()> {
    if target.auth.is_some() {
        return Err(ServiceError::invalid(
            "target_value",
            format!(
                "proxy {host:?} is protected by edge auth; a route to it would bypass its \
                 policy. Route to its target URL (on a proxy with the same protection) instead"
            ),
        ));
    }
    Ok(())
}
