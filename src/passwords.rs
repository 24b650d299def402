//! Password and client-secret hashing.
//!
//! Passwords are stored as argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), the
//! OWASP recommendation, with the argon2 crate's defaults (19 MiB, 2 passes) for new hashes.
//! Verifying costs tens of milliseconds of CPU on purpose, so it runs on the blocking pool,
//! at most a few at a time. Client secrets may also be stored as `sha256:<hex>`: a client
//! secret is machine-generated and long, so a fast hash loses nothing and saves the CPU.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Hashes `password` with argon2id and a fresh 16-byte salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random generator failed")?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Why a stored hash cannot be used; checked when the users file is loaded.
pub fn check_stored(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|_| "not a PHC string ($argon2id$…)")?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "`{}` hashes are not accepted: use argon2id (`authgate users add`)",
            parsed.algorithm
        ));
    }
    // A memory cost from the file is allocated per login: refuse absurd ones up front.
    let memory_kib = parsed
        .params
        .get_decimal("m")
        .ok_or("the hash has no memory cost (m=)")?;
    if !(8 * 1024..=1024 * 1024).contains(&memory_kib) {
        return Err("the hash's memory cost must be between 8 MiB and 1 GiB".into());
    }
    Ok(())
}

/// Whether `password` matches the argon2id `phc`. Slow by design: call it off the reactor.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A stored client secret.
#[derive(Clone, PartialEq)]
pub enum SecretHash {
    /// `sha256:<hex>` of a long random secret.
    Sha256([u8; 32]),
    /// An argon2id PHC string.
    Argon2(String),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even hashes stay out of logs.
        f.write_str(match self {
            SecretHash::Sha256(_) => "SecretHash::Sha256(..)",
            SecretHash::Argon2(_) => "SecretHash::Argon2(..)",
        })
    }
}

impl SecretHash {
    /// Reads `sha256:<64 hex>` or an argon2id PHC string.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let bytes = decode_hex(hex).ok_or("`sha256:` must be followed by 64 hex digits")?;
            return Ok(SecretHash::Sha256(bytes));
        }
        check_stored(text)?;
        Ok(SecretHash::Argon2(text.to_string()))
    }

    /// Whether `secret` matches. The SHA-256 form compares in constant time.
    pub fn matches(&self, secret: &str) -> bool {
        match self {
            SecretHash::Sha256(expected) => {
                let digest =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
                aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), expected).is_ok()
            }
            SecretHash::Argon2(phc) => verify(secret, phc),
        }
    }

    /// Whether checking costs an argon2 run (and so belongs on the blocking pool).
    pub fn is_slow(&self) -> bool {
        matches!(self, SecretHash::Argon2(_))
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"));
        check_stored(&phc).unwrap();
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horsE", &phc));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn other_algorithms_and_absurd_costs_are_refused() {
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(check_stored(argon2i).unwrap_err().contains("argon2id"));
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(check_stored(huge).is_err());
        assert!(check_stored("plain").is_err());
    }

    #[test]
    fn sha256_client_secrets_match_exactly() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"s3cret");
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let hash = SecretHash::parse(&format!("sha256:{hex}")).unwrap();
        assert!(hash.matches("s3cret"));
        assert!(!hash.matches("s3cret "));
        assert!(!hash.is_slow());
        assert!(SecretHash::parse("sha256:abc").is_err());
    }
}
