//! Header rewriting between client and upstream.
//!
//! - Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message: they are
//!   removed in both directions, together with every header the `Connection` header names. Two
//!   things survive on purpose: `TE: trailers` (a client saying it takes trailers, which gRPC
//!   servers expect to hear, and the one `TE` value HTTP/2 allows) and `Trailer` (which fields
//!   come as trailers: without it, an HTTP/1.1 hop drops them).
//! - `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239) tell the upstream about the
//!   original client. A client could write anything there, so values already present are kept
//!   (and appended to) only when the peer is one of `trusted_proxies`; otherwise they are
//!   replaced by what the gateway saw itself.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, FORWARDED, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE,
};
use ipnet::IpNet;

/// Headers that only concern one hop, whatever `Connection` says. Kept as `HeaderName`s so
/// removing them hashes a ready name instead of parsing a string for each of them per request.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    // The settings of an h2c upgrade (RFC 9113 §3.2.1, connection-specific), never passed on.
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRANSFER_ENCODING,
];

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and the ones `Connection` lists. When `keep_upgrade` is true (a
/// protocol upgrade is being passed through), `Upgrade` survives and `Connection: upgrade` is
/// put back, since the next hop needs both to take part in the upgrade.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Only the names present are removed, found in one pass over the few names a message has:
    // most carry none of these, or just `Connection`, and a hashed removal per hop-by-hop name
    // cost more than the rest of the rewriting. A message with none (most requests) is left
    // as it is without allocating.
    let doomed_name =
        |name: &HeaderName| HOP_BY_HOP.contains(name) || (!keep_upgrade && *name == UPGRADE);
    if !headers.keys().any(doomed_name) {
        if keep_upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|n| doomed_name(n)).cloned().collect();
    if doomed.contains(&CONNECTION) {
        let named = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !(keep_upgrade && *name == UPGRADE));
        doomed.extend(named);
    }
    let takes_trailers = doomed.contains(&TE)
        && headers.get_all(TE).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    for name in doomed {
        headers.remove(name);
    }
    if takes_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// `traceparent` (W3C Trace Context).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Whether `value` is a well-formed W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, with a
/// trace id and parent id that are not all zeros.
pub fn valid_traceparent(value: &[u8]) -> bool {
    let hex = |part: &[u8]| {
        part.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let nonzero = |part: &[u8]| part.iter().any(|b| *b != b'0');
    value.len() == 55
        && value[2] == b'-'
        && value[35] == b'-'
        && value[52] == b'-'
        && hex(&value[..2])
        && &value[..2] != b"ff"
        && hex(&value[3..35])
        && nonzero(&value[3..35])
        && hex(&value[36..52])
        && nonzero(&value[36..52])
        && hex(&value[53..])
}

/// Keeps a valid incoming `traceparent` unchanged; replaces an invalid one, or adds one when
/// absent, with a new trace when `generate` is on (an invalid one is dropped when it is off).
pub fn ensure_traceparent(headers: &mut HeaderMap, generate: bool) {
    let incoming = headers.get(&TRACEPARENT).map(HeaderValue::as_bytes);
    if incoming.is_some_and(valid_traceparent) {
        return;
    }
    headers.remove(&TRACEPARENT);
    if generate {
        // Written in place (`00-<trace>-<parent>-00`): no formatting, one allocation.
        let mut value = [0u8; 55];
        value[..3].copy_from_slice(b"00-");
        uuid::Uuid::new_v4()
            .simple()
            .encode_lower(&mut value[3..35]);
        value[35] = b'-';
        let mut parent = [0u8; 32];
        uuid::Uuid::new_v4().simple().encode_lower(&mut parent);
        value[36..52].copy_from_slice(&parent[..16]);
        value[52..].copy_from_slice(b"-00");
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT.clone(), value);
        }
    }
}

/// Whether `peer` may speak for the client in forwarding headers.
pub fn is_trusted(peer: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted_proxies.iter().any(|net| net.contains(&peer))
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the right end is the one a trusted
/// hop wrote; anything to its left the client may have made up).
pub fn client_address(headers: &HeaderMap, peer: IpAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted_proxies) {
        return canonical(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| item.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .map(canonical)
        .find(|address| !is_trusted(*address, trusted_proxies))
        .unwrap_or_else(|| canonical(peer))
}

/// What the gateway knows about the hop it received a request on.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The peer's address.
    pub client: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// `http` or `https`: how the request reached the gateway.
    pub proto: &'static str,
    /// The host the client asked for, if any (the `Host` header or the URI's authority).
    pub host: Option<&'a HeaderValue>,
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded` for the upstream.
pub fn set_forwarding(headers: &mut HeaderMap, hop: Hop<'_>) {
    let client = canonical(hop.client);
    let mut client_text = String::with_capacity(39);
    write_ip(&mut client_text, client);
    let host = hop.host.and_then(|h| h.to_str().ok()).filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    // The `Forwarded` element is written first, so that the address text can then move into
    // `X-Forwarded-For` as it is: two allocations for the two values, no copy between them.
    let quoted = client.is_ipv6();
    let mut element = String::with_capacity(
        "for=\"[]\";proto=https;host=\"\"".len() + client_text.len() + host.map_or(0, str::len),
    );
    element.push_str("for=");
    if quoted {
        element.push_str("\"[");
    }
    element.push_str(&client_text);
    if quoted {
        element.push_str("]\"");
    }
    element.push_str(";proto=");
    element.push_str(hop.proto);
    if let Some(host) = host {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    append_or_replace(headers, &X_FORWARDED_FOR, client_text, hop.trusted);
    if !(hop.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(hop.proto),
        );
    }
    if let Some(host) = hop.host {
        if !(hop.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
    }
    append_or_replace(headers, &FORWARDED, element, hop.trusted);
}

/// Writes `ip` as text. IPv4 is written digit by digit: `Display` goes through the formatting
/// machinery, several times the cost, and this runs twice per request.
fn write_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `value` as a new list element after what a trusted peer sent, or replaces whatever an
/// untrusted one sent.
fn append_or_replace(headers: &mut HeaderMap, name: &HeaderName, value: String, trusted: bool) {
    let combined = if trusted {
        let previous: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if previous.is_empty() {
            value
        } else {
            format!("{}, {value}", previous.join(", "))
        }
    } else {
        value
    };
    // The string's buffer becomes the header value's, without a copy.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(combined)) {
        headers.insert(name.clone(), value);
    }
}

/// An IPv4 peer reached over an IPv6 socket (`::ffff:10.0.0.1`) is treated as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Joins HTTP/2 `cookie` crumbs into one field, separated by `; `, as RFC 9113 §8.2.3 requires
/// before a request goes on over HTTP/1.1 (where RFC 6265 §5.4 allows one Cookie header): a
/// backend reading only the first of several would see another cookie set than the gateway.
/// A request with one cookie field (nearly all) is left as it is.
pub fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 4);
    for (i, crumb) in headers.get_all(COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_read_from_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let sent = headers(&[("x-forwarded-for", "6.6.6.6, 192.0.2.7, 10.1.1.1")]);
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_address(&sent, proxy, &trusted),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(&sent, stranger, &trusted), stranger);
        assert_eq!(client_address(&HeaderMap::new(), proxy, &trusted), proxy);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut map, false);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn te_trailers_and_the_trailer_declaration_pass() {
        let mut map = headers(&[
            ("connection", "te"),
            ("te", "gzip, Trailers"),
            ("trailer", "grpc-status"),
        ]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map["te"], "trailers");
        assert_eq!(map["trailer"], "grpc-status");
        assert!(!map.contains_key("connection"));
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_left_alone() {
        let mut map = headers(&[("x-kept", "1"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 2);
        remove_hop_by_hop(&mut map, true);
        assert_eq!(map["connection"], "upgrade");
        let mut map = headers(&[("upgrade", "websocket"), ("x-kept", "1")]);
        remove_hop_by_hop(&mut map, false);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection_upgrade() {
        let mut map = headers(&[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
        ]);
        remove_hop_by_hop(&mut map, true);
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["connection"], "upgrade");
        assert!(!map.contains_key("x-secret"));
    }

    fn hop(trusted: bool) -> Hop<'static> {
        Hop {
            client: "192.0.2.7".parse().unwrap(),
            trusted,
            proto: "https",
            host: Some(&HOST),
        }
    }

    static HOST: HeaderValue = HeaderValue::from_static("api.example.com");

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarding(&mut map, hop(false));
        assert_eq!(map["x-forwarded-for"], "192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "api.example.com");
        assert_eq!(
            map["forwarded"],
            "for=192.0.2.7;proto=https;host=\"api.example.com\""
        );
    }

    #[test]
    fn trusted_forwarding_headers_are_extended() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "http"),
        ]);
        set_forwarding(&mut map, hop(true));
        assert_eq!(map["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "192.0.2.7",
            "255.255.255.255",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = String::new();
            write_ip(&mut text, ip);
            assert_eq!(text, ip.to_string());
        }
    }

    #[test]
    fn ipv6_clients_are_quoted_in_forwarded() {
        let mut map = HeaderMap::new();
        set_forwarding(
            &mut map,
            Hop {
                client: "2001:db8::1".parse().unwrap(),
                trusted: false,
                proto: "http",
                host: None,
            },
        );
        assert_eq!(map["forwarded"], "for=\"[2001:db8::1]\";proto=http");
    }

    #[test]
    fn traceparent_passes_through_or_is_generated() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut map = headers(&[("traceparent", valid)]);
        ensure_traceparent(&mut map, true);
        assert_eq!(map["traceparent"], valid);
        for invalid in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut map = headers(&[("traceparent", invalid)]);
            ensure_traceparent(&mut map, true);
            assert!(
                valid_traceparent(map["traceparent"].as_bytes()),
                "{invalid} was replaced"
            );
            let mut map = headers(&[("traceparent", invalid)]);
            ensure_traceparent(&mut map, false);
            assert!(!map.contains_key("traceparent"));
        }
        let mut map = HeaderMap::new();
        ensure_traceparent(&mut map, true);
        assert!(valid_traceparent(map["traceparent"].as_bytes()));
        let mut map = HeaderMap::new();
        ensure_traceparent(&mut map, false);
        assert!(map.is_empty());
    }

    #[test]
    fn trust_is_by_cidr_and_sees_through_mapped_ipv4() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(!is_trusted("11.1.2.3".parse().unwrap(), &nets));
    }

    #[test]
    fn cookie_crumbs_are_joined_into_one_field() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        join_cookie_crumbs(&mut headers);
        assert_eq!(headers.get_all(COOKIE).iter().count(), 1);
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        headers.append(COOKIE, HeaderValue::from_static("c=3"));
        join_cookie_crumbs(&mut headers);
        let all: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }
}
