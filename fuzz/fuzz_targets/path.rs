//! Path normalization and host checks on any input: a normalized path starts with `/`, holds no
//! dot segment (plain or `%2e`) and no empty segment but a trailing one, and normalizing it
//! again changes nothing. An accepted host holds nothing a backend could read as another host.
#![no_main]

use authgate::proxy::routes::{normalize_path, routing_host};
use authgate::proxy::validate::valid_authority;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(normalized) = normalize_path(text) {
        assert!(normalized.starts_with('/'), "{text:?} → {normalized:?}");
        let segments: Vec<&str> = normalized[1..].split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            let lower = segment.to_ascii_lowercase().replace("%2e", ".");
            assert!(lower != "." && lower != "..", "{text:?} → {normalized:?}");
            assert!(
                !segment.is_empty() || i == segments.len() - 1,
                "{text:?} → {normalized:?}"
            );
        }
        let again = normalize_path(&normalized).expect("a normalized path normalizes");
        assert_eq!(again, normalized, "not idempotent on {text:?}");
    }
    if valid_authority(data) {
        assert!(!data
            .iter()
            .any(|b| matches!(b, b'@' | b',' | b'/' | b' ' | b'%' | b'\\' | b'?' | b'#')));
        let host = routing_host(text);
        assert!(!host.contains(':') || host.starts_with('['), "{text:?}");
    }
});
