//! HTML refusal pages for browsers: the look of the console and of the control plane's
//! sign-in pages (the same stylesheet: `control-plane/ui/style.css` followed by
//! `control-plane/src/pages/page.css`, the same markup), inlined because a data plane may not
//! claim a path on a proxied host; the Content-Security-Policy allows exactly that
//! stylesheet by its SHA-256 and nothing else (no script, no framing, no forms).
//!
//! Only built on refusal paths (an allocation per refusal page, none for admitted
//! requests); the policy header is computed once. Every text goes through [`escape`].

use std::sync::OnceLock;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, header};

/// The stylesheet shared with the console and the control plane's pages (about 12 kB, sent
/// only with refusal pages).
pub(crate) const CSS: &str = concat!(
    include_str!("../../../control-plane/ui/style.css"),
    include_str!("../../../control-plane/src/pages/page.css")
);

/// A link offered as the way on.
pub(crate) struct Action<'a> {
    /// Same-origin path (escaped when rendered).
    pub(crate) href: &'a str,
    /// Its label.
    pub(crate) label: &'a str,
    /// The main way on.
    pub(crate) primary: bool,
}

/// What a refusal page says; every field is text, escaped when rendered.
pub(crate) struct Page<'a> {
    /// `<title>` and heading.
    pub(crate) title: &'a str,
    /// What happened, in words.
    pub(crate) lead: &'a str,
    /// Who is signed in, when known.
    pub(crate) who: Option<&'a str>,
    /// The reason as the sign-in service (or the proxy) gave it.
    pub(crate) detail: Option<&'a str>,
    /// Ways on.
    pub(crate) actions: &'a [Action<'a>],
}

impl Page<'_> {
    /// The whole document.
    pub(crate) fn render(&self) -> String {
        let mut body = String::with_capacity(CSS.len() + 1024);
        body.push_str(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"color-scheme\" content=\"light dark\">\
             <meta name=\"referrer\" content=\"no-referrer\"><title>",
        );
        body.push_str(&escape(self.title));
        body.push_str(" · Portcullis</title><style>");
        body.push_str(CSS);
        body.push_str(
            "</style></head><body><main class=\"page\"><p class=\"page-brand\">\
             <span class=\"logo\" aria-hidden=\"true\">▦</span> Portcullis</p>\
             <div class=\"card\"><h1>",
        );
        body.push_str(&escape(self.title));
        body.push_str("</h1>");
        if let Some(who) = self.who {
            body.push_str("<p class=\"signed-in\">Signed in as <strong>");
            body.push_str(&escape(who));
            body.push_str("</strong>.</p>");
        }
        body.push_str("<p>");
        body.push_str(&escape(self.lead));
        body.push_str("</p>");
        if let Some(detail) = self.detail {
            body.push_str("<p class=\"detail\">Reason: ");
            body.push_str(&escape(detail));
            body.push_str("</p>");
        }
        if !self.actions.is_empty() {
            body.push_str("<p class=\"actions\">");
            for a in self.actions {
                body.push_str("<a class=\"button");
                if !a.primary {
                    body.push_str(" secondary");
                }
                body.push_str("\" href=\"");
                body.push_str(&escape(a.href));
                body.push_str("\">");
                body.push_str(&escape(a.label));
                body.push_str("</a>");
            }
            body.push_str("</p>");
        }
        body.push_str("</div></main></body></html>");
        body
    }
}

/// Headers of every page: the hash-pinned policy, no framing, no sniffing, no referrer,
/// never cached.
pub(crate) fn headers() -> Vec<(HeaderName, HeaderValue)> {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    let csp = CSP.get_or_init(|| {
        let hash = STANDARD.encode(digest(&SHA256, CSS.as_bytes()));
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'"
        );
        // Base64 and ASCII: always a valid header value.
        HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    });
    vec![
        (header::CONTENT_SECURITY_POLICY, csp.clone()),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A top-level page load (a GET or HEAD navigation, or one asking for HTML): answered
/// with a page; anything else (scripts, API and MCP clients) gets JSON.
pub(crate) fn is_page_load(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let navigate = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    navigate
        || headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_everything_and_pin_the_stylesheet() {
        let page = Page {
            title: "No <way>",
            lead: "a & b",
            who: Some("\"alice\""),
            detail: Some("<script>alert(1)</script>"),
            actions: &[Action {
                href: "/x?a=1&b=\"2\"",
                label: "Try <again>",
                primary: true,
            }],
        }
        .render();
        assert!(page.starts_with("<!doctype html><html lang=\"en\">"));
        assert!(page.contains("<title>No &lt;way&gt; · Portcullis</title>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script"));
        assert!(page.contains("href=\"/x?a=1&amp;b=&quot;2&quot;\""));
        assert!(page.contains("Signed in as <strong>&quot;alice&quot;</strong>"));
        let inline = page
            .split("<style>")
            .nth(1)
            .and_then(|rest| rest.split("</style>").next())
            .unwrap();
        assert_eq!(inline, CSS);
        let csp = headers()
            .into_iter()
            .find(|(n, _)| n == header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .1;
        let want = STANDARD.encode(digest(&SHA256, inline.as_bytes()));
        assert!(
            csp.to_str().unwrap().contains(&format!("'sha256-{want}'")),
            "{csp:?}"
        );
        assert!(!csp.to_str().unwrap().contains("unsafe"));
    }

    #[test]
    fn page_loads_are_gets_for_html() {
        let mut h = HeaderMap::new();
        assert!(!is_page_load(&Method::GET, &h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert!(is_page_load(&Method::GET, &h));
        assert!(!is_page_load(&Method::POST, &h));
        let mut nav = HeaderMap::new();
        nav.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_page_load(&Method::HEAD, &nav));
        let mut json = HeaderMap::new();
        json.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(!is_page_load(&Method::GET, &json));
    }
}
