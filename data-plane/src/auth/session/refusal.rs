//! Why a redirect-mode login ended without a session, told to the person in the browser.
//!
//! The authorization server answers a refused login with `error=access_denied` and an
//! `error_description` whose start says why (`control-plane/src/oauth/authorize.rs`:
//! `RULES_REFUSED`, `IDP_ENDED`, `DECLINED`); this module sorts by those starts and shows
//! the description itself only escaped, cut to [`MAX_SHOWN`] characters and without control
//! characters. The query is only read after the state matched this browser's login, so
//! only the authorization server (or whoever holds the state) chooses this text. Never a
//! token or code: the callback carries neither on this path.

use http::{HeaderName, HeaderValue, StatusCode, Uri};

use super::LOGIN;
use crate::answer::{Action, Page, Rejection};

/// The `prompt` value that asks the identity provider to let the user pick an account.
pub(super) const SELECT_ACCOUNT: &str = "select_account";
/// Longest part of the server's description shown.
pub(super) const MAX_SHOWN: usize = 200;
/// Description starts the authorization server uses (kept equal to its constants).
const RULES_REFUSED: &str = "the login rules do not allow this user here";
const IDP_ENDED: &str = "the sign-in was cancelled or failed at the identity provider";
const DECLINED: &str = "the user declined";

/// The kinds of refused logins a user should tell apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The login rules do not admit this account; `who` as the server named it.
    Rules { who: Option<String> },
    /// Cancelled (or failed) at the identity provider, or declined on the consent page.
    Cancelled,
    /// Any other error the authorization server sent.
    Other,
}

impl Refusal {
    /// Sorts an error answer by its code and description.
    pub(super) fn sort(error: &str, description: &str) -> Self {
        if error != "access_denied" {
            return Self::Other;
        }
        if let Some(rest) = description.strip_prefix(RULES_REFUSED) {
            let who = rest
                .strip_prefix(": ")
                .filter(|w| !w.is_empty())
                .map(str::to_owned);
            return Self::Rules { who };
        }
        if description.starts_with(IDP_ENDED) || description.starts_with(DECLINED) {
            return Self::Cancelled;
        }
        Self::Other
    }

    /// The page for this refusal.
    pub(super) fn page<'a>(
        &'a self,
        description: &'a str,
        error: &'a str,
        actions: &'a [Action<'a>],
    ) -> Page<'a> {
        match self {
            Self::Rules { who } => Page {
                title: "Access denied",
                lead: "You signed in, but this account is not allowed to use this site. \
                       Sign in with another account, or ask the site's administrator for access.",
                who: who.as_deref(),
                detail: Some(description),
                actions,
            },
            Self::Cancelled => Page {
                title: "Sign-in cancelled",
                lead: "The sign-in was cancelled (or failed) before you were signed in, so \
                       you are not signed in here.",
                who: None,
                detail: Some(description),
                actions,
            },
            Self::Other => Page {
                title: "Sign-in failed",
                lead: "The sign-in service did not sign you in.",
                who: None,
                detail: Some(if description.is_empty() {
                    error
                } else {
                    description
                }),
                actions,
            },
        }
    }
}

/// The decoded value of query parameter `name`, made safe to show: at most `max`
/// characters, control characters dropped (escaping happens when rendered).
pub(super) fn query_value(uri: &Uri, name: &str, max: usize) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.chars().filter(|c| !c.is_control()).take(max).collect())
}

/// `/.portcullis/login?rd=PATH`: starts a new login that returns to `return_to` (already a
/// safe same-origin path); with `select_account` the user is asked to pick an account at
/// the identity provider ("sign in as someone else").
pub(super) fn retry_href(return_to: &str, select_account: bool) -> String {
    let start = LOGIN.len() + 1;
    let mut query = url::form_urlencoded::Serializer::for_suffix(format!("{LOGIN}?"), start);
    query.append_pair("rd", return_to);
    if select_account {
        query.append_pair("prompt", SELECT_ACCOUNT);
    }
    query.finish()
}

/// A failed callback: a page for a browser, else the JSON error; clears the login cookie.
pub(super) fn refuse(
    page: bool,
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    shown: &Page<'_>,
    clear_login: (HeaderName, HeaderValue),
) -> Rejection {
    if page {
        Rejection::page(status, shown, vec![clear_login])
    } else {
        Rejection::json_with(status, error, description, vec![clear_login])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_sorted_by_the_servers_wording() {
        assert_eq!(
            Refusal::sort(
                "access_denied",
                "the login rules do not allow this user here: bob via corp"
            ),
            Refusal::Rules {
                who: Some("bob via corp".into())
            }
        );
        assert_eq!(
            Refusal::sort("access_denied", RULES_REFUSED),
            Refusal::Rules { who: None }
        );
        assert_eq!(
            Refusal::sort(
                "access_denied",
                "the sign-in was cancelled or failed at the identity provider (access_denied)"
            ),
            Refusal::Cancelled
        );
        assert_eq!(
            Refusal::sort("access_denied", "the user declined"),
            Refusal::Cancelled
        );
        assert_eq!(Refusal::sort("access_denied", "other"), Refusal::Other);
        assert_eq!(Refusal::sort("server_error", RULES_REFUSED), Refusal::Other);
    }

    #[test]
    fn shown_values_are_decoded_capped_and_without_control_characters() {
        let long = "x".repeat(500);
        let uri: Uri = format!("/cb?error=access_denied&error_description=a%0Ab%3Cc%3E&l={long}")
            .parse()
            .unwrap();
        assert_eq!(
            query_value(&uri, "error_description", MAX_SHOWN).as_deref(),
            Some("ab<c>")
        );
        assert_eq!(
            query_value(&uri, "l", MAX_SHOWN).map(|v| v.len()),
            Some(MAX_SHOWN)
        );
        assert_eq!(query_value(&uri, "missing", MAX_SHOWN), None);
    }

    #[test]
    fn retries_return_to_the_page_first_asked_for() {
        let href = retry_href("/a+b?c=d&e", false);
        assert_eq!(href, "/.portcullis/login?rd=%2Fa%2Bb%3Fc%3Dd%26e");
        assert_eq!(
            retry_href("/", true),
            "/.portcullis/login?rd=%2F&prompt=select_account"
        );
        // What the login path reads back.
        let uri: Uri = href.parse().unwrap();
        assert_eq!(query_value(&uri, "rd", 2049).as_deref(), Some("/a+b?c=d&e"));
    }
}
