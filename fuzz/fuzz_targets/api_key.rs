//! Any text as an API key: the format check never panics, accepts only keys of the documented
//! shape, and a lookup in a table never matches a key that is not in it.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::api_keys::{self, KeyTable, KEY_LEN, PREFIX};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static (KeyTable, String) {
    static TABLE: OnceLock<(KeyTable, String)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let (key, entry) = api_keys::new_entry(Some("k"), "svc", &[], &[], None).expect("a new key");
        let path = std::env::temp_dir().join(format!("authgate-fuzz-keys-{}.toml", std::process::id()));
        std::fs::write(&path, entry).expect("temporary keys file");
        let table = api_keys::load_file(&path, &[]).expect("the entry parses back");
        let _ = std::fs::remove_file(&path);
        (table, key)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if api_keys::well_formed(text) {
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with(PREFIX));
    }
    let (table, key) = table();
    if table.check(text, 0).is_ok() {
        assert_eq!(text, key, "a key that is not in the table matched");
    }
    let _ = api_keys::hash_text(text);
});
