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
        self.bootstrap_admin_token_with(None).await
    }

    /// [`Self::bootstrap_admin_token`], with the operator's own secret when given (the seed's
    /// `ADMIN_TOKEN`, for installs that script against a known token): 32–256 printable
    /// ASCII characters, no spaces and no `.` (three dot-separated parts read as an OAuth
    /// access token). Only its hash is stored, as for generated ones.
    pub async fn bootstrap_admin_token_with(
        &self,
        secret: Option<&str>,
    ) -> Result<Option<CreatedToken>> {
        let acceptable = |s: &str| {
            (32..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
        };
        if secret.is_some_and(|s| !acceptable(s)) {
            return Err(ServiceError::invalid(
                "admin_token",
                "must be 32-256 printable ASCII characters without spaces or '.'",
            ));
        }
        let marker = vec![Check::Absent(Collection::Meta, BOOTSTRAP_MARKER.into())];
        let secret = secret.map_or_else(auth::generate_secret, str::to_owned);
        match self
            .insert_token_with_secret(secret, "admin".into(), TokenScope::Admin, "", marker)
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
        checks: Vec<Check>,
    ) -> Result<CreatedToken> {
        self.insert_token_with_secret(auth::generate_secret(), name, scope, created_by, checks)
            .await
    }

    async fn insert_token_with_secret(
        &self,
        secret: String,
        name: String,
        scope: TokenScope,
        created_by: &str,
        mut checks: Vec<Check>,
    ) -> Result<CreatedToken> {
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
