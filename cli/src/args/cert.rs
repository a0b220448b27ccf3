//! `portcullis cert ...` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Certificate management.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Order (or self-sign) a certificate for one domain
    Create(CertCreateArgs),
    /// Order (or self-sign) one certificate for several domains
    CreateMulti(CertCreateArgs),
    /// List certificates
    List,
    /// Show one certificate
    Show {
        /// Certificate name
        name: String,
    },
    /// Show a certificate's status, validity and last error
    Status {
        /// Certificate name
        name: String,
    },
    /// Order a fresh certificate now; the current one keeps serving meanwhile
    Renew {
        /// Certificate name
        name: String,
    },
    /// Store a certificate chain and private key you bring (PEM files; validated first)
    Upload {
        /// Certificate name
        name: String,
        /// PEM file with the chain, leaf first
        #[arg(long)]
        cert: PathBuf,
        /// PEM file with the leaf's private key
        #[arg(long)]
        key: PathBuf,
    },
    /// Print a certificate's chain and private key (admin token; needs --include-private-key)
    Export {
        /// Certificate name
        name: String,
        /// Confirm that the private key should be printed
        #[arg(long)]
        include_private_key: bool,
    },
    /// Order a staging certificate again from the production ACME directory
    ConvertToProduction {
        /// Certificate name
        name: String,
    },
    /// Delete a certificate (refused while a proxy names it, unless --force)
    Delete {
        /// Certificate name
        name: String,
        /// Delete even while proxies name it
        #[arg(long)]
        force: bool,
    },
}

/// `cert create NAME DOMAIN` and `cert create-multi NAME D1,D2,…`.
#[derive(Debug, Args)]
pub(crate) struct CertCreateArgs {
    /// Certificate name
    pub(crate) name: String,
    /// Domain(s); comma-separated for create-multi
    #[arg(value_delimiter = ',')]
    pub(crate) domains: Vec<String>,
    /// ACME account contact
    #[arg(long)]
    pub(crate) email: Option<String>,
    /// ACME challenge type: http-01 or tls-alpn-01
    #[arg(long, value_parser = ["http-01", "tls-alpn-01"])]
    pub(crate) challenge: Option<String>,
    /// Use the control plane's staging ACME directory
    #[arg(long)]
    pub(crate) staging: bool,
    /// Make a self-signed development certificate instead of ordering one
    #[arg(long)]
    pub(crate) self_signed: bool,
}
