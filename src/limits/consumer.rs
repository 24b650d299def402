//! Who a limit counts against: the consumer. An API key's id, a JWT's issuer and subject, or —
//! on a public route — the client's address (an IPv6 client counts per /64, the block one
//! subscriber usually holds). A consumer has a canonical text form, used by the admin
//! endpoints and the quota store, and a keyed hash, computed once per request, that the
//! limiters' tables are indexed by.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::LazyLock;

/// The caller a limit counts against, borrowed from the request's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer<'a> {
    /// An API key, by its id: `api_key:ID`.
    ApiKey(&'a str),
    /// A JWT, by issuer id and subject: `jwt:ISSUER:SUBJECT`.
    Jwt {
        /// The issuer's configured id.
        issuer: &'a str,
        /// The token's `sub`.
        subject: &'a str,
    },
    /// A caller known only by its address (already reduced by [`address_key`]): `ip:ADDRESS`.
    Address(IpAddr),
}

/// A process-wide random key: table indexes cannot be steered by choosing key ids or subjects.
static HASH_KEY: LazyLock<std::hash::RandomState> = LazyLock::new(std::hash::RandomState::new);

impl<'a> Consumer<'a> {
    /// Reads a canonical id (`api_key:…`, `jwt:ISSUER:SUBJECT`, `ip:…`), as the admin endpoints
    /// take it.
    pub fn parse(id: &'a str) -> Option<Consumer<'a>> {
        let (kind, rest) = id.split_once(':')?;
        match kind {
            "api_key" if !rest.is_empty() => Some(Consumer::ApiKey(rest)),
            "jwt" => {
                let (issuer, subject) = rest.split_once(':')?;
                Some(Consumer::Jwt { issuer, subject })
            }
            "ip" => {
                let address = rest.split('/').next()?.parse().ok()?;
                Some(Consumer::Address(address_key(address)))
            }
            _ => None,
        }
    }

    /// The keyed hash the limiters index by (combined with each policy's own salt).
    pub fn hash(&self) -> u64 {
        let mut hasher = HASH_KEY.build_hasher();
        match self {
            Consumer::ApiKey(id) => {
                hasher.write_u8(1);
                hasher.write(id.as_bytes());
            }
            Consumer::Jwt { issuer, subject } => {
                hasher.write_u8(2);
                hasher.write(issuer.as_bytes());
                hasher.write_u8(0xff);
                hasher.write(subject.as_bytes());
            }
            Consumer::Address(address) => {
                hasher.write_u8(3);
                match address {
                    IpAddr::V4(v4) => hasher.write(&v4.octets()),
                    IpAddr::V6(v6) => hasher.write(&v6.octets()),
                }
            }
        }
        hasher.finish()
    }
}

impl fmt::Display for Consumer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consumer::ApiKey(id) => write!(f, "api_key:{id}"),
            Consumer::Jwt { issuer, subject } => write!(f, "jwt:{issuer}:{subject}"),
            Consumer::Address(IpAddr::V4(v4)) => write!(f, "ip:{v4}"),
            Consumer::Address(IpAddr::V6(v6)) => write!(f, "ip:{v6}/64"),
        }
    }
}

/// The address a client is counted under: IPv4 as it is, IPv6 reduced to its /64.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// A table key for one consumer under one policy: the consumer's hash mixed with the policy's
/// salt (splitmix64's finalizer, a bijection, so one policy's consumers never collide here).
pub fn table_key(consumer_hash: u64, policy_salt: u64) -> u64 {
    let mut z = consumer_hash ^ policy_salt;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The salt of a policy name.
pub fn policy_salt(name: &str) -> u64 {
    let mut hasher = HASH_KEY.build_hasher();
    hasher.write(name.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ids_round_trip() {
        let v6: IpAddr = "2001:db8:1:2:aaaa::9".parse().unwrap();
        for consumer in [
            Consumer::ApiKey("ci-bot-1"),
            Consumer::Jwt {
                issuer: "idp",
                subject: "user:7",
            },
            Consumer::Address("203.0.113.7".parse().unwrap()),
            Consumer::Address(address_key(v6)),
        ] {
            let text = consumer.to_string();
            let parsed = Consumer::parse(&text).unwrap();
            assert_eq!(parsed, consumer, "{text}");
            assert_eq!(parsed.hash(), consumer.hash());
        }
        assert_eq!(
            Consumer::Address(address_key(v6)).to_string(),
            "ip:2001:db8:1:2::/64"
        );
        assert!(Consumer::parse("who:me").is_none());
        assert!(Consumer::parse("api_key:").is_none());
    }

    #[test]
    fn one_ipv6_slash_64_is_one_consumer() {
        let a = address_key("2001:db8:1:2::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:ffff::1".parse().unwrap());
        let c = address_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = address_key("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(mapped, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn kinds_do_not_share_keys() {
        let key = Consumer::ApiKey("x").hash();
        let jwt = Consumer::Jwt {
            issuer: "x",
            subject: "",
        }
        .hash();
        assert_ne!(key, jwt);
        let salt = policy_salt("free");
        assert_ne!(table_key(key, salt), table_key(key, policy_salt("gold")));
    }
}
