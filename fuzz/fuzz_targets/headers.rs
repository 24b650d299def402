//! Header rewriting on any header set: after identity stripping no header the gateway would
//! treat as identity remains; after hop-by-hop removal none of the hop-by-hop names nor any
//! name `Connection` listed remains; forwarding headers are always single valid values.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use authgate::config::Config;
use authgate::identity::IdentityStripper;
use authgate::proxy::headers::{self, Hop, X_FORWARDED_FOR, X_FORWARDED_PROTO};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, FORWARDED};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    peer: [u8; 4],
    trusted: bool,
    host: Option<Vec<u8>>,
    tls: bool,
}

fn stripper() -> &'static IdentityStripper {
    static STRIPPER: OnceLock<IdentityStripper> = OnceLock::new();
    STRIPPER.get_or_init(|| {
        let config = Config::parse(
            "[server]\nhttp = \"127.0.0.1:0\"\n\n[identity]\nstrip = [\"X-Auth-\", \"X-User\"]\nclaims = { email = \"X-Email\" }\n",
            Path::new("gateway.toml"),
        )
        .expect("the fixture config is valid");
        IdentityStripper::new(&config.identity)
    })
}

fuzz_target!(|input: Input| {
    let mut map = HeaderMap::new();
    for (name, value) in &input.fields {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    stripper().strip(&mut map);
    for name in map.keys() {
        assert!(!stripper().is_identity_header(name), "{name} survived stripping");
        let normal = name.as_str().replace('_', "-");
        assert!(!normal.starts_with("x-auth-") && !normal.starts_with("x-user") && normal != "x-email");
    }

    let named: Vec<HeaderName> = map
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    headers::remove_hop_by_hop(&mut map, false);
    for name in &named {
        assert!(!map.contains_key(name), "{name} was named in Connection and survived");
    }
    for name in ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "trailer", "proxy-connection", "http2-settings"] {
        assert!(!map.contains_key(name), "{name} survived");
    }

    let host = input.host.as_deref().and_then(|h| HeaderValue::from_bytes(h).ok());
    let hop = Hop {
        client: IpAddr::from(input.peer),
        trusted: input.trusted,
        proto: if input.tls { "https" } else { "http" },
        host: host.as_ref(),
    };
    headers::set_forwarding(&mut map, hop);
    for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &FORWARDED] {
        assert_eq!(map.get_all(name).iter().count(), 1, "{name}");
    }
    let forwarded_for = map[&X_FORWARDED_FOR].to_str().expect("ASCII");
    assert!(forwarded_for.ends_with(&IpAddr::from(input.peer).to_string()));
});
