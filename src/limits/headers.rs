//! The IETF rate-limit fields, draft-ietf-httpapi-ratelimit-headers-10 and later:
//! `RateLimit-Policy: "gold";q=1000;w=1, "gold-quota";q=10000000;w=2592000` says which policies
//! apply (quota units `q` per window of `w` seconds) and `RateLimit: "gold";r=997;t=1` how much
//! is left of each (`r` units, back in full in `t` seconds). Both are Structured Field lists of
//! strings with parameters (RFC 9651); policy names are written as sf-strings.

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
/// Written byte by byte: this runs for every limited response, and the formatting machinery
/// costs more than the limiter itself.
pub fn push_item(out: &mut Vec<u8>, quoted_name: &str, remaining: u64, reset_seconds: u64) {
    if !out.is_empty() {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(quoted_name.as_bytes());
    out.extend_from_slice(b";r=");
    push_u64(out, remaining);
    out.extend_from_slice(b";t=");
    push_u64(out, reset_seconds);
}

/// Appends the decimal digits of `n`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `items` joined as one list.
pub fn list<'a>(items: impl Iterator<Item = &'a str>) -> HeaderValue {
    let mut out = Vec::new();
    for item in items {
        push_list(&mut out, item);
    }
    value(out)
}

/// Appends a precomputed item to a list.
pub fn push_list(out: &mut Vec<u8>, item: &str) {
    if !out.is_empty() {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(item.as_bytes());
}

/// A header value of bytes built from config names and numbers.
pub fn value(bytes: Vec<u8>) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
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
        let mut out = Vec::new();
        push_item(&mut out, "\"gold\"", 0, 3);
        push_item(&mut out, "\"gold-quota\"", 9, 86400);
        push_item(&mut out, "\"x\"", u64::MAX, 10);
        assert_eq!(
            value(out),
            "\"gold\";r=0;t=3, \"gold-quota\";r=9;t=86400, \"x\";r=18446744073709551615;t=10"
        );
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(1_000_000_000), 1);
        assert_eq!(ceil_seconds(1_000_000_001), 2);
        assert_eq!(ceil_seconds(0), 0);
    }
}
