//! `portcullis proxy resource ...` arguments: the protected-resource metadata of a
//! protected proxy (RFC 9728, MCP authorization).

use std::str::FromStr;

use clap::{Args, Subcommand};

/// `proxy resource ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxyResourceCommand {
    /// Set the resource settings of protected proxy HOSTNAME (replaces previous ones)
    Set(ProxyResourceSetArgs),
    /// Show the resource settings of HOSTNAME
    Show {
        /// Hostname of the proxy
        hostname: String,
    },
    /// Reset the resource settings of HOSTNAME to none (protection stays)
    Clear {
        /// Hostname of the proxy
        hostname: String,
    },
}

/// `proxy resource set`.
#[derive(Debug, Args)]
pub(crate) struct ProxyResourceSetArgs {
    /// Hostname of the proxy
    pub(crate) hostname: String,
    /// MCP endpoint path, e.g. /mcp: its resource is https://HOSTNAME/mcp
    #[arg(long, value_name = "PATH")]
    pub(crate) endpoint: Option<String>,
    /// Scopes advertised in the metadata, comma-separated (default: the required scopes)
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub(crate) scopes: Vec<String>,
    /// Documentation URL advertised in the metadata
    #[arg(long, value_name = "URL")]
    pub(crate) documentation: Option<String>,
    /// Extra metadata field, KEY=JSON (repeatable), e.g. resource_name='"Echo"'
    #[arg(long = "field", value_name = "KEY=JSON")]
    pub(crate) fields: Vec<FieldArg>,
    /// Browser origin allowed to call the proxy (repeatable); others get 403
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allow_origins: Vec<String>,
}

/// One `KEY=JSON` metadata field, parsed on the client so a typo fails before any call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldArg {
    pub(crate) key: String,
    pub(crate) value: serde_json::Value,
}

impl FromStr for FieldArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((key, json)) = s.split_once('=') else {
            return Err(format!("expected KEY=JSON, got {s:?} (missing '=')"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("expected KEY=JSON, got {s:?} (empty key)"));
        }
        let value = serde_json::from_str(json).map_err(|e| {
            format!("value of {key:?} is not JSON ({e}); quote strings: {key}='\"text\"'")
        })?;
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_key_json() {
        let f: Result<FieldArg, _> = "resource_name=\"Echo\"".parse();
        assert_eq!(
            f.ok(),
            Some(FieldArg {
                key: "resource_name".into(),
                value: serde_json::json!("Echo")
            })
        );
        assert!("x=Echo".parse::<FieldArg>().is_err());
        assert!("=1".parse::<FieldArg>().is_err());
        assert!("x".parse::<FieldArg>().is_err());
    }
}
