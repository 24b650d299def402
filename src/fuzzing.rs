//! Entry points for the fuzz targets in `fuzz/`: thin wrappers over parsers that are not part
//! of the public API, so the targets reach exactly the code requests and files go through.
//! Hidden from the documentation; nothing else should use them.

use http::HeaderMap;

use crate::auth::api_keys;
use crate::token_service::requests;

/// A keys file read by the fast line parser: each entry (as `Debug` text) with its byte range,
/// or `None` when the text leaves the subset it reads.
pub fn keys_file_fast(source: &str) -> Option<Vec<(String, std::ops::Range<usize>)>> {
    api_keys::fast::parse(source).map(|entries| {
        entries
            .into_iter()
            .map(|(k, r)| (format!("{k:?}"), r))
            .collect()
    })
}

/// The same file read by the full TOML parser, or its error message.
pub fn keys_file_full(source: &str) -> Result<Vec<(String, std::ops::Range<usize>)>, String> {
    api_keys::parse_full(source)
        .map(|entries| {
            entries
                .into_iter()
                .map(|(k, r)| (format!("{k:?}"), r))
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// A keys file read as [`api_keys::load_file`] reads it (fast path, else full parser), built
/// into a table: the number of keys, or the number of problems found.
pub fn keys_file_load(source: &str) -> Result<usize, usize> {
    let entries = match api_keys::fast::parse(source) {
        Some(entries) => entries,
        None => api_keys::parse_full(source).map_err(|_| 1usize)?,
    };
    api_keys::build(entries, std::path::Path::new("keys.toml"), source, &[])
        .map(|table| table.len())
        .map_err(|errors| errors.len())
}

/// The token endpoints' form parameters (`None`: refused).
pub fn token_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    requests::parse_form(body).ok()
}

/// The token endpoints' HTTP Basic client credentials: `Some(None)` when there are none,
/// `None` when they are refused.
pub fn token_basic(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    requests::basic_credentials(headers).ok()
}

/// Whether the body parses as each of the token endpoints' JSON requests (login, refresh,
/// logout).
pub fn token_json(body: &[u8]) -> [bool; 3] {
    [
        requests::parse_json::<requests::LoginRequest>(body).is_ok(),
        requests::parse_json::<requests::RefreshRequest>(body).is_ok(),
        requests::parse_json::<requests::LogoutRequest>(body).is_ok(),
    ]
}
