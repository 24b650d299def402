//! Taking the credential out of a request: exactly one, from exactly one place.
//!
//! A bearer token comes from the `Authorization` header (scheme case-insensitive, RFC 6750
//! §2.1) or, when the route names one, a cookie. Two `Authorization` headers, or a token in both
//! places, is ambiguous and refused: a gateway that picks one may pick differently from the
//! backend behind it. Tokens in the query string are never read.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::error::AuthError;

/// The bearer token of a request, if it carries one; an error if it carries a malformed one or
/// more than one.
pub fn bearer<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<&'h str>, AuthError> {
    let mut from_header = None;
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = authorizations.next() {
        if authorizations.next().is_some() {
            return Err(AuthError::Ambiguous);
        }
        let value = value.to_str().map_err(|_| AuthError::MalformedCredential)?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AuthError::MalformedCredential)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::UnsupportedScheme);
        }
        from_header = Some(b64token(token)?);
    }
    let from_cookie = match cookie {
        Some(name) => cookie_value(headers, name)?,
        None => None,
    };
    match (from_header, from_cookie) {
        (Some(_), Some(_)) => Err(AuthError::Ambiguous),
        (Some(token), None) => Ok(Some(token)),
        (None, Some(token)) => Ok(Some(b64token(token)?)),
        (None, None) => Ok(None),
    }
}

/// The one value of `header`, if present; two of them are ambiguous.
pub fn single<'h>(
    headers: &'h HeaderMap,
    header: &http::HeaderName,
) -> Result<Option<&'h str>, AuthError> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Ambiguous);
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| AuthError::MalformedCredential)
}

/// Whether `b` may appear in a `b64token` (before its `=` padding). Every request with a token
/// checks each of its bytes (often 500 or more), so this is written as comparisons without
/// branches, which the compiler turns into vector code over many bytes at once.
fn is_b64token_byte(b: u8) -> bool {
    // `| 0x20` folds A–Z onto a–z; 0x2B..=0x39 is `+ , - . /` and the digits, less the comma.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let sign_or_digit = b.wrapping_sub(b'+') <= b'9' - b'+' && b != b',';
    letter | sign_or_digit | (b == b'_') | (b == b'~')
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn b64token(token: &str) -> Result<&str, AuthError> {
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body
            .bytes()
            .fold(true, |valid, b| valid & is_b64token_byte(b));
    if valid {
        Ok(token)
    } else {
        Err(AuthError::MalformedCredential)
    }
}

/// The value of cookie `name`; two cookies of that name are ambiguous.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return Err(AuthError::Ambiguous);
                }
                found = Some(value.trim_matches('"'));
            }
        }
    }
    Ok(found)
}

/// Whether a `Cookie` header holds a cookie called `name`.
pub fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .any(|pair| {
            pair.trim()
                .split_once('=')
                .is_some_and(|(key, _)| key == name)
        })
}

/// Removes the credentials the gateway consumes, so the upstream never sees them: the
/// `Authorization` header, the API key header, and the token cookies (other cookies are kept).
pub fn remove(
    headers: &mut HeaderMap,
    api_key_header: Option<&http::HeaderName>,
    token_cookies: &[String],
) {
    headers.remove(AUTHORIZATION);
    if let Some(header) = api_key_header {
        headers.remove(header);
    }
    remove_cookies(headers, token_cookies);
}

/// Removes the cookies called one of `names` from the `Cookie` headers, keeping every other
/// cookie (joined into one header).
pub fn remove_cookies(headers: &mut HeaderMap, names: &[String]) {
    if names.is_empty() || !headers.contains_key(COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(key, _)| !names.iter().any(|name| name == key))
        })
        .map(str::to_string)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = http::HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn one_bearer_token_in_any_scheme_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER abc.def.ghi",
        ] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(bearer(&map, None).unwrap(), Some("abc.def.ghi"));
        }
        assert_eq!(bearer(&HeaderMap::new(), None).unwrap(), None);
    }

    #[test]
    fn two_credentials_are_ambiguous() {
        let twice = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert!(matches!(bearer(&twice, None), Err(AuthError::Ambiguous)));
        let both = headers(&[("authorization", "Bearer a.b.c"), ("cookie", "at=d.e.f")]);
        assert!(matches!(
            bearer(&both, Some("at")),
            Err(AuthError::Ambiguous)
        ));
        let two_cookies = headers(&[("cookie", "at=a.b.c; at=d.e.f")]);
        assert!(matches!(
            bearer(&two_cookies, Some("at")),
            Err(AuthError::Ambiguous)
        ));
    }

    #[test]
    fn malformed_credentials_are_refused() {
        for value in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\"b", "Token"] {
            let map = headers(&[("authorization", value)]);
            assert!(bearer(&map, None).is_err(), "{value}");
        }
        let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert!(matches!(
            bearer(&basic, None),
            Err(AuthError::UnsupportedScheme)
        ));
    }

    #[test]
    fn b64token_bytes_are_the_rfc_6750_alphabet() {
        for b in 0..=u8::MAX {
            let rfc = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64token_byte(b), rfc, "byte {b}");
        }
        assert!(b64token("a-b.c_d~e+f/g==").is_ok());
        for refused in ["", "==", "a=b", "a b", "ab\u{e9}", "a,b"] {
            assert!(b64token(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_cookie_is_read_only_when_named() {
        let map = headers(&[("cookie", "theme=dark; at=a.b.c")]);
        assert_eq!(bearer(&map, None).unwrap(), None);
        assert_eq!(bearer(&map, Some("at")).unwrap(), Some("a.b.c"));
    }

    #[test]
    fn removal_keeps_other_cookies() {
        let mut map = headers(&[
            ("authorization", "Bearer x"),
            ("cookie", "theme=dark; at=a.b.c"),
            ("cookie", "lang=en"),
        ]);
        remove(&mut map, None, &["at".to_string()]);
        assert!(!map.contains_key("authorization"));
        assert_eq!(map["cookie"], "theme=dark; lang=en");
    }
}
