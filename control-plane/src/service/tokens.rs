//! API token operations, including the first-start admin token.

use super::{ControlPlane, Result, require_admin};
use crate::auth::{self, Caller};
use crate::error::ServiceError;
use crate::model::{CreatedToken, TokenInfo, TokenInput, TokenRecord, TokenScope, now, validate};
use crate::store::{Batch, Check, Collection, Write};

const BOOTSTRAP_MARKER: &str = "bootstrapped";

impl ControlPlane {
    /// Creates a token; admin only. The secret is returned once and never stored.
    pub async fn create_token(&self, caller: &Caller, input: TokenInput) -> Result<CreatedToken> {
        require_admin(caller, "creating tokens")?;
        let name = validate::ident("name", &input.name)?;
        self.insert_token(
            name,
            input.scope.unwrap_or(TokenScope::User),
            &caller.token_id,
            vec![],
        )
        .await
    }

    /// Creates an admin token without a caller: for `token create-admin`, which proves its
    /// right by having the store.
    pub async fn create_admin_token(&self, name: &str) -> Result<CreatedToken> {
        let name = validate::ident("name", name)?;
        self.insert_token(name, TokenScope::Admin, "", vec![]).await
    }

    /// On a store that never had a token, creates the first admin token and returns it.
    /// Several control planes starting at once on one Redis create exactly one.
    pub async fn bootstrap_admin_token(&self) -> Result<Option<CreatedToken>> {
        let marker = vec![Check::Absent(Collection::Meta, BOOTSTRAP_MARKER.into())];
        match self
            .insert_token("admin".into(), TokenScope::Admin, "", marker)
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(ServiceError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn insert_token(
        &self,
        name: String,
        scope: TokenScope,
        created_by: &str,
        mut checks: Vec<Check>,
    ) -> Result<CreatedToken> {
        let secret = auth::generate_secret();
        let hash = auth::hash_secret(&secret);
        let id = auth::token_id(&hash);
        let now = now();
        let record = TokenRecord {
            id: id.clone(),
            name,
            scope,
            secret_sha256: hash,
            created_at: now,
            last_used_at: 0,
            created_by: created_by.to_owned(),
        };
        checks.push(Check::Absent(Collection::Tokens, id.clone()));
        let batch = Batch {
            checks,
            writes: vec![
                Write::put(&record),
                Write::Put(Collection::Meta, BOOTSTRAP_MARKER.into(), b"1".to_vec()),
            ],
        };
        self.commit(batch, |_| {
            ServiceError::already_exists("token already exists")
        })
        .await?;
        Ok(CreatedToken {
            token: TokenInfo::from(&record),
            secret,
        })
    }

    /// Lists tokens: all for an admin, only its own for anyone else.
    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>> {
        let all: Vec<TokenRecord> = self.list().await?;
        Ok(all
            .iter()
            .filter(|t| caller.is_admin() || t.id == caller.token_id)
            .map(TokenInfo::from)
            .collect())
    }

    /// Revokes a token; admin only.
    pub async fn delete_token(&self, caller: &Caller, id: &str) -> Result<()> {
        require_admin(caller, "revoking tokens")?;
        self.commit(
            Batch {
                checks: vec![Check::Present(Collection::Tokens, id.to_owned())],
                writes: vec![Write::Delete(Collection::Tokens, id.to_owned())],
            },
            |_| ServiceError::not_found("token", id),
        )
        .await?;
        Ok(())
    }
}
