//! When to renew a certificate: pure decisions over a certificate record and the clock
//! (renewal window, jittered due time, shown status, ARI answers, backoff). The issuer acts
//! on them; the service layer shows their result. No I/O here, so every rule has a unit test.

use crate::auth;
use crate::model::pem::DEV_CERT_LIFETIME_SECS;
use crate::model::{AriState, CertStatus, CertificateRecord};

/// Longest wait between retries of a failing order.
const MAX_BACKOFF_SECS: i64 = 6 * 3600;

/// Bounds on the CA's `Retry-After` for renewal info: often enough to react to a revocation
/// campaign, rarely enough not to hammer the CA (RFC 9773 §4.3.2 asks clients to clamp it).
const ARI_MIN_RECHECK_SECS: i64 = 60;
/// See [`ARI_MIN_RECHECK_SECS`].
const ARI_MAX_RECHECK_SECS: i64 = 24 * 3600;
/// How soon to ask again after a failed renewal-info request.
const ARI_ERROR_RECHECK_SECS: i64 = 3600;

/// The window in which `rec` should be renewed, as `(start, end)` Unix seconds: the CA's
/// suggestion (ACME Renewal Information) when it gave a usable one, else the span just
/// before one third of the lifetime is left (one twentieth of the lifetime wide).
pub fn renewal_window(rec: &CertificateRecord) -> (i64, i64) {
    let ari = &rec.ari;
    if ari.window_start > 0 && ari.window_end > ari.window_start {
        return (ari.window_start, ari.window_end);
    }
    let lifetime = (rec.not_after - rec.not_before).max(0);
    let end = rec.not_after - lifetime / 3;
    (end - lifetime / 20, end)
}

/// When `rec` should be renewed: a point inside [`renewal_window`] derived from its name, so
/// a fleet of certificates does not renew at once (RFC 9773 asks for a random point in the
/// window; a stable one keeps control planes sharing a store in agreement).
pub fn renewal_due(rec: &CertificateRecord) -> i64 {
    let (start, end) = renewal_window(rec);
    let span = (end - start).max(0) + 1;
    let hash = auth::hash_secret(&rec.name);
    let jitter = i64::from_str_radix(&hash[..8], 16).unwrap_or(0) % span;
    end - jitter
}

/// The status the API shows: a stored `valid` becomes `expiring` once the renewal is due
/// and no renewal has replaced the certificate yet (each success moves the window).
pub fn shown_status(rec: &CertificateRecord, now: i64) -> CertStatus {
    if rec.status == CertStatus::Valid && rec.not_after > 0 && now >= renewal_due(rec) {
        CertStatus::Expiring
    } else {
        rec.status
    }
}

/// What a renewal-info request to the CA came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AriAnswer {
    /// The CA's suggested window (Unix seconds) and when to ask again (seconds from now).
    Window {
        /// Window start.
        start: i64,
        /// Window end.
        end: i64,
        /// The CA's `Retry-After`, in seconds.
        retry_after: i64,
    },
    /// The directory advertises no `renewalInfo`: use one third of the lifetime.
    Unsupported,
    /// The request failed; keep what we knew and ask again later.
    Failed,
}

/// The ARI state after `answer`: a usable window replaces the old one; a CA without ARI
/// clears it (one third of the lifetime applies); a failure or a malformed window keeps the
/// previous window. The next check honours `Retry-After` within sane bounds.
pub fn next_ari_state(previous: &AriState, answer: AriAnswer, now: i64) -> AriState {
    match answer {
        AriAnswer::Window {
            start,
            end,
            retry_after,
        } if start > 0 && end > start => AriState {
            window_start: start,
            window_end: end,
            next_check: now + retry_after.clamp(ARI_MIN_RECHECK_SECS, ARI_MAX_RECHECK_SECS),
        },
        AriAnswer::Unsupported => AriState {
            window_start: 0,
            window_end: 0,
            next_check: now + ARI_MAX_RECHECK_SECS,
        },
        AriAnswer::Window { .. } | AriAnswer::Failed => AriState {
            next_check: now + ARI_ERROR_RECHECK_SECS,
            ..previous.clone()
        },
    }
}

/// Capped exponential backoff after `failures` failed attempts.
pub fn retry_backoff(failures: u32) -> i64 {
    (60i64 << failures.min(12)).min(MAX_BACKOFF_SECS)
}

/// What the renewer should do with one certificate now.
#[derive(Debug, PartialEq, Eq)]
pub enum RenewAction {
    /// Nothing yet.
    Wait,
    /// Past `not_after`: mark it expired (and order again).
    Expire,
    /// Order a new certificate.
    Order,
}

/// Decides, for ACME and development certificates, whether to renew, retry or expire.
/// Uploaded ones are the user's to replace.
pub fn renew_action(rec: &CertificateRecord, now: i64) -> RenewAction {
    use crate::model::CertSource;
    if rec.source == CertSource::Uploaded || rec.status == CertStatus::Pending {
        return RenewAction::Wait;
    }
    // Development certificates made before they had a bounded lifetime (valid until 4096,
    // one subject for all) are replaced now.
    if rec.source == CertSource::SelfSigned
        && rec.status == CertStatus::Valid
        && rec.not_after - rec.not_before > DEV_CERT_LIFETIME_SECS
    {
        return RenewAction::Order;
    }
    if rec.status == CertStatus::Valid && rec.not_after > 0 && now >= rec.not_after {
        return RenewAction::Expire;
    }
    let backoff_over = rec.renewal_failures == 0
        || now - rec.last_attempt_at >= retry_backoff(rec.renewal_failures);
    let due = match rec.status {
        CertStatus::Valid | CertStatus::Expiring => now >= renewal_due(rec),
        CertStatus::Failed | CertStatus::Expired => true,
        CertStatus::Pending => false,
    };
    if due && backoff_over {
        RenewAction::Order
    } else {
        RenewAction::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CertSource, ChallengeKind};

    fn rec(status: CertStatus, not_before: i64, not_after: i64) -> CertificateRecord {
        CertificateRecord {
            name: "c".into(),
            domains: vec!["a.example.com".into()],
            owner_token_id: String::new(),
            source: CertSource::Acme,
            acme_directory: String::new(),
            email: String::new(),
            challenge: ChallengeKind::Http01,
            status,
            error: String::new(),
            issuer: String::new(),
            not_before,
            not_after,
            last_attempt_at: 0,
            created_at: 0,
            renewal_failures: 0,
            ari: AriState::default(),
            cert_chain_pem: String::new(),
            private_key_sealed: String::new(),
        }
    }

    #[test]
    fn renews_with_a_third_of_the_lifetime_left() {
        let day = 86_400;
        let r = rec(CertStatus::Valid, 0, 90 * day);
        let due = renewal_due(&r);
        assert!(due <= 60 * day && due > 60 * day - 5 * day, "{due}");
        assert_eq!(renew_action(&r, 30 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 61 * day), RenewAction::Order);
        assert_eq!(renew_action(&r, 90 * day), RenewAction::Expire);
    }

    #[test]
    fn development_certificates_renew_like_acme_ones_and_uploads_never() {
        let day = 86_400;
        let mut r = rec(CertStatus::Valid, 0, 90 * day);
        r.source = CertSource::SelfSigned;
        assert_eq!(renew_action(&r, 30 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 61 * day), RenewAction::Order);
        assert_eq!(renew_action(&r, 90 * day), RenewAction::Expire);
        // Those made before the lifetime was bounded (valid until 4096) are replaced now.
        let mut old = rec(CertStatus::Valid, 0, 66_000_000_000);
        old.source = CertSource::SelfSigned;
        assert_eq!(renew_action(&old, day), RenewAction::Order);
        r.source = CertSource::Uploaded;
        for t in [61 * day, 90 * day, i64::MAX] {
            assert_eq!(renew_action(&r, t), RenewAction::Wait);
        }
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_backoff(0), 60);
        assert_eq!(retry_backoff(3), 480);
        assert_eq!(retry_backoff(30), MAX_BACKOFF_SECS);
        let mut r = rec(CertStatus::Failed, 0, 0);
        r.renewal_failures = 2;
        r.last_attempt_at = 1000;
        assert_eq!(renew_action(&r, 1000 + 100), RenewAction::Wait);
        assert_eq!(renew_action(&r, 1000 + 240), RenewAction::Order);
        let mut s = rec(CertStatus::Valid, 0, 0);
        s.source = CertSource::Uploaded;
        assert_eq!(renew_action(&s, i64::MAX), RenewAction::Wait);
    }

    #[test]
    fn valid_certificates_show_expiring_once_renewal_is_due() {
        let day = 86_400;
        let r = rec(CertStatus::Valid, 0, 90 * day);
        let due = renewal_due(&r);
        assert_eq!(shown_status(&r, 10 * day), CertStatus::Valid);
        assert_eq!(shown_status(&r, due - 1), CertStatus::Valid);
        assert_eq!(shown_status(&r, due), CertStatus::Expiring);
        // Still expiring after not_after until the renewer marks it expired.
        assert_eq!(shown_status(&r, 91 * day), CertStatus::Expiring);
        // A renewal that succeeded moves the window: valid again.
        let renewed = rec(CertStatus::Valid, 61 * day, 151 * day);
        assert_eq!(shown_status(&renewed, 61 * day), CertStatus::Valid);
        // Other states are shown as stored; a record without validity is never expiring.
        for s in [CertStatus::Pending, CertStatus::Failed, CertStatus::Expired] {
            assert_eq!(shown_status(&rec(s, 0, 90 * day), 89 * day), s);
        }
        assert_eq!(
            shown_status(&rec(CertStatus::Valid, 0, 0), 89 * day),
            CertStatus::Valid
        );
        // The CA's window, when given, decides instead of the lifetime.
        let mut ari = rec(CertStatus::Valid, 0, 90 * day);
        ari.ari = AriState {
            window_start: 20 * day,
            window_end: 21 * day,
            next_check: 0,
        };
        assert_eq!(shown_status(&ari, 19 * day), CertStatus::Valid);
        assert_eq!(shown_status(&ari, 21 * day), CertStatus::Expiring);
    }

    #[test]
    fn renewal_window_prefers_a_usable_ari_window() {
        let day = 86_400;
        let mut r = rec(CertStatus::Valid, 0, 90 * day);
        // No ARI: the span before one third of the lifetime is left.
        assert_eq!(renewal_window(&r), (60 * day - 90 * day / 20, 60 * day));
        r.ari = AriState {
            window_start: 10 * day,
            window_end: 12 * day,
            next_check: 0,
        };
        assert_eq!(renewal_window(&r), (10 * day, 12 * day));
        let due = renewal_due(&r);
        assert!((10 * day..=12 * day).contains(&due), "{due}");
        assert_eq!(renew_action(&r, 9 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 12 * day), RenewAction::Order);
        // An inverted or empty window is not usable.
        for (start, end) in [(12 * day, 10 * day), (5, 5), (0, 12 * day)] {
            r.ari.window_start = start;
            r.ari.window_end = end;
            assert_eq!(renewal_window(&r), (60 * day - 90 * day / 20, 60 * day));
        }
    }

    #[test]
    fn ari_answers_update_the_window_and_the_next_check() {
        let now = 1_000_000;
        let old = AriState {
            window_start: 10,
            window_end: 20,
            next_check: 5,
        };
        let got = next_ari_state(
            &old,
            AriAnswer::Window {
                start: 100,
                end: 200,
                retry_after: 6 * 3600,
            },
            now,
        );
        assert_eq!(
            got,
            AriState {
                window_start: 100,
                window_end: 200,
                next_check: now + 6 * 3600
            }
        );
        // Retry-After is clamped to [1 minute, 1 day].
        let w = |retry_after| AriAnswer::Window {
            start: 100,
            end: 200,
            retry_after,
        };
        assert_eq!(next_ari_state(&old, w(0), now).next_check, now + 60);
        assert_eq!(
            next_ari_state(&old, w(i64::MAX), now).next_check,
            now + 24 * 3600
        );
        // No ARI at this CA: one third of the lifetime applies; ask again in a day.
        assert_eq!(
            next_ari_state(&old, AriAnswer::Unsupported, now),
            AriState {
                window_start: 0,
                window_end: 0,
                next_check: now + 24 * 3600
            }
        );
        // A failure or a malformed window keeps what we knew; ask again in an hour.
        let bad = AriAnswer::Window {
            start: 200,
            end: 100,
            retry_after: 60,
        };
        for answer in [AriAnswer::Failed, bad] {
            let got = next_ari_state(&old, answer, now);
            assert_eq!((got.window_start, got.window_end), (10, 20));
            assert_eq!(got.next_check, now + 3600);
        }
    }
}
