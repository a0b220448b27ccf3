//! `logs search|errors|follow|stats` over `AccessLogService`.
//!
//! Tables by default; `--output json` prints the REST API's shapes (`{"items": [...],
//! "next_cursor": ...}` for pages, one JSON object per line for `follow`).

use portcullis_proto::v1::access_log_service_client::AccessLogServiceClient;
use portcullis_proto::v1::{AccessLogQuery, AccessLogRecord, AccessLogStats, Count};
use serde::Serialize;

use super::{Ctx, ReplyExt};
use crate::args::{LogFilterArgs, LogSearchArgs, LogsCommand};
use crate::client::{self, BearerAuth};
use crate::config::Settings;
use crate::error::{CliError, error_chain};
use crate::output::table::{Table, key_values};
use crate::output::{OutputFormat, write_stdout};

/// Runs one `logs` subcommand on its own connection (the admin client's is not shared).
pub(crate) async fn run(
    ctx: &mut Ctx,
    settings: &Settings,
    format: OutputFormat,
    cmd: LogsCommand,
) -> Result<(), CliError> {
    let auth = BearerAuth::new(settings.token.as_ref().map(|t| t.expose()))?;
    let channel =
        client::endpoint(settings)?
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                url: settings.url.clone(),
                detail: error_chain(&e),
            })?;
    let mut c = AccessLogServiceClient::with_interceptor(channel, auth);
    match cmd {
        LogsCommand::Search(a) => {
            let page = c.search(search_query(a, None)).await.reply(&ctx.call)?;
            print_page(ctx, &page.records, &page.next_cursor)
        }
        LogsCommand::Errors(a) => {
            if a.filter.status.is_some() {
                return Err(CliError::Usage(
                    "`logs errors` is 4xx and 5xx; use `logs search --status` to choose".into(),
                ));
            }
            let page = c
                .search(search_query(a, Some("errors")))
                .await
                .reply(&ctx.call)?;
            print_page(ctx, &page.records, &page.next_cursor)
        }
        LogsCommand::Stats(f) => {
            let stats = c.stats(query(f)).await.reply(&ctx.call)?;
            ctx.out
                .emit(&StatsJson::from(&stats), || stats_view(&stats))
        }
        LogsCommand::Follow(f) => {
            let mut stream = c.follow(query(f)).await.reply(&ctx.call)?;
            loop {
                match stream.message().await {
                    Ok(Some(r)) => {
                        let line = match format {
                            OutputFormat::Json => serde_json::to_string(&RecordJson::from(&r))
                                .map_err(|e| CliError::Output(std::io::Error::other(e)))?,
                            OutputFormat::Table => row(&r).join("  "),
                        };
                        write_stdout(&crate::output::table::clean(&line))?;
                    }
                    Ok(None) => return Ok(()),
                    Err(s) => {
                        return Err(CliError::from_status(s, &ctx.call.url, ctx.call.has_token));
                    }
                }
            }
        }
    }
}

fn query(f: LogFilterArgs) -> AccessLogQuery {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    AccessLogQuery {
        since: f.since.map_or(0, |t| t.unix(now)),
        until: f.until.map_or(0, |t| t.unix(now)),
        host: f.host.unwrap_or_default(),
        client_ip: f.ip.unwrap_or_default(),
        user: f.user.unwrap_or_default(),
        client_id: f.client_id.unwrap_or_default(),
        status: f.status.unwrap_or_default(),
        method: f.method.unwrap_or_default(),
        path_prefix: f.path.unwrap_or_default(),
        request_id: f.request_id.unwrap_or_default(),
        min_duration_micros: f
            .min_duration
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        limit: 0,
        cursor: String::new(),
    }
}

fn search_query(a: LogSearchArgs, status: Option<&str>) -> AccessLogQuery {
    let mut q = query(a.filter);
    q.limit = a.limit;
    q.cursor = a.cursor.unwrap_or_default();
    if let Some(s) = status {
        q.status = s.to_owned();
    }
    q
}

const HEADERS: [&str; 9] = [
    "TIME",
    "STATUS",
    "METHOD",
    "HOST",
    "PATH",
    "CLIENT IP",
    "USER",
    "DURATION",
    "REQUEST ID",
];

fn duration(micros: u64) -> String {
    if micros >= 1_000_000 {
        format!("{:.2}s", micros as f64 / 1e6)
    } else {
        format!("{:.1}ms", micros as f64 / 1e3)
    }
}

fn row(r: &AccessLogRecord) -> Vec<String> {
    vec![
        crate::output::time::rfc3339(r.time_unix_nanos.div_euclid(1_000_000_000)),
        r.status.to_string(),
        r.method.clone(),
        r.host.clone(),
        r.path.clone(),
        r.client_ip.clone(),
        if r.user.is_empty() {
            "-".into()
        } else {
            r.user.clone()
        },
        duration(r.duration_micros),
        r.request_id.clone(),
    ]
}

fn print_page(ctx: &Ctx, records: &[AccessLogRecord], next: &str) -> Result<(), CliError> {
    let json = PageJson {
        items: records.iter().map(RecordJson::from).collect(),
        next_cursor: next.to_owned(),
    };
    ctx.out.emit(&json, || {
        let mut t = Table::new(&HEADERS);
        for r in records {
            t.row(row(r));
        }
        let mut out = t.render();
        if !next.is_empty() {
            out.push_str(&format!("(more: --cursor {next})\n"));
        }
        out
    })
}

fn counts_table(title: &'static str, c: &[Count]) -> String {
    let mut t = Table::new(&[title, "COUNT"]);
    for c in c {
        t.row(vec![c.key.clone(), c.count.to_string()]);
    }
    t.render()
}

fn stats_view(s: &AccessLogStats) -> String {
    let mut out = key_values(&[
        ("total", s.total.to_string()),
        ("p50", duration(s.p50_duration_micros)),
        ("p95", duration(s.p95_duration_micros)),
        ("p99", duration(s.p99_duration_micros)),
        ("dropped", s.dropped.to_string()),
        ("truncated", crate::output::table::yes_no(s.truncated)),
    ]);
    for (title, c) in [
        ("STATUS CLASS", &s.by_status_class),
        ("HOST", &s.top_hosts),
        ("PATH", &s.top_paths),
        ("CLIENT IP", &s.top_client_ips),
        ("USER", &s.top_users),
        ("HOST (UNIQUE VISITORS)", &s.unique_visitors),
    ] {
        out.push('\n');
        out.push_str(&counts_table(title, c));
    }
    out
}

#[derive(Serialize)]
struct PageJson {
    items: Vec<RecordJson>,
    next_cursor: String,
}

/// The REST API's record shape.
#[derive(Serialize)]
struct RecordJson {
    time_unix_nanos: i64,
    node_id: String,
    listener: String,
    client_ip: String,
    client_port: u32,
    method: String,
    host: String,
    path: String,
    query: String,
    http_version: String,
    status: u32,
    request_body_bytes: u64,
    response_body_bytes: u64,
    duration_micros: u64,
    upstream_ttfb_micros: u64,
    upstream: String,
    proxy: String,
    route: String,
    auth: String,
    auth_reason: String,
    user: String,
    client_id: String,
    request_id: String,
    trace_id: String,
    user_agent: String,
    mcp_session_id: String,
}

impl From<&AccessLogRecord> for RecordJson {
    fn from(r: &AccessLogRecord) -> Self {
        let r = r.clone();
        Self {
            time_unix_nanos: r.time_unix_nanos,
            node_id: r.node_id,
            listener: r.listener,
            client_ip: r.client_ip,
            client_port: r.client_port,
            method: r.method,
            host: r.host,
            path: r.path,
            query: r.query,
            http_version: r.http_version,
            status: r.status,
            request_body_bytes: r.request_body_bytes,
            response_body_bytes: r.response_body_bytes,
            duration_micros: r.duration_micros,
            upstream_ttfb_micros: r.upstream_ttfb_micros,
            upstream: r.upstream,
            proxy: r.proxy,
            route: r.route,
            auth: r.auth,
            auth_reason: r.auth_reason,
            user: r.user,
            client_id: r.client_id,
            request_id: r.request_id,
            trace_id: r.trace_id,
            user_agent: r.user_agent,
            mcp_session_id: r.mcp_session_id,
        }
    }
}

#[derive(Serialize)]
struct CountJson {
    key: String,
    count: u64,
}

#[derive(Serialize)]
struct StatsJson {
    total: u64,
    by_status_class: Vec<CountJson>,
    top_hosts: Vec<CountJson>,
    top_paths: Vec<CountJson>,
    top_client_ips: Vec<CountJson>,
    top_users: Vec<CountJson>,
    p50_duration_micros: u64,
    p95_duration_micros: u64,
    p99_duration_micros: u64,
    unique_visitors: Vec<CountJson>,
    dropped: u64,
    truncated: bool,
}

fn counts(c: &[Count]) -> Vec<CountJson> {
    c.iter()
        .map(|c| CountJson {
            key: c.key.clone(),
            count: c.count,
        })
        .collect()
}

impl From<&AccessLogStats> for StatsJson {
    fn from(s: &AccessLogStats) -> Self {
        Self {
            total: s.total,
            by_status_class: counts(&s.by_status_class),
            top_hosts: counts(&s.top_hosts),
            top_paths: counts(&s.top_paths),
            top_client_ips: counts(&s.top_client_ips),
            top_users: counts(&s.top_users),
            p50_duration_micros: s.p50_duration_micros,
            p95_duration_micros: s.p95_duration_micros,
            p99_duration_micros: s.p99_duration_micros,
            unique_visitors: counts(&s.unique_visitors),
            dropped: s.dropped,
            truncated: s.truncated,
        }
    }
}
