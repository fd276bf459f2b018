//! The `kessel-signature` header: an HMAC-SHA256 over `"<t>.<body>"`
//! with a shared secret, and its check on the receiving side.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The name of the header kessel signs every callback with.
///
/// ```
/// assert_eq!(kessel::webhook::SIGNATURE_HEADER, "kessel-signature");
/// ```
pub const SIGNATURE_HEADER: &str = "kessel-signature";

/// Why [`verify_signature`] refused a callback.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::webhook::{verify_signature, SignatureError};
/// let err = verify_signature(b"secret", "v1=abc", b"{}", Duration::from_secs(300)).unwrap_err();
/// assert!(matches!(err, SignatureError::Malformed { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The header is not `t=<unix seconds>,v1=<64 hex digits>[,v1=...]`.
    #[error("malformed {SIGNATURE_HEADER} header: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// No `v1` signature matches the body with this secret: the body was
    /// changed, or it was signed with another secret.
    #[error("the {SIGNATURE_HEADER} header does not match the body with this secret")]
    Mismatch,
    /// The timestamp is further from now than the tolerance: an old
    /// callback replayed, or clocks far apart.
    #[error("the callback was signed at {timestamp}, {age_seconds}s from now, outside the {tolerance:?} window")]
    OutsideWindow {
        /// The header's `t`, in Unix seconds.
        timestamp: i64,
        /// How far that is from now, in seconds (negative: in the future).
        age_seconds: i64,
        /// The tolerance it was checked against.
        tolerance: Duration,
    },
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `kessel-signature` header value for `body` signed with `secret` at
/// `timestamp` (Unix seconds): `t=<timestamp>,v1=<hex HMAC-SHA256 of
/// "<timestamp>.<body>">`. kessel signs every callback this way; use it to
/// test a receiver.
///
/// # Examples
///
/// ```
/// let header = kessel::webhook::sign(b"secret", 1_700_000_000, br#"{"status":"completed"}"#);
/// assert!(header.starts_with("t=1700000000,v1="));
/// assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
/// ```
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let mut header = format!("t={timestamp},v1=");
    for byte in digest.iter() {
        header.push_str(&format!("{byte:02x}"));
    }
    header
}

/// Checks a callback on the receiving side: `header` is the request's
/// `kessel-signature` header, `body` its raw body (the bytes as they came,
/// before any JSON parsing), `secret` the shared secret the sender was
/// given under the name the task's callback uses. Accepts when a `v1`
/// signature matches (compared in constant time) and the timestamp is
/// within `tolerance` of now (five minutes is usual): an older callback
/// could be a replay. Several `v1` entries are allowed; one match is
/// enough.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when the header cannot be read,
/// [`SignatureError::Mismatch`] when no signature fits the body and
/// secret, [`SignatureError::OutsideWindow`] when it is too old (or too
/// far in the future).
///
/// # Examples
///
/// A receiver's check, here with a header made by [`sign`]:
///
/// ```
/// use std::time::Duration;
/// use kessel::webhook::{sign, verify_signature, SignatureError};
///
/// let secret = b"whsec-42";
/// let body = br#"{"job_id":"...","status":"completed"}"#;
/// let header = sign(secret, chrono::Utc::now().timestamp(), body);
/// let window = Duration::from_secs(300);
/// assert_eq!(verify_signature(secret, &header, body, window), Ok(()));
/// assert_eq!(
///     verify_signature(secret, &header, br#"{"status":"buried"}"#, window),
///     Err(SignatureError::Mismatch)
/// );
/// ```
pub fn verify_signature(
    secret: impl AsRef<[u8]>,
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_signature_at(secret, header, body, tolerance, Utc::now())
}

/// [`verify_signature`] as of `now` rather than the system clock.
///
/// # Errors
///
/// As [`verify_signature`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use chrono::TimeZone;
/// use kessel::webhook::{sign, verify_signature_at, SignatureError};
///
/// let header = sign(b"k", 1_700_000_000, b"{}");
/// let now = chrono::Utc.timestamp_opt(1_700_000_000 + 600, 0).unwrap();
/// let err = verify_signature_at(b"k", &header, b"{}", Duration::from_secs(300), now).unwrap_err();
/// assert!(matches!(err, SignatureError::OutsideWindow { age_seconds: 600, .. }));
/// ```
pub fn verify_signature_at(
    secret: impl AsRef<[u8]>,
    header: &str,
    body: &[u8],
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let malformed = |reason: &str| SignatureError::Malformed {
        reason: reason.to_owned(),
    };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(malformed("every entry must be `key=value`"));
        };
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| malformed("`t` must be Unix seconds"))?;
                if timestamp.replace(t).is_some() {
                    return Err(malformed("`t` is given twice"));
                }
            }
            "v1" => {
                signatures.push(decode_hex(value).ok_or_else(|| {
                    malformed("`v1` must be 64 hexadecimal digits (an HMAC-SHA256)")
                })?)
            }
            // Room for later schemes: unknown keys are skipped.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no `t` timestamp"))?;
    if signatures.is_empty() {
        return Err(malformed("no `v1` signature"));
    }
    let age_seconds = now.timestamp().saturating_sub(timestamp);
    let limit = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if age_seconds.unsigned_abs() > limit.unsigned_abs() {
        return Err(SignatureError::OutsideWindow {
            timestamp,
            age_seconds,
            tolerance,
        });
    }
    let expected = mac(secret.as_ref(), timestamp, body);
    if signatures
        .iter()
        .any(|sig| expected.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// 64 hexadecimal digits as 32 bytes.
fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        *byte = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn at(t: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(t, 0).unwrap()
    }

    #[test]
    fn a_signature_made_by_sign_verifies_within_the_window() {
        let header = sign(b"main", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify_signature_at(b"main", &header, b"{\"a\":1}", WINDOW, at(1_700_000_100)),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let header = sign(b"main", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify_signature_at(b"main", &header, b"{\"a\":2}", WINDOW, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_secret_is_a_mismatch() {
        let header = sign(b"main", 1_700_000_000, b"{}");
        assert_eq!(
            verify_signature_at(b"other", &header, b"{}", WINDOW, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_timestamp_is_a_mismatch() {
        let header = sign(b"main", 1_700_000_000, b"{}").replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify_signature_at(b"main", &header, b"{}", WINDOW, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_older_or_newer_than_the_window_is_refused() {
        let header = sign(b"main", 1_700_000_000, b"{}");
        let old = verify_signature_at(b"main", &header, b"{}", WINDOW, at(1_700_000_301));
        assert!(matches!(
            old,
            Err(SignatureError::OutsideWindow {
                age_seconds: 301,
                ..
            })
        ));
        let early = verify_signature_at(b"main", &header, b"{}", WINDOW, at(1_699_999_699));
        assert!(matches!(
            early,
            Err(SignatureError::OutsideWindow {
                age_seconds: -301,
                ..
            })
        ));
        // The window's edge itself is inside.
        assert_eq!(
            verify_signature_at(b"main", &header, b"{}", WINDOW, at(1_700_000_300)),
            Ok(())
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = sign(b"new", 1_700_000_000, b"{}");
        let other = sign(b"old", 1_700_000_000, b"{}");
        let header = format!("{},{}", other, &good["t=1700000000,".len()..]);
        assert_eq!(
            verify_signature_at(b"new", &header, b"{}", WINDOW, at(1_700_000_000)),
            Ok(())
        );
    }

    #[test]
    fn headers_without_a_timestamp_or_signature_are_malformed() {
        for header in ["", "v1=00", "t=1", "t=x,v1=00", "t=1,t=1,v1=00", "garbage"] {
            assert!(
                matches!(
                    verify_signature_at(b"k", header, b"{}", WINDOW, at(1)),
                    Err(SignatureError::Malformed { .. })
                ),
                "{header:?} was not malformed"
            );
        }
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_arbitrary_header_text(header in ".*", body in proptest::collection::vec(any::<u8>(), 0..64), now in any::<i32>(), tolerance in any::<u64>()) {
            let _ = verify_signature_at(b"k", &header, &body, Duration::from_secs(tolerance), at(i64::from(now)));
        }

        #[test]
        fn verify_never_panics_on_near_miss_headers(t in any::<i64>(), sig in "[0-9a-fA-F]{0,70}", extra in "[,= a-z0-9]{0,12}") {
            let header = format!("t={t},v1={sig}{extra}");
            let _ = verify_signature_at(b"k", &header, b"{}", Duration::from_secs(300), at(0));
        }
    }
}
