//! The strict JSON parser against serde_json: whatever strict accepts, serde_json accepts with
//! the same value; whatever serde_json refuses, strict refuses; strict refuses only for a
//! repeated key.
#![no_main]

use authgate::auth::strict_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Whether some object in `bytes` repeats a key, by serde_json's own reading of the objects.
fn has_duplicate_key(bytes: &[u8]) -> bool {
    // serde_json keeps the last of repeated keys, so a document with a repeat holds more
    // members as written than its parsed value does.
    let parsed = serde_json::from_slice::<Value>(bytes).map_or(0, |v| members(&v));
    count_members(bytes) > parsed
}

fn members(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(members).sum::<usize>(),
        Value::Array(items) => items.iter().map(members).sum(),
        _ => 0,
    }
}

/// Counts object members as written, with a minimal scanner over valid JSON.
fn count_members(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut stack: Vec<bool> = Vec::new(); // true = object
    let mut expect_key = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                if expect_key {
                    count += 1;
                    expect_key = false;
                }
                in_string = true;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&true),
            _ => {}
        }
    }
    count
}

fuzz_target!(|data: &[u8]| {
    let strict = strict_json::parse(data);
    let loose = serde_json::from_slice::<Value>(data);
    match (&strict, &loose) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(_), Err(e)) => panic!("strict accepted what serde_json refuses ({e})"),
        (Err(_), Ok(_)) => assert!(
            has_duplicate_key(data),
            "strict refused a document without a repeated key"
        ),
        (Err(_), Err(_)) => {}
    }
});
