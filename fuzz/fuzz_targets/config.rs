//! Any text as gateway.toml: parsing and validation (what `authgate check` runs) never panic.
#![no_main]

use std::path::Path;

use authgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths point into a directory that does not exist, so nothing on disk is read.
    let _ = Config::parse(source, Path::new("/nonexistent/authgate-fuzz/gateway.toml"));
});
