//! `authgate keys new`: a new API key and the keys-file entry that holds only its hash.

use std::path::Path;
use std::process::ExitCode;

/// What `keys new` was asked for.
pub struct NewKey {
    pub subject: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub plan: Option<String>,
    pub id: Option<String>,
}

/// Prints the keys-file entry on stdout, so `keys new … >> keys.toml` appends exactly the entry;
/// the key goes to stderr or to `key_out`, never into the keys file.
pub fn new(spec: &NewKey, expires: Option<&str>, key_out: Option<&Path>) -> ExitCode {
    let expires = match expires
        .map(authgate::config::units::parse_duration)
        .transpose()
    {
        Ok(lifetime) => lifetime.map(|d| {
            authgate::auth::unix_now() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
        }),
        Err(message) => {
            eprintln!("authgate keys new: --expires: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (key, mut entry) = match authgate::auth::api_keys::new_entry(
        spec.id.as_deref(),
        &spec.subject,
        &spec.scopes,
        &spec.roles,
        expires,
    ) {
        Ok(generated) => generated,
        Err(message) => {
            eprintln!("authgate keys new: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(plan) = &spec.plan {
        entry.push_str(&super::toml_line("plan", plan));
    }
    super::hand_out(
        "keys new",
        "The key",
        &key,
        &entry,
        key_out,
        "the keys file",
    )
}
