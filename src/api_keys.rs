//! API keys: their format, the keys file, and the table requests are checked against.
//!
//! A key is `agk_` + 52 base32 characters (256 bits from the OS random source) + a 7-character
//! checksum (the first 32 bits of SHA-256 over prefix and body). A mistyped or truncated key
//! fails the checksum and is refused before any lookup; the fixed prefix lets secret scanners
//! recognise a leaked key. The keys file stores only `sha256:` of each key, never the key, and
//! lookup is one hash-map probe on that digest, whatever the number of keys.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::diagnostic::{line_and_column, unknown_plan, Diagnostic};

/// The fixed prefix of every key.
pub const PREFIX: &str = "agk_";
const BODY_BYTES: usize = 32;
const BODY_CHARS: usize = 52;
const CHECK_CHARS: usize = 7;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + BODY_CHARS + CHECK_CHARS;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lowercase RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The checksum characters of `prefix_and_body`: base32 of the first 35 bits of its SHA-256,
/// written on the stack (the check runs on every request that presents a key).
fn checksum(prefix_and_body: &str) -> [u8; CHECK_CHARS] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, prefix_and_body.as_bytes());
    let bits = digest.as_ref()[..5]
        .iter()
        .fold(0u64, |bits, byte| (bits << 8) | u64::from(*byte));
    // Five bits to a character, from the top of those 40.
    std::array::from_fn(|i| ALPHABET[((bits >> (40 - 5 * (i + 1))) & 31) as usize])
}

/// Whether `b` is a character of [`ALPHABET`] (a range test, not a scan of it, per byte).
fn in_alphabet(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'2'..=b'7')
}

/// A new key from the operating system's random source.
pub fn generate() -> Result<String, String> {
    let mut body = [0u8; BODY_BYTES];
    aws_lc_rs::rand::fill(&mut body).map_err(|_| "the system random source failed".to_string())?;
    let mut key = format!("{PREFIX}{}", base32(&body));
    key.truncate(PREFIX.len() + BODY_CHARS);
    let check = checksum(&key);
    key.extend(check.map(char::from));
    Ok(key)
}

/// Whether `key` has the format and a correct checksum (says nothing about whether it exists).
pub fn well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key.starts_with(PREFIX)
        && key[PREFIX.len()..].bytes().all(in_alphabet)
        && {
            let (head, check) = key.split_at(PREFIX.len() + BODY_CHARS);
            check.as_bytes() == checksum(head)
        }
}

/// SHA-256 of a key: what the keys file stores and the table is keyed by.
pub fn digest(key: &str) -> [u8; 32] {
    crate::key_material::sha256(key.as_bytes())
}

/// The `sha256:` form of a key's digest, as written in the keys file.
pub fn hash_text(key: &str) -> String {
    let digest = digest(key);
    let mut text = String::from("sha256:");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    // `from_str_radix` alone would take a sign: `+a` is not two hex digits.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// One key's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// A name for the key (logs, `X-Auth-Key-Id`); never the key.
    pub id: String,
    /// Who the key speaks for.
    pub subject: String,
    /// Scopes it grants.
    pub scopes: Vec<String>,
    /// Roles it grants.
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub expires: Option<i64>,
    /// A disabled key is refused like a missing one.
    pub disabled: bool,
    /// The plan the key's caller is on (`None`: `[consumers] default_plan`).
    pub plan: Option<String>,
}

/// Hashes a SHA-256 digest by taking 8 of its bytes: they are already uniformly distributed,
/// and no one can steer them without a SHA-256 preimage, so hashing them again buys nothing.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, byte) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*byte) << (i * 8);
        }
    }
}

type DigestMap = HashMap<[u8; 32], Arc<KeyEntry>, std::hash::BuildHasherDefault<DigestHasher>>;

/// The keys, by digest.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_digest: DigestMap,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Wrong format or checksum: refused before any lookup.
    Malformed,
    /// Not in the table.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Marked disabled.
    Disabled,
}

impl KeyTable {
    /// This table with `other`'s keys added (inline keys beside the file's).
    pub fn merged_with(mut self, other: &KeyTable) -> KeyTable {
        for (digest, entry) in &other.by_digest {
            self.by_digest
                .entry(*digest)
                .or_insert_with(|| entry.clone());
        }
        self
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Checks a presented key at time `now`.
    pub fn check(&self, key: &str, now: i64) -> Result<Arc<KeyEntry>, KeyRefusal> {
        if !well_formed(key) {
            return Err(KeyRefusal::Malformed);
        }
        let digest = digest(key);
        let (stored, entry) = self
            .by_digest
            .get_key_value(&digest)
            .ok_or(KeyRefusal::Unknown)?;
        // The map probe already matched; this compares again without a data-dependent early exit.
        aws_lc_rs::constant_time::verify_slices_are_equal(stored, &digest)
            .map_err(|_| KeyRefusal::Unknown)?;
        if entry.disabled {
            return Err(KeyRefusal::Disabled);
        }
        if entry.expires.is_some_and(|expires| now >= expires) {
            return Err(KeyRefusal::Expired);
        }
        Ok(entry.clone())
    }
}

/// The keys-file format: `[[keys]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeysFile {
    #[serde(default)]
    keys: Vec<toml::Spanned<RawKey>>,
}

/// One entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    id: String,
    hash: String,
    subject: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    expires: Option<toml::value::Datetime>,
    #[serde(default)]
    disabled: bool,
    plan: Option<String>,
}

/// Builds a table from entries (each with the byte range it was written at in `source`); each
/// problem is reported with the entry's place. A key's `plan` must be one of `plans`.
pub fn build(
    entries: Vec<(RawKey, Range<usize>)>,
    file: &Path,
    source: &str,
    plans: &[String],
) -> Result<KeyTable, Vec<Diagnostic>> {
    let mut table = KeyTable::default();
    table.by_digest.reserve(entries.len());
    let mut errors = Vec::new();
    let mut ids: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(entries.len());
    for (raw, span) in &entries {
        if !ids.insert(raw.id.as_str()) {
            let message = format!("key id `{}` is used twice", raw.id);
            errors.push(Diagnostic::at(file, source, span.clone(), message));
        }
    }
    drop(ids);
    for (raw, span) in entries {
        let mut error =
            |message: String| errors.push(Diagnostic::at(file, source, span.clone(), message));
        let Some(digest) = parse_hash(&raw.hash) else {
            error(format!(
                "key `{}`: `hash` must be \"sha256:\" and 64 hex digits",
                raw.id
            ));
            continue;
        };
        if raw.subject.is_empty() {
            error(format!("key `{}` has an empty subject", raw.id));
            continue;
        }
        let expires = match &raw.expires {
            None => None,
            Some(datetime) => match unix_seconds(datetime) {
                Some(seconds) => Some(seconds),
                None => {
                    error(format!("key `{}`: `expires` must be a full date and time, e.g. 2027-01-01T00:00:00Z", raw.id));
                    continue;
                }
            },
        };
        if let Some(plan) = raw.plan.as_ref().filter(|p| !plans.contains(p)) {
            error(format!(
                "key `{}`: {}",
                raw.id,
                unknown_plan(plan, plans.iter())
            ));
            continue;
        }
        let entry = KeyEntry {
            id: raw.id,
            subject: raw.subject,
            scopes: raw.scopes,
            roles: raw.roles,
            expires,
            disabled: raw.disabled,
            plan: raw.plan,
        };
        if let Some(previous) = table.by_digest.insert(digest, Arc::new(entry)) {
            error(format!(
                "key `{}` has the same hash as another key",
                previous.id
            ));
        }
    }
    if errors.is_empty() {
        Ok(table)
    } else {
        Err(errors)
    }
}

/// The entries of a keys file by the full TOML parser, each with its place.
pub(crate) fn parse_full(source: &str) -> Result<Vec<(RawKey, Range<usize>)>, toml::de::Error> {
    let parsed: RawKeysFile = toml::from_str(source)?;
    Ok(parsed
        .keys
        .into_iter()
        .map(|k| {
            let span = k.span();
            (k.into_inner(), span)
        })
        .collect())
}

/// Reads a keys file into a table.
///
/// Files as `authgate keys new` writes them (`[[keys]]` headers, `name = value` lines with
/// plain strings, string arrays, booleans and date-times, comments) take a fast line parser: a
/// TOML parser building a document first would need seconds for a million keys. Anything
/// outside that subset goes to the full TOML parser, which also gives the precise error.
pub fn load_file(path: &Path, plans: &[String]) -> Result<KeyTable, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read the keys file: {e}"),
        )]
    })?;
    let entries = match fast::parse(&source) {
        Some(entries) => entries,
        None => parse_full(&source).map_err(|e| {
            let (line, column) = line_and_column(&source, e.span().map_or(0, |s| s.start));
            vec![Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }]
        })?,
    };
    build(entries, path, &source, plans)
}

/// The fast path of [`load_file`]: the subset of TOML that keys files are written in.
pub(crate) mod fast {
    use std::ops::Range;

    use super::RawKey;

    /// TOML's whitespace: space and tab, not the rest of Unicode's (which `str::trim` takes).
    const WS: [char; 2] = [' ', '\t'];

    /// The entries, or `None` when the text leaves the subset (the full parser takes over).
    /// Whatever this accepts, TOML reads the same way: lines end in LF or CRLF (a CR elsewhere
    /// is TOML's error to report), only spaces and tabs are whitespace, and a comment holds no
    /// control character but tab.
    pub(crate) fn parse(source: &str) -> Option<Vec<(RawKey, Range<usize>)>> {
        // `authgate keys new` entries are about 200 bytes.
        let mut entries = Vec::with_capacity(source.len() / 200 + 1);
        let mut current: Option<(Fields, usize)> = None;
        let mut offset = 0;
        for line in source.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            let body = line
                .strip_suffix('\n')
                .map_or(line, |l| l.strip_suffix('\r').unwrap_or(l));
            if body.contains('\r') {
                return None;
            }
            let text = body.trim_matches(WS);
            if text.is_empty() {
                continue;
            }
            if let Some(comment) = text.strip_prefix('#') {
                if comment
                    .chars()
                    .any(|c| c != '\t' && (c < ' ' || c == '\u{7f}'))
                {
                    return None;
                }
                continue;
            }
            if text == "[[keys]]" {
                if let Some((fields, at)) = current.take() {
                    entries.push((fields.finish()?, at..at + 8));
                }
                current = Some((
                    Fields::default(),
                    start + (line.len() - line.trim_start_matches(WS).len()),
                ));
                continue;
            }
            let (fields, _) = current.as_mut()?;
            let (name, value) = text.split_once('=')?;
            fields.set(name.trim_matches(WS), value.trim_matches(WS))?;
        }
        if let Some((fields, at)) = current {
            entries.push((fields.finish()?, at..at + 8));
        }
        Some(entries)
    }

    #[derive(Default)]
    struct Fields {
        id: Option<String>,
        hash: Option<String>,
        subject: Option<String>,
        scopes: Option<Vec<String>>,
        roles: Option<Vec<String>>,
        expires: Option<toml::value::Datetime>,
        disabled: Option<bool>,
        plan: Option<String>,
    }

    impl Fields {
        fn set(&mut self, name: &str, value: &str) -> Option<()> {
            // A repeated name is a TOML error: leave it to the full parser to report.
            fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
                slot.is_none().then(|| *slot = Some(value))
            }
            match name {
                "id" => once(&mut self.id, string(value)?),
                "hash" => once(&mut self.hash, string(value)?),
                "subject" => once(&mut self.subject, string(value)?),
                "scopes" => once(&mut self.scopes, strings(value)?),
                "roles" => once(&mut self.roles, strings(value)?),
                "expires" => once(&mut self.expires, value.parse().ok()?),
                "disabled" => once(&mut self.disabled, value.parse().ok()?),
                "plan" => once(&mut self.plan, string(value)?),
                _ => None,
            }
        }

        fn finish(self) -> Option<RawKey> {
            Some(RawKey {
                id: self.id?,
                hash: self.hash?,
                subject: self.subject?,
                scopes: self.scopes.unwrap_or_default(),
                roles: self.roles.unwrap_or_default(),
                expires: self.expires,
                disabled: self.disabled.unwrap_or(false),
                plan: self.plan,
            })
        }
    }

    /// `"text"` without escapes; anything fancier goes to the full parser.
    fn string(value: &str) -> Option<String> {
        let inner = value.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains(['"', '\\']) && !inner.chars().any(char::is_control))
            .then(|| inner.to_string())
    }

    /// `["a", "b"]`, with at most one trailing comma (`["a",,]` is TOML's error).
    fn strings(value: &str) -> Option<Vec<String>> {
        let inner = value.strip_prefix('[')?.strip_suffix(']')?.trim_matches(WS);
        if inner.is_empty() {
            return Some(Vec::new());
        }
        let inner = inner.strip_suffix(',').unwrap_or(inner);
        inner
            .split(',')
            .map(|item| string(item.trim_matches(WS)))
            .collect()
    }
}

/// A TOML date-time as seconds since the epoch; a date alone counts as its midnight UTC.
fn unix_seconds(datetime: &toml::value::Datetime) -> Option<i64> {
    let date = datetime.date?;
    let (hour, minute, second) = datetime
        .time
        .map_or((0, 0, 0), |t| (t.hour, t.minute, t.second));
    let offset_minutes = match datetime.offset {
        Some(toml::value::Offset::Z) | None => 0,
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
    };
    let days = crate::calendar::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    Some(
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_minutes * 60,
    )
}

/// Seconds since the epoch as an RFC 3339 UTC date-time (`2027-01-01T00:00:00Z`).
pub fn rfc3339(seconds: i64) -> String {
    let (year, month, day) = crate::calendar::civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A new key with its keys-file entry (TOML), for `authgate keys new`.
pub fn new_entry(
    id: Option<&str>,
    subject: &str,
    scopes: &[String],
    roles: &[String],
    expires: Option<i64>,
) -> Result<(String, String), String> {
    let key = generate()?;
    let hash = hash_text(&key);
    let id = id.map_or_else(|| format!("{subject}-{}", &hash[7..15]), str::to_string);
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut entry = format!(
        "[[keys]]\nid = {}\nhash = \"{hash}\"\nsubject = {}\n",
        quote(&id),
        quote(subject)
    );
    for (name, values) in [("scopes", scopes), ("roles", roles)] {
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|s| quote(s)).collect();
            entry.push_str(&format!("{name} = [{}]\n", list.join(", ")));
        }
    }
    if let Some(expires) = expires {
        entry.push_str(&format!("expires = {}\n", rfc3339(expires)));
    }
    Ok((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(a.starts_with("agk_"));
        assert!(well_formed(&a) && well_formed(&b));
    }

    #[test]
    fn typos_and_truncation_fail_the_checksum() {
        let key = generate().unwrap();
        assert!(!well_formed(&key[..key.len() - 1]));
        assert!(!well_formed(&format!("{key}a")));
        let mut chars: Vec<char> = key.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        assert!(!well_formed(&chars.iter().collect::<String>()));
        assert!(!well_formed(&key.replace("agk_", "agx_")));
        assert!(!well_formed(&key.to_uppercase()));
    }

    #[test]
    fn the_in_place_checks_agree_with_the_written_forms() {
        for b in 0..=u8::MAX {
            assert_eq!(in_alphabet(b), ALPHABET.contains(&b), "byte {b}");
        }
        for _ in 0..200 {
            let key = generate().unwrap();
            let (head, check) = key.split_at(PREFIX.len() + BODY_CHARS);
            // The base32 of the digest's first five bytes, cut to the checksum's length.
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, head.as_bytes());
            let written = base32(&digest.as_ref()[..5]);
            assert_eq!(checksum(head), written.as_bytes()[..CHECK_CHARS]);
            assert_eq!(check.as_bytes(), checksum(head));
            assert!(well_formed(&key));
            let wrong = if check.starts_with('a') { "b" } else { "a" };
            assert!(!well_formed(&format!("{head}{wrong}{}", &check[1..])));
            assert!(!well_formed(&format!("{head}{}", &check[1..])));
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(b"f"), "my");
    }

    #[test]
    fn dates_convert_to_epoch_seconds() {
        let parse = |s: &str| unix_seconds(&s.parse().unwrap());
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2027-01-01T00:00:00Z"), Some(1_798_761_600));
        assert_eq!(parse("2000-02-29T12:00:00+02:00"), Some(951_818_400));
        assert_eq!(parse("2027-01-01"), Some(1_798_761_600));
        assert_eq!(parse("12:00:00"), None);
    }

    #[test]
    fn rfc3339_round_trips() {
        for seconds in [0, 951_818_400, 1_798_761_600, 4_102_444_799] {
            let text = rfc3339(seconds);
            assert_eq!(
                unix_seconds(&text.parse().unwrap()),
                Some(seconds),
                "{text}"
            );
        }
        assert_eq!(rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn new_entries_parse_back_and_hold_only_the_hash() {
        let (key, entry) = new_entry(
            None,
            "ci-bot",
            &["orders:read".into()],
            &[],
            Some(1_798_761_600),
        )
        .unwrap();
        assert!(!entry.contains(&key));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, &entry).unwrap();
        let found = load_file(&path, &[])
            .unwrap()
            .check(&key, 1_700_000_000)
            .unwrap();
        assert_eq!(found.subject, "ci-bot");
        assert_eq!(found.scopes, ["orders:read"]);
        assert_eq!(found.expires, Some(1_798_761_600));
    }

    #[test]
    fn lookup_expiry_and_disabling() {
        let (good, old, off) = (
            generate().unwrap(),
            generate().unwrap(),
            generate().unwrap(),
        );
        let file = format!(
            "[[keys]]\nid = \"good\"\nhash = \"{}\"\nsubject = \"bot\"\nscopes = [\"a\"]\n\n[[keys]]\nid = \"old\"\nhash = \"{}\"\nsubject = \"bot\"\nexpires = 2020-01-01T00:00:00Z\n\n[[keys]]\nid = \"off\"\nhash = \"{}\"\nsubject = \"bot\"\ndisabled = true\n",
            hash_text(&good),
            hash_text(&old),
            hash_text(&off)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, file).unwrap();
        let table = load_file(&path, &[]).unwrap();
        let now = 1_800_000_000;
        assert_eq!(table.check(&good, now).unwrap().id, "good");
        assert_eq!(table.check(&old, now).unwrap_err(), KeyRefusal::Expired);
        assert_eq!(table.check(&off, now).unwrap_err(), KeyRefusal::Disabled);
        assert_eq!(
            table.check(&generate().unwrap(), now).unwrap_err(),
            KeyRefusal::Unknown
        );
        assert_eq!(
            table.check("agk_short", now).unwrap_err(),
            KeyRefusal::Malformed
        );
    }

    #[test]
    fn a_bad_file_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            "[[keys]]\nid = \"a\"\nhash = \"md5:00\"\nsubject = \"s\"\n",
        )
        .unwrap();
        let errors = load_file(&path, &[]).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (1, 1));
        assert!(errors[0].message.contains("sha256"));
        std::fs::write(&path, "[[keys]]\nid = \"a\"\nhsh = \"x\"\n").unwrap();
        let errors = load_file(&path, &[]).unwrap_err();
        assert_eq!(errors[0].line, 3);
        std::fs::write(&path, "[[keys]]\nid = \"a\"\nid = \"b\"\n").unwrap();
        assert_eq!(
            load_file(&path, &[]).unwrap_err()[0].line,
            3,
            "duplicate names go to the full parser"
        );
    }

    #[test]
    fn the_fast_path_and_the_full_parser_agree() {
        let (key, entry) = new_entry(
            Some("k"),
            "svc",
            &["a".into(), "b".into()],
            &[],
            Some(1_798_761_600),
        )
        .unwrap();
        let fancy = format!(
            "# keys\n{}roles = [ \"admin\", ]\ndisabled = false\n",
            entry
        );
        let escaped = fancy.replace("subject = \"svc\"", "subject = \"s\\u0076c\"");
        assert!(fast::parse(&fancy).is_some());
        assert!(
            fast::parse(&escaped).is_none(),
            "escapes take the full parser"
        );
        let dir = tempfile::tempdir().unwrap();
        for text in [fancy, escaped] {
            let path = dir.path().join("keys.toml");
            std::fs::write(&path, text).unwrap();
            let entry = load_file(&path, &[]).unwrap().check(&key, 0).unwrap();
            assert_eq!(
                (entry.subject.as_str(), entry.roles.as_slice()),
                ("svc", &["admin".to_string()][..])
            );
            assert_eq!(entry.scopes, ["a", "b"]);
        }
    }

    /// Inputs on which the fast parser once read a file TOML refuses (or a hash the format
    /// refuses): each must now be refused, as the full parser refuses it.
    #[test]
    fn the_fast_path_accepts_nothing_toml_refuses() {
        let (_, entry) = new_entry(Some("k"), "svc", &["a".into()], &[], None).unwrap();
        let hash_line = entry.lines().find(|l| l.starts_with("hash")).unwrap();
        let base =
            |extra: &str| format!("[[keys]]\nid = \"k\"\n{hash_line}\nsubject = \"svc\"\n{extra}");
        let cases = [
            (
                "control character in a comment",
                format!("# a\u{1}b\n{}", base("")),
            ),
            ("DEL in a comment", format!("#\u{7f}\n{}", base(""))),
            ("no-break space before `=`", base("disabled\u{a0}= true\n")),
            (
                "ideographic space after a value",
                base("disabled = true\u{3000}\n"),
            ),
            (
                "next line in a header",
                format!("[[keys]]\u{85}\nid = \"k\"\n{hash_line}\nsubject = \"svc\"\n"),
            ),
            ("doubled commas", base("scopes = [\"a\",,]\n")),
            ("bare CR", base("disabled = true\r")),
            ("bare CR mid-line", base("disabled = true\r \n")),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        for (what, text) in &cases {
            assert!(
                toml::from_str::<RawKeysFile>(text).is_err(),
                "{what}: TOML accepts it, the case is wrong"
            );
            assert!(
                fast::parse(text).is_none(),
                "{what}: the fast parser accepted it"
            );
            std::fs::write(&path, text).unwrap();
            assert!(load_file(&path, &[]).is_err(), "{what}");
        }
        // A `+` is not a hex digit, though `u8::from_str_radix` takes it as a sign.
        let digits = &hash_line["hash = \"sha256:".len()..hash_line.len() - 1];
        let signed = format!("+{}", &digits[1..]);
        let text = base("").replace(digits, &signed);
        std::fs::write(&path, &text).unwrap();
        assert!(
            load_file(&path, &[]).is_err(),
            "a `+` in the hash was taken as hex: {text}"
        );
        // CRLF line ends and tabs are TOML's own, and stay on the fast path.
        let crlf = base("\tdisabled\t=\tfalse\t\n").replace('\n', "\r\n");
        assert!(fast::parse(&crlf).is_some());
        std::fs::write(&path, &crlf).unwrap();
        assert_eq!(load_file(&path, &[]).unwrap().len(), 1);
    }
}
