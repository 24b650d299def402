//! The one request body sign-in reads: the form a provider POSTs to the logout endpoint
//! (`logout_token=…`), bounded in size and strict (a repeated parameter is no form at all).

use std::collections::HashMap;

use http::header::CONTENT_TYPE;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// A logout token is a few kilobytes at most.
const MAX_FORM: usize = 64 * 1024;

/// The request's `application/x-www-form-urlencoded` body, or `None` when it has none, is of
/// another type, is larger than [`MAX_FORM`] or repeats a parameter.
pub async fn form(request: Request<Incoming>) -> Option<HashMap<String, String>> {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return None;
    }
    let body = Limited::new(request.into_body(), MAX_FORM)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let mut fields = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if fields
            .insert(name.into_owned(), value.into_owned())
            .is_some()
        {
            return None;
        }
    }
    Some(fields)
}
