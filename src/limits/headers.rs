//! The IETF rate-limit fields, draft-ietf-httpapi-ratelimit-headers-10 and later:
//! `RateLimit-Policy: "gold";q=1000;w=1, "gold-quota";q=10000000;w=2592000` says which policies
//! apply (quota units `q` per window of `w` seconds) and `RateLimit: "gold";r=997;t=1` how much
//! is left of each (`r` units, back in full in `t` seconds). Both are Structured Field lists of
//! strings with parameters (RFC 9651); policy names are written as sf-strings.

use std::fmt::Write;

use http::HeaderValue;

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// `name` as an sf-string: quoted, with `"` and `\` escaped and anything outside printable
/// ASCII dropped (names come from the config, where they are plain already).
pub fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One `RateLimit-Policy` item: `"name";q=Q;w=W`.
pub fn policy_item(name: &str, quota: u64, window_seconds: u64) -> String {
    format!("{};q={quota};w={window_seconds}", sf_string(name))
}

/// Appends one `RateLimit` item, `"name";r=R;t=T`, to `out` (with a separator when needed).
pub fn push_item(out: &mut String, quoted_name: &str, remaining: u64, reset_seconds: u64) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    let _ = write!(out, "{quoted_name};r={remaining};t={reset_seconds}");
}

/// Appends a precomputed item to a list.
pub fn push_list(out: &mut String, item: &str) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str(item);
}

/// A header value of text built from config names and numbers.
pub fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whole seconds covering `nanos`: rounded up, so a client waiting this long is never early.
pub fn ceil_seconds(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_structured_field_strings_with_parameters() {
        assert_eq!(policy_item("gold", 1000, 1), "\"gold\";q=1000;w=1");
        assert_eq!(sf_string("a\"b\\c\n"), "\"a\\\"b\\\\c\"");
        let mut out = String::new();
        push_item(&mut out, "\"gold\"", 0, 3);
        push_item(&mut out, "\"gold-quota\"", 9, 86400);
        assert_eq!(out, "\"gold\";r=0;t=3, \"gold-quota\";r=9;t=86400");
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(1_000_000_000), 1);
        assert_eq!(ceil_seconds(1_000_000_001), 2);
        assert_eq!(ceil_seconds(0), 0);
    }
}
