//! The pages people meet when they sign in: the authorization server's chooser, consent,
//! device and error pages. One layout and one stylesheet ([`CSS`]: the console's
//! `ui/style.css` followed by the few rules of `pages/page.css`), so they look like the
//! console; the data planes' refusal pages inline the same two files under a hash-based CSP
//! (they may not claim a path on a proxied host). Served at [`CSS_PATH`] by the OAuth
//! router, so an auth host that publishes only the OAuth paths still styles its pages.
//!
//! Invariants: every piece of text put into a page goes through [`escape`] (callers pass
//! already-escaped HTML fragments only); pages run no script and load nothing but the
//! stylesheet from this origin (`default-src 'none'; style-src 'self'`), cannot be framed,
//! and are never cached. Imports nothing of the crate.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet, built into the binary: the console's, then the pages' own rules.
pub const CSS: &str = concat!(
    include_str!("../ui/style.css"),
    include_str!("pages/page.css")
);
/// Where the control plane serves [`CSS`].
pub const CSS_PATH: &str = "/oauth/page.css";

/// The policy of every page: nothing but our stylesheet, no framing, no base, no script.
/// No `form-action`: the consent form's answer redirects to the client's origin, which
/// Chromium would check against it.
const CSP: &str = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
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

/// A page: `title` is text (escaped here), `body` is HTML built from escaped parts.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · Portcullis</title><link rel=\"stylesheet\" href=\"{CSS_PATH}\"></head>\
         <body><main class=\"page\"><p class=\"page-brand\"><span class=\"logo\" aria-hidden=\"true\">▦</span> \
         Portcullis</p><div class=\"card\"><h1>{title}</h1>{body}</div></main></body></html>"
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /oauth/page.css`: public, cacheable for an hour.
pub async fn stylesheet() -> Response {
    let mut resp = CSS.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An `<a class="button">` (the console's button look; `secondary` unless `primary`) with
/// an escaped `href` and label.
pub fn link_button(href: &str, label: &str, primary: bool) -> String {
    format!(
        "<a class=\"button{}\" href=\"{}\">{}</a>",
        if primary { "" } else { " secondary" },
        escape(href),
        escape(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_defuses_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[tokio::test]
    async fn pages_have_a_language_a_title_and_a_strict_policy() {
        let resp = page(StatusCode::FORBIDDEN, "No <entry>", "<p>why</p>");
        assert_eq!(resp.status(), 403);
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.starts_with("<!doctype html><html lang=\"en\">"),
            "{body}"
        );
        assert!(
            body.contains("<title>No &lt;entry&gt; · Portcullis</title>"),
            "{body}"
        );
        assert!(body.contains(&format!("href=\"{CSS_PATH}\"")), "{body}");
        assert!(!body.contains("<script"), "{body}");
        assert!(!body.contains("style="), "no inline style: {body}");
    }
}
