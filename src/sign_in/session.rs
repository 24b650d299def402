//! Sessions: what the cookie holds (a random id and its MAC, nothing else, so it never grows),
//! what the store holds (the record, keyed by a hash of the id, so a copy of the store opens
//! no session), and when a session ends (idle, absolute, or with the provider's tokens when no
//! refresh token can renew them).

use aws_lc_rs::{digest, hmac, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Random bytes in a session id, a state, a nonce, a PKCE verifier.
const RANDOM_BYTES: usize = 32;
/// What the MAC of a session id is bound to, so a MAC made for something else never fits.
const SESSION_CONTEXT: &[u8] = b"authgate sign-in session v1\0";

/// The key cookie MACs are made with (`cookie_secret`). Every gateway of a fleet holds the
/// same one, so a cookie made by one is accepted by all, and one made by any other key by none.
pub struct CookieKey(hmac::Key);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(<redacted>)")
    }
}

impl CookieKey {
    /// The key for `secret` (validated to hold at least 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        CookieKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A new session: the cookie value, and the key its record is stored under.
    pub fn issue(&self) -> (String, String) {
        let id = random_bytes();
        let tag = hmac::sign(&self.0, &[SESSION_CONTEXT, &id].concat());
        let value = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        (value, store_key(b"session", &id))
    }

    /// The store key of the session a cookie value names, if its MAC is this key's (checked in
    /// constant time). A forged value, or one made with another key, names none.
    pub fn open(&self, value: &str) -> Option<String> {
        let (id, tag) = value.split_once('.')?;
        // Both parts have a fixed length: anything else is refused before decoding.
        if id.len() != 43 || tag.len() != 43 {
            return None;
        }
        let id = URL_SAFE_NO_PAD.decode(id).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, &[SESSION_CONTEXT, &id].concat(), &tag).ok()?;
        Some(store_key(b"session", &id))
    }
}

/// 32 random bytes from the system generator.
fn random_bytes() -> [u8; RANDOM_BYTES] {
    let mut bytes = [0u8; RANDOM_BYTES];
    // The system generator does not fail on a working system; an all-zero value would only
    // be refused later (it is never a valid MAC), never trusted.
    let _ = rand::fill(&mut bytes);
    bytes
}

/// A new random token (state, nonce, PKCE verifier, browser binding): 43 base64url characters.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// The key a value is stored under: the hex SHA-256 of `kind` and the value, so the store never
/// holds what a browser presents.
pub fn store_key(kind: &[u8], value: &[u8]) -> String {
    let digest = digest::digest(&digest::SHA256, &[kind, b"\0", value].concat());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// One session, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The `[[issuers]]` id of the provider.
    pub issuer: String,
    /// The ID token's `sub`.
    pub subject: String,
    /// The ID token's `sid`, for back-channel logout by session.
    pub sid: Option<String>,
    /// The ID token's claims: what the upstream is told.
    pub claims: serde_json::Value,
    /// Roles read from the issuer's roles claim.
    pub roles: Vec<String>,
    /// Scopes the provider granted.
    pub scopes: Vec<String>,
    /// The last ID token, sent back as `id_token_hint` at logout.
    pub id_token: String,
    /// The provider's refresh token, when it granted one.
    pub refresh_token: Option<String>,
    /// Sign-in time (seconds since the epoch).
    pub created_at: i64,
    /// The last request seen (written at most every [`touch_interval`]).
    pub last_seen: i64,
    /// The absolute end: `created_at + session_max`.
    pub ends_at: i64,
    /// When the provider's tokens expire: refreshed from then on, or the end of the session
    /// when there is no refresh token.
    pub tokens_expire_at: i64,
    /// After a refresh that could not reach the provider: not tried again before this.
    #[serde(default)]
    pub refresh_retry_at: i64,
}

/// A sign-in under way, kept from the redirect to the provider until its callback (once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// The PKCE code verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// Where the browser goes after signing in: a path (and query) on the same host.
    pub return_to: String,
    /// The redirect URI sent to the provider, sent again with the code.
    pub redirect_uri: String,
    /// The hash of the browser's binding cookie: only the browser that started the sign-in
    /// may finish it.
    pub binding: String,
    /// When it stops being usable.
    pub expires_at: i64,
}

/// What a request finds its session to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Live; nothing to write.
    Live,
    /// Live, and `last_seen` is old enough to be written again.
    Touch,
    /// Live, but the provider's tokens have expired: refresh them first.
    Refresh,
    /// Over: idle too long, past its end, or its tokens expired with no way to renew them.
    Ended,
}

/// How often `last_seen` is written: at most once a minute, so a busy page costs one write a
/// minute, not one per request (and idle expiry is exact to within that).
pub fn touch_interval(idle: i64) -> i64 {
    (idle / 8).clamp(1, 60)
}

impl SessionRecord {
    /// The session's standing at `now`, with `idle` seconds of allowed idleness.
    pub fn standing(&self, now: i64, idle: i64) -> Standing {
        if now >= self.ends_at || now >= self.last_seen.saturating_add(idle) {
            return Standing::Ended;
        }
        if now >= self.tokens_expire_at {
            if self.refresh_token.is_none() {
                return Standing::Ended;
            }
            if now >= self.refresh_retry_at {
                return Standing::Refresh;
            }
        }
        if now - self.last_seen >= touch_interval(idle) {
            Standing::Touch
        } else {
            Standing::Live
        }
    }

    /// When the store may forget the record: the earlier of its end and its idle expiry.
    pub fn expires_at(&self, idle: i64) -> i64 {
        self.ends_at.min(self.last_seen.saturating_add(idle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: i64) -> SessionRecord {
        SessionRecord {
            issuer: "corp".into(),
            subject: "alice".into(),
            sid: None,
            claims: serde_json::json!({"sub": "alice"}),
            roles: Vec::new(),
            scopes: Vec::new(),
            id_token: "x.y.z".into(),
            refresh_token: None,
            created_at: now,
            last_seen: now,
            ends_at: now + 1000,
            tokens_expire_at: now + 500,
            refresh_retry_at: 0,
        }
    }

    #[test]
    fn a_cookie_opens_only_with_the_key_that_made_it() {
        let key = CookieKey::new(&[7u8; 32]);
        let other = CookieKey::new(&[8u8; 32]);
        let (value, stored) = key.issue();
        assert_eq!(value.len(), 87, "{value}");
        assert_eq!(key.open(&value), Some(stored.clone()));
        assert_eq!(other.open(&value), None);
        // A changed id, a changed tag, junk: none opens.
        let (id, tag) = value.split_once('.').unwrap();
        let mut flipped = id.to_string().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
        assert_eq!(key.open(&flipped), None);
        assert_eq!(key.open(&format!("{id}.{id}")), None);
        for junk in [
            "",
            ".",
            "a.b",
            &format!("{value}x"),
            &value.replace('.', ""),
        ] {
            assert_eq!(key.open(junk), None, "{junk}");
        }
        // Two sessions never share an id.
        assert_ne!(key.issue().1, stored);
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_token();
        assert_eq!(verifier.len(), 43);
        assert_ne!(verifier, random_token());
    }

    #[test]
    fn standing_follows_idle_absolute_and_token_expiry() {
        let now = 1_000_000;
        let idle = 300;
        let mut session = record(now);
        assert_eq!(session.standing(now, idle), Standing::Live);
        assert_eq!(session.standing(now + 60, idle), Standing::Touch);
        assert_eq!(session.standing(now + 300, idle), Standing::Ended);
        session.last_seen = now + 290;
        assert_eq!(session.standing(now + 300, idle), Standing::Live);
        // The provider's tokens expired: without a refresh token the session is over…
        session.last_seen = now + 499;
        assert_eq!(session.standing(now + 500, idle), Standing::Ended);
        // …with one, it is renewed (but not while a failed refresh waits to be retried).
        session.refresh_token = Some("r".into());
        assert_eq!(session.standing(now + 500, idle), Standing::Refresh);
        session.refresh_retry_at = now + 530;
        assert_eq!(session.standing(now + 500, idle), Standing::Live);
        // The absolute end holds whatever else is true.
        session.last_seen = now + 999;
        assert_eq!(session.standing(now + 1000, idle), Standing::Ended);
        assert_eq!(session.expires_at(idle), now + 1000);
    }
}
