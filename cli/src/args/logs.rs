//! `logs search|follow|stats|errors`: request-log queries.

use std::time::Duration;

use clap::{Args, Subcommand};

/// Query the request logs data planes ship to the control plane.
#[derive(Debug, Subcommand)]
pub(crate) enum LogsCommand {
    /// Records matching the filters, newest first (default: the last 24 h)
    Search(LogSearchArgs),
    /// 4xx and 5xx records, newest first
    Errors(LogSearchArgs),
    /// Print matching records as they arrive, until interrupted
    Follow(LogFilterArgs),
    /// Counts by status class, top hosts/paths/IPs/users, duration percentiles, unique visitors
    Stats(LogFilterArgs),
}

/// A point in time: Unix seconds, or an age before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeArg {
    /// Unix seconds.
    Unix(i64),
    /// This long ago.
    Ago(Duration),
}

impl TimeArg {
    /// Unix seconds.
    pub(crate) fn unix(self, now: i64) -> i64 {
        match self {
            Self::Unix(s) => s,
            Self::Ago(d) => now
                .saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .max(1),
        }
    }
}

fn time_arg(s: &str) -> Result<TimeArg, String> {
    if let Ok(n) = s.parse::<i64>() {
        if n < 0 {
            return Err("negative".into());
        }
        return Ok(TimeArg::Unix(n));
    }
    parse_duration(s).map(TimeArg::Ago)
}

/// `90m`, `24h`, `1h30m`, `7d`, `250ms`, `30s`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration like 90m, 24h or 1h30m"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total = total.saturating_add(match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ));
            }
        });
    }
    Ok(total)
}

/// Filters shared by every `logs` subcommand.
#[derive(Debug, Args, Default)]
pub(crate) struct LogFilterArgs {
    /// From this time: an age like 2h, 90m, 7d, or Unix seconds [default: 24h]
    #[arg(long, value_parser = time_arg)]
    pub(crate) since: Option<TimeArg>,
    /// Up to this time (inclusive): an age or Unix seconds
    #[arg(long, value_parser = time_arg)]
    pub(crate) until: Option<TimeArg>,
    /// Exact host
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Client IP address
    #[arg(long)]
    pub(crate) ip: Option<String>,
    /// User (`login` or `sub` of a verified token)
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// OAuth client id
    #[arg(long)]
    pub(crate) client_id: Option<String>,
    /// Status code (404), class (5xx) or `errors` (4xx and 5xx)
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// HTTP method
    #[arg(long)]
    pub(crate) method: Option<String>,
    /// Path prefix
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// Request (correlation) id
    #[arg(long)]
    pub(crate) request_id: Option<String>,
    /// Only requests that took at least this long, e.g. 250ms, 2s
    #[arg(long, value_parser = parse_duration)]
    pub(crate) min_duration: Option<Duration>,
}

/// `logs search` and `logs errors`.
#[derive(Debug, Args)]
pub(crate) struct LogSearchArgs {
    #[command(flatten)]
    pub(crate) filter: LogFilterArgs,
    /// Records per page (at most 1000)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: u32,
    /// `next_cursor` of a previous page
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2w").is_err());
        assert_eq!(time_arg("1700000000"), Ok(TimeArg::Unix(1_700_000_000)));
        assert_eq!(time_arg("2h").map(|t| t.unix(10_000)), Ok(2800));
        assert!(time_arg("-5").is_err());
    }
}
