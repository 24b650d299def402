//! Deserializing gateway.toml while collecting every key it does not know, so that one `check`
//! reports all unknown keys together with every validation error, instead of stopping at the
//! first typo. Each unknown key is placed at its own file:line:col through toml_edit's spans.
//!
//! The raw config structs therefore do not use `deny_unknown_fields`; this module is what
//! refuses unknown keys in their place (a config with one never loads), and its tests hold an
//! unknown key at every level of the file.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// One key the config structs do not have: its place in the source and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Byte range of the key in the source (0..0 when it cannot be found).
    pub span: Range<usize>,
    /// `unknown key `…` in [table]`.
    pub message: String,
}

/// A step from a table to a key, or from an array to an element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Deserializes `source` as `T`, returning it with every key that `T` has no field for.
pub fn deserialize<T: DeserializeOwned>(
    source: &str,
) -> Result<(T, Vec<UnknownKey>), toml::de::Error> {
    let mut paths = Vec::new();
    let value = serde_ignored::deserialize(toml::Deserializer::new(source), |path| {
        paths.push(steps(&path));
    })?;
    let document = ImDocument::parse(source).ok();
    let unknown = paths
        .into_iter()
        .map(|path| UnknownKey {
            span: document
                .as_ref()
                .and_then(|doc| key_span(doc.as_table(), &path))
                .unwrap_or(0..0),
            message: message(&path),
        })
        .collect();
    Ok((value, unknown))
}

/// The path as steps, without the wrappers serde and toml's `Spanned` add on the way.
fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    let mut steps = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    };
    match path {
        Path::Seq { index, .. } => steps.push(Step::Index(*index)),
        // `Spanned<T>` reads its value under a private key: not a key of the file.
        Path::Map { key, .. } if !key.starts_with("$__") => {
            steps.push(Step::Key(key.clone()));
        }
        _ => {}
    }
    steps
}

/// `unknown field `x` in [routes][2]`, say; the table part names where to look.
fn message(path: &[Step]) -> String {
    let Some((Step::Key(key), parents)) = path.split_last() else {
        return "unknown field".into();
    };
    if parents.is_empty() {
        return format!("unknown field `{key}` (not a table of the configuration)");
    }
    let mut table = String::new();
    for step in parents {
        match step {
            Step::Key(name) if table.is_empty() => table.push_str(name),
            Step::Key(name) => {
                table.push('.');
                table.push_str(name);
            }
            Step::Index(index) => table.push_str(&format!("[{index}]")),
        }
    }
    format!("unknown field `{key}` in [{table}]")
}

/// Where the last key of `path` is written, looking from `table`.
fn key_span(table: &dyn TableLike, path: &[Step]) -> Option<Range<usize>> {
    match path {
        [Step::Key(last)] => table.get_key_value(last)?.0.span(),
        [Step::Key(key), Step::Index(index), rest @ ..] => {
            let element: &dyn TableLike = match table.get(key)? {
                Item::ArrayOfTables(tables) => tables.get(*index)?,
                Item::Value(Value::Array(array)) => array.get(*index)?.as_inline_table()?,
                _ => return None,
            };
            key_span(element, rest)
        }
        [Step::Key(key), rest @ ..] => key_span(table.get(key)?.as_table_like()?, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    fn unknown(source: &str) -> Vec<(String, String)> {
        let (_, keys) = deserialize::<RawConfig>(source).unwrap();
        keys.into_iter()
            .map(|k| (source[k.span].to_string(), k.message))
            .collect()
    }

    #[test]
    fn an_unknown_key_at_every_level_is_found_at_its_place() {
        let source = r#"bogus_top = 1
[server]
http = "127.0.0.1:0"
htp = "x"
[admin]
listen = "127.0.0.1:0"
lissen = "x"
[tls]
mode = "x"
[[tls.certificates]]
cert = "c"
key = "k"
chain = "x"
[identity]
subjekt = "x"
[identity.assertion]
private_key = "k"
audience = "a"
aud = "x"
[upstreams.orders]
targets = ["http://127.0.0.1:1"]
target = "x"
[[routes]]
id = "a"
upstream = "builtin:echo"
[[routes]]
id = "b"
upstream = "builtin:echo"
scope = ["orders:read"]
[[issuers]]
id = "i"
issuer = "i"
audience = "x"
[api_keys]
heder = "x"
[log]
fmt = "x"
[token_service]
issuer = "i"
audience = "a"
singing_keys = []
[[token_service.clients]]
id = "c"
secret_hash = "h"
secret = "x"
[token_service.login_limit]
per_usr = 1
"#;
        let found = unknown(source);
        let expected = [
            (
                "bogus_top",
                "unknown field `bogus_top` (not a table of the configuration)",
            ),
            ("htp", "unknown field `htp` in [server]"),
            ("lissen", "unknown field `lissen` in [admin]"),
            ("mode", "unknown field `mode` in [tls]"),
            ("chain", "unknown field `chain` in [tls.certificates[0]]"),
            ("subjekt", "unknown field `subjekt` in [identity]"),
            ("aud", "unknown field `aud` in [identity.assertion]"),
            ("target", "unknown field `target` in [upstreams.orders]"),
            ("scope", "unknown field `scope` in [routes[1]]"),
            ("audience", "unknown field `audience` in [issuers[0]]"),
            ("heder", "unknown field `heder` in [api_keys]"),
            ("fmt", "unknown field `fmt` in [log]"),
            (
                "singing_keys",
                "unknown field `singing_keys` in [token_service]",
            ),
            (
                "secret",
                "unknown field `secret` in [token_service.clients[0]]",
            ),
            (
                "per_usr",
                "unknown field `per_usr` in [token_service.login_limit]",
            ),
        ];
        for (key, message) in expected {
            assert!(
                found.iter().any(|(k, m)| k == key && m == message),
                "`{key}` not reported as `{message}`: {found:?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:?}");
    }

    #[test]
    fn a_file_with_only_known_keys_has_none() {
        let source = "[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\nclaims = { tenant = \"acme\" }\n";
        assert!(unknown(source).is_empty());
    }
}
