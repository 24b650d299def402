//! The request head judged before routing: the host it names, the transfer coding of its body,
//! and whether its protocol upgrade may pass.
//!
//! Each check closes a way for the upstream to read a request differently from the gateway,
//! which routed and authenticated it by its own reading:
//! - **Host** (RFC 9112 §3.2, RFC 9113 §8.3.1): exactly one host, named once, as a bare
//!   `host[:port]`. A list (`a.example, b.example`), a path (`a.example/x`), userinfo
//!   (`user@a.example`), spaces or an empty value are 400, and so is a request that names no
//!   host at all, or names two different ones in its target and its Host header.
//! - **Transfer-Encoding** (RFC 9112 §6.1): `chunked`, once, is the only coding the gateway
//!   forwards; any other (`gzip, chunked`) is 501, since forwarding it would drop or misread it.
//! - **Upgrade** (RFC 9110 §7.8): an HTTP/1.1 upgrade passes only when every protocol it offers
//!   is in `server.upgrades`; otherwise it is declined (served as an ordinary request, the
//!   `Upgrade` header removed), as the RFC lets a server do. `h2c` is never allowed (RFC 9113
//!   §3.1 deprecates it): a tunnel to an h2c backend would carry requests the gateway never saw.
//!
//! All of it reads the head in place: nothing is allocated for a well-formed request.

use http::header::{HeaderValue, CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{Request, Version};

use crate::error::GatewayError;

/// What the checks found out about a well-formed request head.
#[derive(Debug)]
pub struct Head {
    /// The host the request is for, as sent (`host[:port]`), for routing and forwarding.
    pub authority: HeaderValue,
    /// Whether the request asks for an upgrade the gateway passes through.
    pub upgrade: bool,
}

/// Checks `request`'s head; `upgrades` are the protocols an upgrade may switch to.
pub fn head<B>(request: &Request<B>, upgrades: &[String]) -> Result<Head, GatewayError> {
    let authority = host(request)?;
    transfer_coding(request)?;
    Ok(Head {
        authority,
        upgrade: passes_upgrade(request, upgrades),
    })
}

/// The one host the request names: the target's authority (HTTP/2 `:authority`, HTTP/1.1
/// absolute-form) or the Host header; both when both are present, and then the same.
fn host<B>(request: &Request<B>) -> Result<HeaderValue, GatewayError> {
    let mut fields = request.headers().get_all(HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err(GatewayError::BadRequest(
            "the request has more than one Host header",
        ));
    }
    if let Some(field) = field {
        if !valid_authority(field.as_bytes()) {
            return Err(GatewayError::BadRequest(
                "the Host header must be one host name or address, with an optional port",
            ));
        }
    }
    let Some(target) = request.uri().authority() else {
        return field.cloned().ok_or(GatewayError::BadRequest(
            "the request names no host: send a Host header",
        ));
    };
    if !valid_authority(target.as_str().as_bytes()) {
        return Err(GatewayError::BadRequest(
            "the request target's authority must be one host name or address, with an optional port, and no user information",
        ));
    }
    if field.is_some_and(|field| {
        !field
            .as_bytes()
            .eq_ignore_ascii_case(target.as_str().as_bytes())
    }) {
        return Err(GatewayError::BadRequest(
            "the Host header names another host than the request target",
        ));
    }
    if request.version() == Version::HTTP_11 && field.is_none() {
        return Err(GatewayError::BadRequest(
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    HeaderValue::from_str(target.as_str())
        .map_err(|_| GatewayError::BadRequest("the request target's authority is malformed"))
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2) as the gateway accepts it: a DNS name or IPv4
/// address (letters, digits, `-`, `.`, `_`) or a bracketed IPv6 address, and a port of 1–5
/// digits. No userinfo, percent-encoding, list, path or whitespace: each is something a
/// backend might read as another host.
pub fn valid_authority(value: &[u8]) -> bool {
    let (host_ok, rest) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let address = std::str::from_utf8(&literal[..end]).ok();
        (
            address.is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
            &literal[end + 1..],
        )
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let name = &value[..end];
        let name_ok = !name.is_empty()
            && name.len() <= 255
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        (name_ok, &value[end..])
    };
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// Refuses a body coding other than one `chunked` (RFC 9112 §6.1: 501 for a coding the
/// server does not understand; `chunked` applied twice is malformed).
fn transfer_coding<B>(request: &Request<B>) -> Result<(), GatewayError> {
    let mut chunked = 0;
    for value in request.headers().get_all(TRANSFER_ENCODING) {
        for coding in value.as_bytes().split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                // Empty list elements are allowed and mean nothing (RFC 9110 §5.6.1).
                continue;
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(GatewayError::NotImplemented(
                    "the gateway forwards request bodies only with the chunked transfer coding",
                ));
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(GatewayError::BadRequest(
            "the chunked transfer coding is applied more than once",
        ));
    }
    Ok(())
}

/// An HTTP/1.1 request asking to switch protocols (`Connection: upgrade` + `Upgrade`) to
/// protocols that are all allowed.
fn passes_upgrade<B>(request: &Request<B>, allowed: &[String]) -> bool {
    let headers = request.headers();
    let Some(offered) = headers.get(UPGRADE) else {
        return false;
    };
    let asked = request.version() == Version::HTTP_11
        && headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    asked
        && headers.get_all(UPGRADE).iter().count() == 1
        && offers_only(offered.as_bytes(), allowed)
}

/// Whether the `Upgrade` list names at least one protocol and only `allowed` ones (compared by
/// name, case-insensitively; a `/version` is not compared). `h2c` never passes.
pub fn offers_only(upgrade: &[u8], allowed: &[String]) -> bool {
    let mut any = false;
    for protocol in upgrade.split(|&b| b == b',') {
        let protocol = protocol.trim_ascii();
        if protocol.is_empty() {
            continue;
        }
        let name = protocol.split(|&b| b == b'/').next().unwrap_or_default();
        if name.eq_ignore_ascii_case(b"h2c")
            || !allowed
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
        {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn websocket() -> Vec<String> {
        vec!["websocket".into()]
    }

    #[test]
    fn authorities_are_bare_hosts_with_an_optional_port() {
        for good in [
            "api.example.com",
            "api.example.com:8443",
            "API.Example.com",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "svc_internal",
            "example.com.",
        ] {
            assert!(valid_authority(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "public.example, internal.example",
            "public.example,internal.example",
            "internal.example/x",
            "user@internal.example",
            "a b",
            "a\tb",
            "host:",
            "host:123456",
            "host:80:90",
            "host:8x",
            ":80",
            "[::1",
            "[::1]x",
            "[v1.x]",
            "[fe80::1%25eth0]",
            "ex%61mple.com",
            "exämple.com",
            "a;b",
        ] {
            assert!(!valid_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn one_host_is_named_once() {
        let h1 = |headers: &[(&str, &str)]| host(&request(Version::HTTP_11, "/", headers));
        assert_eq!(h1(&[("host", "a.test")]).unwrap(), "a.test");
        assert!(h1(&[]).is_err(), "no host");
        assert!(h1(&[("host", "a.test"), ("host", "a.test")]).is_err());
        assert!(h1(&[("host", "a.test, b.test")]).is_err());
        assert!(h1(&[("host", "")]).is_err());
        // HTTP/1.0 may omit Host, but the gateway routes by host: it still needs one.
        assert!(host(&request(Version::HTTP_10, "/", &[])).is_err());

        let absolute =
            |uri: &str, headers: &[(&str, &str)]| host(&request(Version::HTTP_11, uri, headers));
        assert_eq!(
            absolute("http://a.test/x", &[("host", "A.test")]).unwrap(),
            "a.test"
        );
        assert!(absolute("http://user@a.test/x", &[("host", "a.test")]).is_err());
        assert!(absolute("http://a.test/x", &[("host", "b.test")]).is_err());
        assert!(
            absolute("http://a.test/x", &[]).is_err(),
            "HTTP/1.1 needs Host"
        );

        let h2 =
            |uri: &str, headers: &[(&str, &str)]| host(&request(Version::HTTP_2, uri, headers));
        assert_eq!(h2("http://a.test:8080/", &[]).unwrap(), "a.test:8080");
        assert!(h2("http://x@a.test/", &[]).is_err());
        assert!(h2("http://a.test/", &[("host", "b.test")]).is_err());
        assert_eq!(h2("/", &[("host", "a.test")]).unwrap(), "a.test");
    }

    #[test]
    fn only_a_single_chunked_coding_is_forwarded() {
        let te = |value: &str| {
            transfer_coding(&request(
                Version::HTTP_11,
                "/",
                &[("transfer-encoding", value)],
            ))
        };
        assert!(te("chunked").is_ok());
        assert!(te("Chunked").is_ok());
        assert!(te(" chunked ,").is_ok());
        assert!(matches!(
            te("gzip, chunked"),
            Err(GatewayError::NotImplemented(_))
        ));
        assert!(matches!(
            te("identity"),
            Err(GatewayError::NotImplemented(_))
        ));
        assert!(matches!(
            te("chunked, chunked"),
            Err(GatewayError::BadRequest(_))
        ));
        assert!(transfer_coding(&request(Version::HTTP_11, "/", &[])).is_ok());
    }

    #[test]
    fn only_allowed_upgrades_pass() {
        let upgrade = |version, headers: &[(&str, &str)]| {
            passes_upgrade(&request(version, "/", headers), &websocket())
        };
        let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert!(upgrade(Version::HTTP_11, &ws));
        assert!(upgrade(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, upgrade"),
                ("upgrade", "WebSocket")
            ]
        ));
        assert!(!upgrade(Version::HTTP_10, &ws));
        assert!(!upgrade(Version::HTTP_11, &[("upgrade", "websocket")]));
        assert!(!upgrade(
            Version::HTTP_11,
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c")
            ]
        ));
        assert!(!upgrade(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")]
        ));
        assert!(!upgrade(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "irc/6.9")]
        ));
        assert!(!offers_only(b"h2c", &["h2c".into()]), "h2c never passes");
        assert!(!offers_only(b" , ", &websocket()));
    }
}
