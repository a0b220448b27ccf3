//! Named external service operations.

use super::{ControlPlane, Result, require_owner, require_writer};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{ExternalService, Route, ServiceInput, TargetKind, now, validate};
use crate::store::{Batch, Check, Collection, Write};

impl ControlPlane {
    /// Registers a named upstream. 409 if the name is taken.
    pub async fn register_service(
        &self,
        caller: &Caller,
        input: ServiceInput,
    ) -> Result<ExternalService> {
        require_writer(caller)?;
        let service = build_service(input, caller.token_id.clone(), now())?;
        let key = service.name.clone();
        self.commit(
            Batch {
                checks: vec![Check::Absent(Collection::Services, key.clone())],
                writes: vec![Write::put(&service)],
            },
            |_| ServiceError::already_exists(format!("service {key:?} already exists")),
        )
        .await?;
        Ok(service)
    }

    /// Reads one service.
    pub async fn get_service(&self, _caller: &Caller, name: &str) -> Result<ExternalService> {
        self.get(name)
            .await?
            .map(|(s, _)| s)
            .ok_or_else(|| ServiceError::not_found("service", name))
    }

    /// Lists services by name.
    pub async fn list_services(&self, _caller: &Caller) -> Result<Vec<ExternalService>> {
        self.list().await
    }

    /// Deletes a service the caller owns; 409 while routes target it.
    pub async fn delete_service(&self, caller: &Caller, name: &str) -> Result<()> {
        require_writer(caller)?;
        let Some((service, raw)) = self.get::<ExternalService>(name).await? else {
            return Err(ServiceError::not_found("service", name));
        };
        require_owner(caller, "service", name, &service.owner_token_id)?;
        let users: Vec<String> = self
            .list::<Route>()
            .await?
            .into_iter()
            .filter(|r| r.target_kind == TargetKind::Service && r.target_value == name)
            .map(|r| r.id)
            .collect();
        if !users.is_empty() {
            return Err(ServiceError::still_referenced(format!(
                "service {name:?} is used by routes {}; delete them first",
                users.join(", ")
            )));
        }
        self.commit(
            Batch {
                checks: vec![Check::Equals(Collection::Services, name.to_owned(), raw)],
                writes: vec![crate::store::Write::Delete(
                    Collection::Services,
                    name.to_owned(),
                )],
            },
            |_| ServiceError::concurrent(format!("service {name:?} changed while deleting; retry")),
        )
        .await?;
        Ok(())
    }
}

/// The service `input` describes, validated, owned by `owner`.
pub(crate) fn build_service(
    input: ServiceInput,
    owner: String,
    now: i64,
) -> Result<ExternalService> {
    Ok(ExternalService {
        name: validate::ident("name", &input.name)?,
        target_url: validate::target_url("target_url", &input.target_url)?,
        description: validate::description(input.description.as_deref().unwrap_or_default())?,
        owner_token_id: owner,
        created_at: now,
    })
}
