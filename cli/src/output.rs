//! Rendering results: JSON mirrors of the wire messages, or human-readable tables.
//!
//! Everything goes to stdout through [`Printer`], so commands never decide the format
//! themselves and `--output json` is uniformly available.

pub(crate) mod json;
pub(crate) mod table;
pub(crate) mod time;
pub(crate) mod views;

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::error::CliError;

/// The `--output` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// Pretty-printed JSON for scripts
    Json,
}

/// Writes one result in the selected format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    format: OutputFormat,
}

impl Printer {
    /// A printer for the given `--output` choice.
    pub(crate) fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// Whether `--output json` was chosen.
    pub(crate) fn json(&self) -> bool {
        matches!(self.format, OutputFormat::Json)
    }

    /// Prints `json` as JSON, or the lazily rendered `table` text.
    pub(crate) fn emit<T: Serialize>(
        &self,
        json: &T,
        table: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let text = match self.format {
            OutputFormat::Json => serde_json::to_string_pretty(json)
                .map_err(|e| CliError::Output(std::io::Error::other(e)))?,
            OutputFormat::Table => table(),
        };
        write_stdout(&text)
    }
}

/// Writes `text` plus a trailing newline (unless it already has one) to stdout.
pub(crate) fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
