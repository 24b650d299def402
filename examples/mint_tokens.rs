//! Prints N RS256 tokens, one per line, each with its own `sub` and `jti`, signed with a PEM
//! private key: the distinct tokens of the load benchmark (`benches/load/run.sh`), which a
//! verified-token cache cannot serve from memory.
//!
//! ```sh
//! cargo run --release --example mint_tokens -- rsa.pem 10000 https://bench.example/ bench-api 3600
//! ```

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, count, issuer, audience, ttl] = args.as_slice() else {
        return Err("usage: mint_tokens KEY.pem COUNT ISSUER AUDIENCE TTL_SECONDS".into());
    };
    let pem = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| format!("{key}: {e}"))?;
    let count: usize = count.parse().map_err(|_| "COUNT is a number")?;
    let ttl: u64 = ttl.parse().map_err(|_| "TTL_SECONDS is a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let header = Header::new(Algorithm::RS256);
    for n in 0..count {
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": format!("user-{n}"),
            "jti": format!("bench-{n}"),
            "iat": now,
            "exp": now + ttl,
        });
        let token = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())?;
        println!("{token}");
    }
    Ok(())
}
