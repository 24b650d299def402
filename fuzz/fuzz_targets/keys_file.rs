//! A keys file means one thing whichever parser reads it: whatever the fast line parser
//! accepts, the full TOML parser accepts with the same entries at the same places. Building the
//! table never panics.
#![no_main]

use authgate::fuzzing::{keys_file_fast, keys_file_full, keys_file_load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = keys_file_fast(source) {
        match keys_file_full(source) {
            Ok(full) => assert_eq!(fast, full, "the parsers read {source:?} differently"),
            Err(error) => panic!("the fast parser accepted {source:?}, TOML refuses it: {error}"),
        }
    }
    let _ = keys_file_load(source);
});
