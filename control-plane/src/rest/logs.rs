//! Request logs over REST: `/api/v1/logs` (search), `/stats`, `/follow` (Server-Sent
//! Events), and the seed's paths as thin aliases of search.
//!
//! Filters are query parameters named like `AccessLogQuery`'s fields, plus short aliases
//! (`ip`, `path`, `min_duration`): `since`/`until` take Unix seconds or an age such as `2h`
//! (`hours=N` is `since=Nh`); `status` takes `404`, a class `5xx` or `errors` (>= 400);
//! `min_duration` takes `250ms`, `2s`. An unknown or repeated parameter, or a bad value, is
//! a 400 naming it. Pages: `limit` (default 100, at most 1000; more is refused) and the
//! opaque `cursor` from the previous page's `next_cursor`.
//!
//! Aliases: `/logs/search` = `/logs`; `/logs/ip/{ip}`, `/logs/client/{client_id}` and
//! `/logs/correlation/{request_id}` set that filter (the path value wins over a query
//! parameter); `/logs/errors` is status 4xx and 5xx and refuses a `status` parameter.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use futures_util::Stream;
use portcullis_proto::v1 as pb;
use serde::Serialize;

use super::{ApiError, ErrorBody};
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::error::ServiceError;
use crate::logs::{AccessLogs, FollowEnd, FollowError, parse_duration, rfc3339};
use crate::service::ControlPlane;

type ApiResult<T> = Result<T, ApiError>;

/// State of the log routes: the control plane (proxy ownership), the authenticator and the
/// log service.
#[derive(Clone)]
pub struct LogsState {
    cp: ControlPlane,
    authn: Authenticator,
    logs: AccessLogs,
}

impl FromRef<LogsState> for Authenticator {
    fn from_ref(s: &LogsState) -> Self {
        s.authn.clone()
    }
}

/// The `/api/v1/logs` routes, ready to merge into the HTTP app.
pub fn router(cp: ControlPlane, authn: Authenticator, logs: AccessLogs) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/logs", get(search))
        .route("/api/v1/logs/search", get(search))
        .route("/api/v1/logs/stats", get(stats))
        .route("/api/v1/logs/follow", get(follow))
        .route("/api/v1/logs/errors", get(errors))
        .route("/api/v1/logs/ip/{ip}", get(by_ip))
        .route("/api/v1/logs/client/{client_id}", get(by_client))
        .route("/api/v1/logs/correlation/{request_id}", get(by_request))
        .with_state(LogsState { cp, authn, logs })
}

/// The OpenAPI document of the log routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        search,
        search_alias,
        stats,
        follow,
        errors,
        by_ip,
        by_client,
        by_request
    ),
    components(schemas(RecordJson, PageJson, StatsJson, CountJson))
)]
pub struct LogsApiDoc;

/// Query parameters shared by every log route (all optional).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: parsing is by hand, for precise errors.
pub struct LogParams {
    /// Unix seconds, or an age like `2h` (default: 24 h ago).
    since: Option<String>,
    /// Unix seconds (inclusive), or an age like `30m`.
    until: Option<String>,
    /// Since this many hours ago.
    hours: Option<u32>,
    /// Exact host.
    host: Option<String>,
    /// Client IP (also `client_ip`).
    ip: Option<String>,
    /// `login` or `sub` of the caller's token.
    user: Option<String>,
    /// OAuth client id.
    client_id: Option<String>,
    /// `404`, `5xx` or `errors`.
    status: Option<String>,
    /// HTTP method.
    method: Option<String>,
    /// Path prefix (also `path_prefix`).
    path: Option<String>,
    /// Request (correlation) id.
    request_id: Option<String>,
    /// Minimum duration like `250ms` (or `min_duration_micros`).
    min_duration: Option<String>,
    /// Page size, default 100, at most 1000.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One request-log record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordJson {
    /// RFC 3339 UTC.
    pub time: String,
    pub time_unix_nanos: i64,
    pub node_id: String,
    pub listener: String,
    pub client_ip: String,
    pub client_port: u32,
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: String,
    pub http_version: String,
    pub status: u32,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub duration_micros: u64,
    pub upstream_ttfb_micros: u64,
    pub upstream: String,
    pub proxy: String,
    pub route: String,
    pub auth: String,
    pub auth_reason: String,
    pub user: String,
    pub client_id: String,
    pub request_id: String,
    pub trace_id: String,
    pub user_agent: String,
    pub mcp_session_id: String,
    /// From the connection's PROXY v2 header (its load balancer): the authority (SNI)
    /// the client asked for, the balancer's connection id (hex), the ALPN protocol, the
    /// TLS version, the `PP2_CLIENT_*` bits and the client certificate's verify result.
    pub proxy_authority: String,
    pub proxy_unique_id: String,
    pub proxy_alpn: String,
    pub proxy_ssl_version: String,
    pub proxy_ssl_client: u32,
    pub proxy_ssl_verify: u32,
}

impl From<&pb::AccessLogRecord> for RecordJson {
    fn from(r: &pb::AccessLogRecord) -> Self {
        Self {
            time: rfc3339(r.time_unix_nanos),
            time_unix_nanos: r.time_unix_nanos,
            node_id: r.node_id.clone(),
            listener: r.listener.clone(),
            client_ip: r.client_ip.clone(),
            client_port: r.client_port,
            method: r.method.clone(),
            host: r.host.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            http_version: r.http_version.clone(),
            status: r.status,
            request_body_bytes: r.request_body_bytes,
            response_body_bytes: r.response_body_bytes,
            duration_micros: r.duration_micros,
            upstream_ttfb_micros: r.upstream_ttfb_micros,
            upstream: r.upstream.clone(),
            proxy: r.proxy.clone(),
            route: r.route.clone(),
            auth: r.auth.clone(),
            auth_reason: r.auth_reason.clone(),
            user: r.user.clone(),
            client_id: r.client_id.clone(),
            request_id: r.request_id.clone(),
            trace_id: r.trace_id.clone(),
            user_agent: r.user_agent.clone(),
            mcp_session_id: r.mcp_session_id.clone(),
            proxy_authority: r.proxy_authority.clone(),
            proxy_unique_id: r.proxy_unique_id.clone(),
            proxy_alpn: r.proxy_alpn.clone(),
            proxy_ssl_version: r.proxy_ssl_version.clone(),
            proxy_ssl_client: r.proxy_ssl_client,
            proxy_ssl_verify: r.proxy_ssl_verify,
        }
    }
}

/// A page of records, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageJson {
    pub items: Vec<RecordJson>,
    /// Pass as `cursor` for the next page; empty on the last page. A page may hold fewer
    /// than `limit` records while this is set (one call examines a bounded number).
    pub next_cursor: String,
}

/// A key and its count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CountJson {
    pub key: String,
    pub count: u64,
}

/// Aggregates over the window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsJson {
    pub total: u64,
    pub by_status_class: Vec<CountJson>,
    pub top_hosts: Vec<CountJson>,
    pub top_paths: Vec<CountJson>,
    pub top_client_ips: Vec<CountJson>,
    pub top_users: Vec<CountJson>,
    pub p50_duration_micros: u64,
    pub p95_duration_micros: u64,
    pub p99_duration_micros: u64,
    /// Estimated distinct client IPs per host (HyperLogLog).
    pub unique_visitors: Vec<CountJson>,
    /// Records data planes reported dropped in the window (admins only; 0 for others).
    pub dropped: u64,
    /// More records matched than one call examines: the newest were counted.
    pub truncated: bool,
}

fn counts(c: &[pb::Count]) -> Vec<CountJson> {
    c.iter()
        .map(|c| CountJson {
            key: c.key.clone(),
            count: c.count,
        })
        .collect()
}

impl From<pb::AccessLogStats> for StatsJson {
    fn from(s: pb::AccessLogStats) -> Self {
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

/// A time parameter: Unix seconds, or an age (`2h`) before now.
fn time_param(field: &'static str, v: &str) -> Result<i64, ServiceError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    let age = parse_duration(v).map_err(|e| ServiceError::invalid(field, e))?;
    let now = crate::model::now();
    Ok(now
        .saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
        .max(1))
}

/// Turns query parameters into an `AccessLogQuery`; every problem names its parameter.
pub fn parse_params(params: &[(String, String)]) -> Result<pb::AccessLogQuery, ServiceError> {
    let mut q = pb::AccessLogQuery::default();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in params {
        let canonical = match k.as_str() {
            "ip" => "client_ip",
            "path" => "path_prefix",
            "min_duration" => "min_duration_micros",
            "hours" => "since",
            other => other,
        };
        if !seen.insert(canonical) {
            return Err(ServiceError::invalid(
                "query",
                format!("parameter {k:?} given twice (or with its alias)"),
            ));
        }
        match k.as_str() {
            "since" => q.since = time_param("since", v)?,
            "until" => q.until = time_param("until", v)?,
            "hours" => {
                let h: u32 = v.parse().map_err(|_| {
                    ServiceError::invalid("hours", format!("{v:?} is not a whole number of hours"))
                })?;
                q.since = time_param("hours", &format!("{h}h"))?;
            }
            "host" => q.host = v.clone(),
            "ip" | "client_ip" => q.client_ip = v.clone(),
            "user" => q.user = v.clone(),
            "client_id" => q.client_id = v.clone(),
            "status" => q.status = v.clone(),
            "method" => q.method = v.clone(),
            "path" | "path_prefix" => q.path_prefix = v.clone(),
            "request_id" => q.request_id = v.clone(),
            "min_duration_micros" => {
                q.min_duration_micros = v.parse().map_err(|_| {
                    ServiceError::invalid(
                        "min_duration_micros",
                        format!("{v:?} is not a whole number"),
                    )
                })?;
            }
            "min_duration" => {
                let d = parse_duration(v).map_err(|e| ServiceError::invalid("min_duration", e))?;
                q.min_duration_micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            }
            "limit" => {
                q.limit = v.parse().map_err(|_| {
                    ServiceError::invalid("limit", format!("{v:?} is not a whole number (1-1000)"))
                })?;
            }
            "cursor" => q.cursor = v.clone(),
            other => {
                return Err(ServiceError::invalid(
                    "query",
                    format!("unknown parameter {other:?}"),
                ));
            }
        }
    }
    Ok(q)
}

async fn run_search(s: &LogsState, c: &Caller, q: pb::AccessLogQuery) -> ApiResult<Json<PageJson>> {
    let page = s.logs.search(&s.cp, c, &q).await?;
    Ok(Json(PageJson {
        items: page.records.iter().map(RecordJson::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

type Params = Query<Vec<(String, String)>>;

#[utoipa::path(get, path = "/api/v1/logs", tag = "logs", security(("bearer" = [])), params(LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn search(
    State(s): State<LogsState>,
    c: Caller,
    Query(p): Params,
) -> ApiResult<Json<PageJson>> {
    run_search(&s, &c, parse_params(&p)?).await
}

/// Same as `GET /api/v1/logs`.
#[utoipa::path(get, path = "/api/v1/logs/search", tag = "logs", security(("bearer" = [])), params(LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody)))]
#[allow(dead_code)] // Documentation of the alias; routed to `search`.
async fn search_alias() {}

#[utoipa::path(get, path = "/api/v1/logs/errors", tag = "logs", security(("bearer" = [])), params(LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody)))]
async fn errors(
    State(s): State<LogsState>,
    c: Caller,
    Query(p): Params,
) -> ApiResult<Json<PageJson>> {
    let mut q = parse_params(&p)?;
    if !q.status.is_empty() {
        return Err(ServiceError::invalid(
            "status",
            "/logs/errors is 4xx and 5xx; use /logs?status=… to choose",
        )
        .into());
    }
    q.status = "errors".into();
    run_search(&s, &c, q).await
}

#[utoipa::path(get, path = "/api/v1/logs/ip/{ip}", tag = "logs", security(("bearer" = [])),
    params(("ip" = String, Path), LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody)))]
async fn by_ip(
    State(s): State<LogsState>,
    c: Caller,
    Path(ip): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<PageJson>> {
    let mut q = parse_params(&p)?;
    q.client_ip = ip;
    run_search(&s, &c, q).await
}

#[utoipa::path(get, path = "/api/v1/logs/client/{client_id}", tag = "logs", security(("bearer" = [])),
    params(("client_id" = String, Path), LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody)))]
async fn by_client(
    State(s): State<LogsState>,
    c: Caller,
    Path(id): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<PageJson>> {
    let mut q = parse_params(&p)?;
    q.client_id = id;
    run_search(&s, &c, q).await
}

#[utoipa::path(get, path = "/api/v1/logs/correlation/{request_id}", tag = "logs", security(("bearer" = [])),
    params(("request_id" = String, Path), LogParams),
    responses((status = 200, body = PageJson), (status = 400, body = ErrorBody)))]
async fn by_request(
    State(s): State<LogsState>,
    c: Caller,
    Path(id): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<PageJson>> {
    let mut q = parse_params(&p)?;
    q.request_id = id;
    run_search(&s, &c, q).await
}

#[utoipa::path(get, path = "/api/v1/logs/stats", tag = "logs", security(("bearer" = [])), params(LogParams),
    responses((status = 200, body = StatsJson), (status = 400, body = ErrorBody)))]
async fn stats(
    State(s): State<LogsState>,
    c: Caller,
    Query(p): Params,
) -> ApiResult<Json<StatsJson>> {
    let q = parse_params(&p)?;
    Ok(Json(s.logs.stats(&s.cp, &c, &q).await?.into()))
}

/// Server-Sent Events: one `data:` JSON record per matching request as it arrives. A
/// follower that falls behind gets `event: lagged` with the number skipped, and the
/// stream ends.
#[utoipa::path(get, path = "/api/v1/logs/follow", tag = "logs", security(("bearer" = [])), params(LogParams),
    responses((status = 200, description = "text/event-stream of records", content_type = "text/event-stream"), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody, description = "too many followers")))]
async fn follow(
    State(s): State<LogsState>,
    c: Caller,
    Query(p): Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let q = parse_params(&p).map_err(|e| ApiError::from(e).into_response())?;
    let follower = match s.logs.follow(&s.cp, &c, &q).await {
        Ok(f) => f,
        Err(FollowError::Service(e)) => return Err(ApiError::from(e).into_response()),
        Err(e @ FollowError::TooMany) => {
            let body = ErrorBody {
                error: "unavailable",
                detail: e.to_string(),
                field: None,
            };
            return Err((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
        }
    };
    let stream = futures_util::stream::unfold(Some(follower), |state| async move {
        let mut f = state?;
        match f.next().await {
            Ok(r) => {
                let json = serde_json::to_string(&RecordJson::from(r.as_ref())).unwrap_or_default();
                Some((Ok(Event::default().data(json)), Some(f)))
            }
            Err(FollowEnd::Lagged(n)) => Some((
                Ok(Event::default()
                    .event("lagged")
                    .data(format!("{{\"skipped\":{n}}}"))),
                None,
            )),
            Err(FollowEnd::Closed) => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn params_map_to_the_query_and_errors_name_the_parameter() {
        let q = parse_params(&p(&[
            ("ip", "10.0.0.1"),
            ("path", "/a"),
            ("min_duration", "250ms"),
            ("limit", "5"),
            ("since", "2h"),
        ]))
        .unwrap();
        assert_eq!(q.client_ip, "10.0.0.1");
        assert_eq!(q.path_prefix, "/a");
        assert_eq!(q.min_duration_micros, 250_000);
        assert_eq!(q.limit, 5);
        let now = crate::model::now();
        assert!((now - 7200 - q.since).abs() <= 2);
        assert_eq!(
            parse_params(&p(&[("since", "1700000000")])).unwrap().since,
            1_700_000_000
        );
        for (params, field) in [
            (p(&[("bogus", "1")]), "query"),
            (p(&[("ip", "1"), ("client_ip", "2")]), "query"),
            (p(&[("limit", "x")]), "limit"),
            (p(&[("since", "yesterday")]), "since"),
            (p(&[("min_duration", "fast")]), "min_duration"),
            (p(&[("hours", "-1")]), "hours"),
        ] {
            let e = parse_params(&params).unwrap_err();
            assert!(
                matches!(&e, ServiceError::Invalid { field: f, .. } if *f == field),
                "{params:?}: {e}"
            );
        }
    }
}
