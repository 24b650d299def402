//! The Wycheproof JOSE vectors (tests/vectors/wycheproof, copied unchanged from the Wycheproof
//! project under its Apache 2.0 license; see the README there) through authgate's own key
//! loading and signature layers. The payloads are the bytes `foo`, not claims sets, so claims
//! validation is not involved: a case passes when loading + `parse` + `verify_signature` accept
//! exactly the tokens the vectors mark valid.
//!
//! Key documents are loaded the way authgate loads keys: a group's `public` key (or set) as a
//! published JWK Set, and a group with only a `private` symmetric key as a local one (HMAC
//! secrets are configured, never published).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use authgate::auth::jwt;
use authgate::auth::keys::{self, KeySet, Origin};
use serde_json::{json, Value};

/// Cases whose expected result in this copy of the file is wrong (the vectors' README lists
/// them as inconsistent; each was checked), with the result authgate must give and why. Every
/// case runs; none is skipped.
const CORRECTED: &[(&str, u64, bool, &str)] = &[
    (
        "json_web_signature_test.json",
        367,
        true,
        "byte-identical token and key to the valid tc357",
    ),
    (
        "json_web_signature_test.json",
        370,
        true,
        "byte-identical token and key to the valid tc357",
    ),
    (
        "json_web_signature_test.json",
        346,
        false,
        "a PS384 token for a key whose own alg is PS256: the key's alg narrows",
    ),
    (
        "json_web_signature_test.json",
        350,
        false,
        "a PS384 token for a key whose own alg is PS256: the key's alg narrows",
    ),
    (
        "json_web_signature_test.json",
        372,
        false,
        "the header holds a literal `?`, which is not base64url",
    ),
    (
        "json_web_signature_test.json",
        373,
        false,
        "the payload holds a literal `?`, which is not base64url",
    ),
];

/// Groups whose algorithm authgate deliberately does not verify: valid tokens there are
/// expected to be refused.
fn outside_the_algorithm_set(key_document: &Value) -> bool {
    let single = |k: &Value| k.get("crv").and_then(Value::as_str) == Some("P-521");
    match key_document.get("keys").and_then(Value::as_array) {
        Some(keys) => keys.iter().any(single),
        None => single(key_document),
    }
}

fn vectors(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/wycheproof")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Loads a group's key document as authgate would; `Err` when it refuses the whole document.
fn load(group: &Value) -> Result<KeySet, String> {
    let (document, origin) = match (group.get("public"), group.get("private")) {
        (Some(public), _) => (public.clone(), Origin::Published),
        (None, Some(private)) => (private.clone(), Origin::Local),
        (None, None) => return Err("no key".into()),
    };
    let set = if document.get("keys").is_some() {
        document
    } else {
        json!({ "keys": [document] })
    };
    KeySet::from_jwks(&set, origin, &keys::SUPPORTED).map(|(set, _refused)| set)
}

fn verify(keys: &Result<KeySet, String>, token: &str) -> bool {
    let Ok(keys) = keys else { return false };
    jwt::parse(token)
        .and_then(|parsed| jwt::verify_signature(&parsed, keys))
        .is_ok()
}

fn run(file: &str) -> (usize, Vec<String>) {
    let document = vectors(file);
    let mut ran = 0;
    let mut mismatches = Vec::new();
    for group in document["testGroups"].as_array().unwrap() {
        let keys = load(group);
        let key_document = group.get("public").or(group.get("private")).unwrap();
        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            ran += 1;
            let token = case["jws"].as_str().unwrap();
            let mut expected_valid = case["result"] == "valid";
            if outside_the_algorithm_set(key_document) {
                // ES512 (P-521) is outside authgate's algorithm set: refused, never verified.
                expected_valid = false;
            }
            if let Some((_, _, corrected, _)) =
                CORRECTED.iter().find(|(f, c, _, _)| *f == file && *c == id)
            {
                expected_valid = *corrected;
            }
            let accepted = verify(&keys, token);
            if accepted != expected_valid {
                mismatches.push(format!(
                    "{file} tc{id} ({} / {}): expected {}, got {}",
                    group["comment"],
                    case["comment"],
                    if expected_valid { "valid" } else { "invalid" },
                    if accepted { "valid" } else { "invalid" },
                ));
            }
        }
    }
    (ran, mismatches)
}

#[test]
fn json_web_signature_vectors() {
    let (ran, mismatches) = run("json_web_signature_test.json");
    assert_eq!(ran, 401);
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn json_web_key_vectors() {
    let (ran, mismatches) = run("json_web_key_test.json");
    assert_eq!(ran, 26);
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
