//! `authgate clients add`: a client-credentials client of the token service with a generated
//! secret. The `[[token_service.clients]]` entry (holding only the secret's SHA-256) goes to
//! stdout, so `clients add … >> gateway.toml` appends exactly the entry; the secret goes to
//! stderr or to `--secret-out`, never into the configuration.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;

/// Bytes of randomness in a generated client secret (256 bits).
const SECRET_BYTES: usize = 32;

/// Prints a new client's entry for `id` with `scopes`.
pub fn add(id: &str, scopes: &[String], plan: Option<&str>, secret_out: Option<&Path>) -> ExitCode {
    match entry(id, scopes).map(|(secret, mut entry)| {
        if let Some(plan) = plan {
            entry.push_str(&super::toml_line("plan", plan));
        }
        (secret, entry)
    }) {
        Ok((secret, entry)) => super::hand_out(
            "clients add",
            &format!("The secret of `{id}`"),
            &secret,
            &entry,
            secret_out,
            "gateway.toml",
        ),
        Err(message) => {
            eprintln!("authgate clients add: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A new secret and the TOML entry that holds its hash.
fn entry(id: &str, scopes: &[String]) -> Result<(String, String), String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!(
            "`{id}` cannot be a client id: printable ASCII without spaces or `:` (HTTP Basic)"
        ));
    }
    let mut random = [0u8; SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| "no randomness available")?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut entry = format!(
        "[[token_service.clients]]\nid = {}\nsecret_hash = \"sha256:{hex}\"\n",
        quote(id)
    );
    if !scopes.is_empty() {
        let list: Vec<String> = scopes.iter().map(|s| quote(s)).collect();
        entry.push_str(&format!("scopes = [{}]\n", list.join(", ")));
    }
    Ok((secret, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_holds_the_hash_of_the_secret_and_never_the_secret() {
        let (secret, entry) = entry("billing-job", &["orders:read".into()]).unwrap();
        assert!(!entry.contains(&secret));
        let table: toml::Table = entry.parse().unwrap();
        let client = &table["token_service"]["clients"][0];
        let hash = client["secret_hash"].as_str().unwrap();
        let parsed = authgate::token_service::passwords::SecretHash::parse(hash).unwrap();
        assert!(parsed.matches(&secret));
        assert!(!parsed.matches("another secret"));
        assert_eq!(client["scopes"][0].as_str(), Some("orders:read"));
    }

    #[test]
    fn ids_that_http_basic_cannot_carry_are_refused() {
        assert!(entry("a:b", &[]).is_err());
        assert!(entry("a b", &[]).is_err());
        assert!(entry("", &[]).is_err());
    }
}
