//! Verification keys: loading them from JWKs, PEM files and HMAC secrets, refusing the weak or
//! ambiguous ones, and deciding which algorithms each key may verify.
//!
//! The algorithm a key verifies is fixed here, at load time, from the issuer's `algorithms` and
//! the key's own `kty`/`crv`/`alg`; a token's `alg` header only selects among those. So an HMAC
//! secret is never tried as a public key nor the reverse, and `alg: none` matches nothing.
//! Refused at load (with the reason, never the key material, in the log): `use` other than
//! `sig`, RSA under 2048 bits, HMAC secrets under 32 bytes, an `alg` that does not fit the key
//! type, curves and types authgate does not verify (P-521, Ed448, …), symmetric (`oct`) keys
//! in a published JWK Set (a public document), and local sets mixing symmetric and asymmetric
//! keys (which key a token meant would be ambiguous).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Every algorithm authgate verifies.
pub const SUPPORTED: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The shortest HMAC secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Parses an algorithm name exactly as JOSE writes it (`RS256`, `EdDSA`); anything else —
/// `none`, `ES512`, other casings — is not an algorithm authgate verifies. RFC 9864's
/// fully-specified `Ed25519` is the same algorithm as `EdDSA` on an Ed25519 key, the only
/// EdDSA curve authgate verifies.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    if name == "Ed25519" {
        return Some(Algorithm::EdDSA);
    }
    SUPPORTED
        .into_iter()
        .find(|alg| algorithm_name(*alg) == name)
}

/// Whether `alg` is an HMAC algorithm (a shared secret rather than a key pair).
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The JOSE name of `alg`.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// A key ready to verify signatures, with the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key id tokens name it by, if it has one.
    pub kid: Option<String>,
    /// Algorithms this key verifies: its type's (narrowed by its own `alg`) ∩ the issuer's.
    pub algorithms: Vec<Algorithm>,
    /// The key material.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// The kind of key, which decides the algorithms it can possibly verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyType::Hmac => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            KeyType::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyType::P256 => &[Algorithm::ES256],
            KeyType::P384 => &[Algorithm::ES384],
            KeyType::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// Narrows `key_type`'s algorithms by the key's own `alg` (if any) and the issuer's list.
fn usable_algorithms(
    key_type: KeyType,
    own_alg: Option<&str>,
    allowed: &[Algorithm],
) -> Result<Vec<Algorithm>, String> {
    let possible = key_type.algorithms();
    let narrowed: Vec<Algorithm> = match own_alg {
        None => possible.to_vec(),
        Some(name) => match parse_algorithm(name) {
            Some(alg) if possible.contains(&alg) => vec![alg],
            Some(_) => return Err(format!("its alg `{name}` does not fit its key type")),
            None => return Err(format!("its alg `{name}` is not supported")),
        },
    };
    let usable: Vec<Algorithm> = narrowed
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if usable.is_empty() {
        return Err("none of its algorithms is in the issuer's `algorithms`".into());
    }
    Ok(usable)
}

/// Strict base64url without padding, as JOSE requires.
pub fn b64url(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "it is not valid unpadded base64url".to_string())
}

/// An HMAC secret as a key for the HS* algorithms in `allowed` its length permits, narrowed to
/// `own_alg` when the key names one.
pub fn from_secret(
    secret: &[u8],
    kid: Option<String>,
    own_alg: Option<&str>,
    allowed: &[Algorithm],
) -> Result<VerificationKey, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "an HMAC secret must be at least {MIN_SECRET_BYTES} bytes (this one has {})",
            secret.len()
        ));
    }
    // RFC 7518 §3.2: the key must be at least as long as the hash output.
    let long_enough: Vec<Algorithm> = [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ]
    .into_iter()
    .filter(|(_, min)| secret.len() >= *min)
    .map(|(alg, _)| alg)
    .filter(|alg| allowed.contains(alg))
    .collect();
    let algorithms = usable_algorithms(KeyType::Hmac, own_alg, &long_enough).map_err(|reason| {
        if own_alg.is_some_and(|alg| allowed.iter().any(|a| algorithm_name(*a) == alg)) {
            "the secret is shorter than its algorithm's hash output".to_string()
        } else {
            reason
        }
    })?;
    Ok(VerificationKey {
        kid,
        algorithms,
        key: DecodingKey::from_secret(secret),
    })
}

/// Where a JWK Set comes from, which decides whether it may hold secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fetched from a URL: a public document, so a symmetric key in it is a leaked secret.
    Published,
    /// A local file the operator controls: symmetric keys are allowed.
    Local,
}

/// One JWK. Symmetric keys are accepted only from a [`Origin::Local`] set.
pub fn from_jwk(
    jwk: &Value,
    origin: Origin,
    allowed: &[Algorithm],
) -> Result<VerificationKey, String> {
    let field = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("its `{name}` is not a string")),
        }
    };
    let required = |name: &str| -> Result<&str, String> {
        field(name)?.ok_or_else(|| format!("it has no `{name}`"))
    };
    if let Some(usage) = field("use")? {
        if usage != "sig" {
            return Err(format!("its use is `{usage}`, not `sig`"));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("its key_ops do not include `verify`".into());
        }
    }
    let kid = field("kid")?.map(str::to_string);
    let own_alg = field("alg")?;
    let (key_type, key) = match required("kty")? {
        "RSA" => {
            let n = b64url(required("n")?)?;
            let e = b64url(required("e")?)?;
            check_rsa(&n, &e)?;
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (key_type, size) = match required("crv")? {
                "P-256" => (KeyType::P256, 32),
                "P-384" => (KeyType::P384, 48),
                other => return Err(format!("curve `{other}` is not supported")),
            };
            let x = b64url(required("x")?)?;
            let y = b64url(required("y")?)?;
            if x.len() != size || y.len() != size {
                return Err("its coordinates have the wrong length for its curve".into());
            }
            if jwk.get("d").is_some() {
                return Err("it holds a private key; publish only public keys".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            match required("crv")? {
                "Ed25519" => {}
                other => return Err(format!("curve `{other}` is not supported")),
            }
            let x = b64url(required("x")?)?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            if jwk.get("d").is_some() {
                return Err("it holds a private key; publish only public keys".into());
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        "oct" if origin == Origin::Published => {
            return Err("a symmetric key in a published JWK Set is a leaked secret".into())
        }
        "oct" => return from_secret(&b64url(required("k")?)?, kid, own_alg, allowed),
        other => return Err(format!("key type `{other}` is not supported")),
    };
    Ok(VerificationKey {
        kid,
        algorithms: usable_algorithms(key_type, own_alg, allowed)?,
        key,
    })
}

/// A PEM public key (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`).
pub fn from_public_pem(
    pem: &[u8],
    kid: Option<String>,
    allowed: &[Algorithm],
) -> Result<VerificationKey, String> {
    let (key_type, key) = if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
        let jsonwebtoken::DecodingKeyKind::SecretOrDer(der) = rsa.kind() else {
            return Err("it is not a usable RSA key".into());
        };
        let public = aws_lc_rs::rsa::PublicKey::from_der(der)
            .map_err(|_| "it is not a valid RSA key".to_string())?;
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&public);
        check_rsa(&components.n, &components.e)?;
        (
            KeyType::Rsa,
            DecodingKey::from_rsa_raw_components(&components.n, &components.e),
        )
    } else if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
        let jsonwebtoken::DecodingKeyKind::SecretOrDer(point) = ec.kind() else {
            return Err("it is not a usable EC key".into());
        };
        let key_type = match point.len() {
            65 => KeyType::P256,
            97 => KeyType::P384,
            _ => return Err("only P-256 and P-384 EC keys are supported".into()),
        };
        (key_type, ec)
    } else if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
        (KeyType::Ed25519, ed)
    } else {
        return Err("it is not a PEM RSA, EC (P-256, P-384) or Ed25519 public key".into());
    };
    Ok(VerificationKey {
        kid,
        algorithms: usable_algorithms(key_type, None, allowed)?,
        key,
    })
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key must be at least {MIN_RSA_BITS} bits (this one has {bits})"
        ));
    }
    if roca_fingerprint(n) {
        return Err("it is an RSA key with the ROCA weakness (CVE-2017-15361): its private key can be computed".into());
    }
    let e = strip_leading_zeros(e);
    if e.is_empty() || e.len() > 4 || e.last().is_some_and(|low| low & 1 == 0) || e == [1] {
        return Err("its RSA exponent is not valid".into());
    }
    Ok(())
}

/// Whether an RSA modulus has the structure of keys from the vulnerable Infineon generator
/// (ROCA, CVE-2017-15361): for every small prime p, `n mod p` lies in the subgroup generated by
/// 65537. A random modulus fails this for some prime almost surely.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |r, &byte| (r * 256 + u32::from(byte)) % p);
        // Walk the subgroup generated by 65537 mod p until it cycles back to 1.
        let generator = 65537 % p;
        let mut element = 1;
        loop {
            if element == residue {
                return true;
            }
            element = element * generator % p;
            if element == 1 {
                return false;
            }
        }
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The keys one issuer verifies with.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    /// A set of already-validated keys.
    pub fn new(keys: Vec<VerificationKey>) -> Self {
        KeySet { keys }
    }

    /// Parses a JWK Set document, keeping every acceptable key and returning the reasons the
    /// others were refused (`kid: reason`, never key material).
    pub fn from_jwks(
        document: &Value,
        origin: Origin,
        allowed: &[Algorithm],
    ) -> Result<(KeySet, Vec<String>), String> {
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the document has no `keys` array")?;
        let symmetric = keys
            .iter()
            .filter(|k| k.get("kty").and_then(Value::as_str) == Some("oct"))
            .count();
        if symmetric > 0 && symmetric < keys.len() {
            return Err("the set mixes symmetric and asymmetric keys, so which one a token means is ambiguous".into());
        }
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let kid_of = |jwk: &Value| jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        let kids: Vec<Option<String>> = keys.iter().map(kid_of).collect();
        for (index, jwk) in keys.iter().enumerate() {
            if let Some(kid) = &kids[index] {
                if kids.iter().filter(|k| k.as_ref() == Some(kid)).count() > 1 {
                    // Two keys under one name: a token naming it is ambiguous, so neither is used.
                    refused.push(format!(
                        "key `{kid}` refused: its kid appears more than once in the set"
                    ));
                    continue;
                }
            }
            match from_jwk(jwk, origin, allowed) {
                Ok(key) => accepted.push(key),
                Err(reason) => {
                    let name = jwk
                        .get("kid")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("key #{index}"), |kid| format!("key `{kid}`"));
                    refused.push(format!("{name} refused: {reason}"));
                }
            }
        }
        Ok((KeySet { keys: accepted }, refused))
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &VerificationKey> {
        self.keys.iter()
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether any key carries a kid at all.
    pub fn any_kid(&self) -> bool {
        self.keys.iter().any(|k| k.kid.is_some())
    }

    /// The keys a token with this `kid` (if any) and `alg` may be verified with: those with
    /// that kid, and keys without a kid (a PEM key has none, while an IdP's tokens always name
    /// one: such a key is a candidate for any token, as in Envoy); every key when the token
    /// names no kid. In all cases only keys that verify `alg`; the signature decides.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |key| {
            key.algorithms.contains(&alg)
                && kid.is_none_or(|kid| key.kid.as_deref().is_none_or(|own| own == kid))
        })
    }
}

/// The SHA-256 of `bytes`: how credentials (tokens, API keys) are remembered without being
/// kept.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: &[Algorithm] = &SUPPORTED;

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
        for refused in ["none", "None", "NONE", "rs256", "ES512", "HS1", ""] {
            assert_eq!(parse_algorithm(refused), None, "{refused}");
        }
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(from_secret(&[7; 31], None, None, ALL).is_err());
        let key = from_secret(&[7; 32], None, None, ALL).unwrap();
        assert_eq!(key.algorithms, [Algorithm::HS256]);
        let key = from_secret(&[7; 64], None, None, ALL).unwrap();
        assert_eq!(
            key.algorithms,
            [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        );
        assert!(from_secret(&[7; 40], None, Some("HS384"), ALL)
            .unwrap_err()
            .contains("shorter"));
    }

    #[test]
    fn jwks_refuse_symmetric_encryption_and_mismatched_keys() {
        let oct = json!({"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
        assert!(from_jwk(&oct, Origin::Published, ALL)
            .unwrap_err()
            .contains("symmetric"));
        assert!(from_jwk(&oct, Origin::Local, ALL).is_ok());
        let p256 = json!({"kty": "EC", "crv": "P-256",
            "x": "04N0xi21hshyvBp7I167sbE_bXqyqkAPfefdklMO7wY", "y": "UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw"});
        assert_eq!(
            from_jwk(&p256, Origin::Published, ALL).unwrap().algorithms,
            [Algorithm::ES256]
        );
        let mut enc = p256.clone();
        enc["use"] = json!("enc");
        assert!(from_jwk(&enc, Origin::Published, ALL)
            .unwrap_err()
            .contains("use"));
        let mut wrong_alg = p256.clone();
        wrong_alg["alg"] = json!("RS256");
        assert!(from_jwk(&wrong_alg, Origin::Published, ALL)
            .unwrap_err()
            .contains("does not fit"));
        assert!(
            from_jwk(&p256, Origin::Published, &[Algorithm::RS256]).is_err(),
            "not in the issuer's algorithms"
        );
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        assert!(from_jwk(&p521, Origin::Published, ALL)
            .unwrap_err()
            .contains("P-521"));
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let n_1024 = URL_SAFE_NO_PAD.encode([0xC3; 128]);
        let small = json!({"kty": "RSA", "n": n_1024, "e": "AQAB"});
        assert!(from_jwk(&small, Origin::Published, ALL)
            .unwrap_err()
            .contains("2048"));
        let n_2048 = URL_SAFE_NO_PAD.encode([0xC3; 256]);
        let ok = json!({"kty": "RSA", "n": n_2048, "e": "AQAB", "alg": "PS256"});
        assert_eq!(
            from_jwk(&ok, Origin::Published, ALL).unwrap().algorithms,
            [Algorithm::PS256]
        );
        let even_e = json!({"kty": "RSA", "n": n_2048, "e": "AQAA"});
        assert!(from_jwk(&even_e, Origin::Published, ALL).is_err());
    }

    #[test]
    fn candidates_follow_kid_and_algorithm() {
        let a = from_secret(&[1; 32], Some("a".into()), None, &[Algorithm::HS256]).unwrap();
        let b = from_secret(&[2; 32], Some("b".into()), None, &[Algorithm::HS256]).unwrap();
        let set = KeySet::new(vec![a, b]);
        assert_eq!(set.candidates(Some("b"), Algorithm::HS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 2);
        assert_eq!(set.candidates(Some("b"), Algorithm::HS384).count(), 0);
        assert_eq!(set.candidates(Some("c"), Algorithm::HS256).count(), 0);
    }
}
