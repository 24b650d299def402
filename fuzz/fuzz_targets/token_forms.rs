//! The token endpoints' request parsing on any input: form bodies never yield a repeated
//! parameter, Basic credentials and JSON bodies never panic.
#![no_main]

use arbitrary::Arbitrary;
use authgate::fuzzing::{token_basic, token_form, token_json};
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    body: Vec<u8>,
    authorization: Vec<u8>,
}

fuzz_target!(|input: Input| {
    if let Some(params) = token_form(&input.body) {
        for (i, (name, _)) in params.iter().enumerate() {
            assert!(params[..i].iter().all(|(seen, _)| seen != name), "{name} repeated");
        }
    }
    let _ = token_json(&input.body);
    if let Ok(value) = HeaderValue::from_bytes(&input.authorization) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Some(Some((id, _))) = token_basic(&headers) {
            let _ = id.len();
        }
    }
});
