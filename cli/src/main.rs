//! `portcullis`: command-line client for the Portcullis control plane's AdminService.
//!
//! Exit codes: 0 success, 1 the API refused the request, 2 usage or local
//! configuration error, 3 the control plane could not be reached.

mod args;
mod client;
mod commands;
mod config;
mod error;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // tonic's TLS stack is rustls; choose the provider explicitly so that no other
    // crate's provider can be picked up implicitly. Err only means one is already set.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
