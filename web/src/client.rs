//! Who the client is and which host it addressed, behind reverse proxies. Every per-address
//! limit (signup, key validation, admin login, tenant sign-in) and every choice of host
//! (dispatch, the same-origin check) reads them from here, so one rule holds everywhere:
//!
//! - The TCP peer is the client unless it is a trusted proxy (`[http] trusted_proxies`); then
//!   only is a forwarding header read at all.
//! - The chain (`X-Forwarded-For`, or `Forwarded` when there is no `X-Forwarded-For`) is walked
//!   from the right — each proxy appends whom it received from — skipping trusted addresses; the
//!   first untrusted one is the client. Whatever stands left of it was written by the client and
//!   is ignored. An entry that is not an address (`unknown`, an obfuscated `_name`, garbage)
//!   stops the walk: the nearest trusted hop stands for the client.
//! - The forwarded host is the one received by the outermost trusted proxy: the `host=` of the
//!   same `Forwarded` element, or the `X-Forwarded-Host` value at the same place from the right
//!   (the leftmost when there are fewer values). It is read only with `trust_forwarded_host`.
//!
//! - Whether the client reached us over https is what the outermost trusted proxy received:
//!   `proto=` of the same `Forwarded` element, or the `X-Forwarded-Proto` value at the same place
//!   from the right. [`identify_client`] leaves the request an `X-Forwarded-Proto` only then
//!   (`https`), so a client's own claim never reaches HSTS, `Secure` cookies or mailed links.
//!
//! `X-Forwarded-For` is preferred when both headers come, since it is what most proxies write
//! while passing a client's own `Forwarded` through; a proxy that writes `Forwarded` must drop
//! a client's `X-Forwarded-For`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::ApiError;

/// The proxies whose forwarding headers are believed, and whether the forwarded host is used.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Arc<[IpNet]>,
    forwarded_host: bool,
}

/// The client's address (extractor): the peer's, or the one trusted proxies forwarded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The host the client addressed, as forwarded by the outermost trusted proxy (a request
/// extension, present only when `trust_forwarded_host` is on and a trusted proxy sent one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedHost(pub String);

/// What the headers of one request say, read through trusted hops only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub client: IpAddr,
    pub host: Option<String>,
    /// The outermost trusted proxy received the request over https.
    pub https: bool,
}

/// One element of a forwarding chain: whom a proxy received from, and the host it was asked for.
#[derive(Debug, Default)]
struct Hop {
    address: Option<IpAddr>,
    host: Option<String>,
    proto: Option<String>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>, forwarded_host: bool) -> Self {
        Self {
            networks: networks.into(),
            forwarded_host,
        }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client and forwarded host of a request from `peer` with these headers.
    pub fn forwarding(&self, peer: IpAddr, headers: &HeaderMap) -> Forwarding {
        let untouched = Forwarding {
            client: peer.to_canonical(),
            host: None,
            https: false,
        };
        if !self.trusts(peer) {
            return untouched;
        }
        let forwarded = header_text(headers, header::FORWARDED);
        let forwarded_for = header_text(headers, "x-forwarded-for");
        let hops = match (forwarded_for, forwarded) {
            (None, Some(forwarded)) => parse_forwarded(&forwarded),
            (forwarded_for, _) => {
                let mut hops: Vec<Hop> = forwarded_for
                    .as_deref()
                    .map(|list| split_outside_quotes(list, ','))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|entry| Hop {
                        address: parse_node(entry),
                        ..Hop::default()
                    })
                    .collect();
                let list = |name: &str| -> Vec<String> {
                    header_text(headers, name)
                        .map(|list| list.split(',').filter_map(non_empty).collect())
                        .unwrap_or_default()
                };
                let (hosts, protos) = (list("x-forwarded-host"), list("x-forwarded-proto"));
                // Hosts and protocols line up with addresses from the right; fewer of them: the
                // leftmost serves.
                if hops.is_empty() && !(hosts.is_empty() && protos.is_empty()) {
                    hops.push(Hop::default());
                }
                let at = |values: &[String], from_right: usize| {
                    values
                        .get(values.len().saturating_sub(1 + from_right))
                        .cloned()
                };
                for (from_right, hop) in hops.iter_mut().rev().enumerate() {
                    hop.host = at(&hosts, from_right);
                    hop.proto = at(&protos, from_right);
                }
                hops
            }
        };
        let mut client = untouched.client;
        let mut outermost = None;
        for hop in hops.iter().rev() {
            outermost = Some(hop);
            match hop.address {
                Some(address) if self.trusts(address) => client = address.to_canonical(),
                Some(address) => {
                    client = address.to_canonical();
                    break;
                }
                None => break,
            }
        }
        Forwarding {
            client,
            host: outermost
                .and_then(|hop| hop.host.clone())
                .filter(|_| self.forwarded_host),
            https: outermost
                .and_then(|hop| hop.proto.as_deref())
                .is_some_and(|proto| proto.eq_ignore_ascii_case("https")),
        }
    }
}

const X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");

/// Middleware (with [`TrustedProxies`] as its state): puts [`ClientAddr`] and, when trusted,
/// [`ForwardedHost`] into the request's extensions, once, for everything after it.
pub async fn identify_client(
    State(proxies): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let mut https = false;
    if let Some(peer) = peer {
        let forwarding = proxies.forwarding(peer, request.headers());
        https = forwarding.https;
        request
            .extensions_mut()
            .insert(ClientAddr(forwarding.client));
        if let Some(host) = forwarding.host {
            request.extensions_mut().insert(ForwardedHost(host));
        }
    }
    // From here on, `X-Forwarded-Proto` is the trusted proxies' word or absent.
    let headers = request.headers_mut();
    headers.remove(X_FORWARDED_PROTO);
    if https {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    next.run(request).await
}

/// The host (with port) the client addressed: the trusted forwarded host, else `Host`.
pub fn addressed_host<'a>(headers: &'a HeaderMap, extensions: &'a Extensions) -> Option<&'a str> {
    match extensions.get::<ForwardedHost>() {
        Some(ForwardedHost(host)) => Some(host.as_str()),
        None => headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::trim),
    }
}

/// The client address of a request: [`identify_client`]'s, else the TCP peer's.
pub fn client_addr(extensions: &Extensions) -> Option<ClientAddr> {
    extensions.get::<ClientAddr>().copied().or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| ClientAddr(peer.ip().to_canonical()))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every request the server accepts has a peer; one without is a wiring mistake.
        client_addr(&parts.extensions).ok_or_else(ApiError::internal)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(client_addr(&parts.extensions))
    }
}

/// Every value of a header, joined as one list (bytes that are not text become U+FFFD, so a
/// client's garbage stays one unparseable entry instead of hiding the proxies' entries).
fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    let values: Vec<_> = headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Splits on `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if character == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + character.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `Forwarded` (RFC 7239): elements by commas, pairs by semicolons, values tokens or quoted.
fn parse_forwarded(text: &str) -> Vec<Hop> {
    split_outside_quotes(text, ',')
        .into_iter()
        .map(|element| {
            let mut hop = Hop::default();
            for pair in split_outside_quotes(element, ';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = unquote(value.trim());
                match name.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.address = parse_node(&value),
                    "host" => hop.host = non_empty(&value),
                    "proto" => hop.proto = non_empty(&value),
                    _ => {}
                }
            }
            hop
        })
        .collect()
}

fn unquote(value: &str) -> String {
    match value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => {
            let mut text = String::with_capacity(inner.len());
            let mut characters = inner.chars();
            while let Some(character) = characters.next() {
                text.push(match character {
                    '\\' => characters.next().unwrap_or('\\'),
                    other => other,
                });
            }
            text
        }
        None => value.to_owned(),
    }
}

/// A node of a forwarding chain: `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]`,
/// `[2001:db8::1]:443` or a bare IPv6 address. Anything else (`unknown`, `_hidden`) is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = unquote(node.trim());
    if let Some(rest) = node.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        return port_ok
            .then(|| address.parse::<Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            networks
                .iter()
                .map(|network| network.parse().unwrap())
                .collect(),
            true,
        )
    }

    fn forwarding(peer: &str, headers: &[(&str, &str)]) -> Forwarding {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        proxies(&["10.0.0.0/8", "fd00::/8"]).forwarding(peer.parse().unwrap(), &map)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        // (peer, X-Forwarded-For, the client)
        let cases = [
            // No proxy trusted: headers are the client's word and ignored.
            ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
            ("203.0.113.9", "10.0.0.1", "203.0.113.9"),
            // One trusted proxy appending the client.
            ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
            // The client's own spoofed entries stand left of what the proxy appended.
            ("10.0.0.2", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
            ("10.0.0.2", "10.9.9.9, 198.51.100.1", "198.51.100.1"),
            // Two trusted proxies.
            ("10.0.0.2", "198.51.100.1, 10.0.0.3", "198.51.100.1"),
            // All trusted: the leftmost.
            ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),
            // Ports and brackets.
            ("10.0.0.2", "198.51.100.1:5555", "198.51.100.1"),
            ("10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
            ("10.0.0.2", "2001:db8::7", "2001:db8::7"),
            // IPv6 proxy, IPv4-mapped peer.
            ("fd00::1", "198.51.100.1", "198.51.100.1"),
            ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),
            // Garbage stops the walk; the nearest trusted hop stands for the client.
            ("10.0.0.2", "garbage", "10.0.0.2"),
            ("10.0.0.2", "198.51.100.1, unknown, 10.0.0.3", "10.0.0.3"),
            ("10.0.0.2", "198.51.100.1, 999.1.1.1", "10.0.0.2"),
            ("10.0.0.2", "", "10.0.0.2"),
            // Garbage left of the appended client changes nothing.
            ("10.0.0.2", "\"x\", ;;, 198.51.100.1", "198.51.100.1"),
        ];
        for (peer, header, client) in cases {
            let seen = forwarding(peer, &[("x-forwarded-for", header)]);
            assert_eq!(
                seen.client,
                ip(client),
                "peer {peer}, X-Forwarded-For {header:?}"
            );
        }
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let seen = forwarding(
            "10.0.0.2",
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "10.0.0.3"),
            ],
        );
        assert_eq!(seen.client, ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_syntax_is_read_with_quotes_brackets_and_ports() {
        // (Forwarded, the client, the forwarded host)
        let cases: [(&str, &str, Option<&str>); 10] = [
            ("for=198.51.100.1", "198.51.100.1", None),
            (
                "For=198.51.100.1;Host=shop.example",
                "198.51.100.1",
                Some("shop.example"),
            ),
            (
                "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=\"a.example:8443\"",
                "2001:db8:cafe::17",
                Some("a.example:8443"),
            ),
            ("for=\"198.51.100.1:5555\"", "198.51.100.1", None),
            (
                "for=1.2.3.4;host=evil.example, for=198.51.100.1;host=good.example, for=10.0.0.3;host=inner",
                "198.51.100.1",
                Some("good.example"),
            ),
            // A quoted comma does not split elements.
            (
                "for=\"198.51.100.1\";host=\"x,y\"",
                "198.51.100.1",
                Some("x,y"),
            ),
            ("for=unknown", "10.0.0.2", None),
            (
                "for=_hidden;host=obfuscated.example",
                "10.0.0.2",
                Some("obfuscated.example"),
            ),
            ("for=\"[2001:db8::1\"", "10.0.0.2", None),
            ("this is ; not = forwarded", "10.0.0.2", None),
        ];
        for (header, client, host) in cases {
            let seen = forwarding("10.0.0.2", &[("forwarded", header)]);
            assert_eq!(seen.client, ip(client), "Forwarded {header:?}");
            assert_eq!(seen.host.as_deref(), host, "Forwarded {header:?}");
        }
    }

    #[test]
    fn x_forwarded_for_is_preferred_over_a_passed_through_forwarded() {
        let seen = forwarding(
            "10.0.0.2",
            &[
                ("forwarded", "for=10.0.0.9"),
                ("x-forwarded-for", "198.51.100.1"),
            ],
        );
        assert_eq!(seen.client, ip("198.51.100.1"));
    }

    #[test]
    fn https_is_what_the_outermost_trusted_proxy_received_and_no_client_claim() {
        // (peer, headers, https)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: [Case<'_>; 7] = [
            ("10.0.0.2", &[("x-forwarded-proto", "https")], true),
            // A client talking to us directly cannot claim it.
            ("198.51.100.1", &[("x-forwarded-proto", "https")], false),
            (
                "10.0.0.2",
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("x-forwarded-proto", "https"),
                ],
                true,
            ),
            // The client's own value stands left of the proxy's.
            (
                "10.0.0.2",
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("x-forwarded-proto", "https, http"),
                ],
                false,
            ),
            // Two proxies: the outer one received https, the inner one plain http from it.
            (
                "10.0.0.2",
                &[
                    ("x-forwarded-for", "198.51.100.1, 10.0.0.3"),
                    ("x-forwarded-proto", "https, http"),
                ],
                true,
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=198.51.100.1;proto=https")],
                true,
            ),
            ("10.0.0.2", &[("forwarded", "for=198.51.100.1")], false),
        ];
        for (peer, headers, https) in cases {
            assert_eq!(forwarding(peer, headers).https, https, "{peer} {headers:?}");
        }
    }

    #[tokio::test]
    async fn the_middleware_leaves_only_the_trusted_proxies_word_on_https() {
        use axum::extract::ConnectInfo;
        use tower::ServiceExt as _;
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|headers: HeaderMap| async move {
                    crate::headers::reached_over_https(&headers).to_string()
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                proxies(&["10.0.0.0/8"]),
                identify_client,
            ));
        for (peer, https) in [("10.0.0.2:4000", "true"), ("198.51.100.1:4000", "false")] {
            let mut request = axum::http::Request::get("/")
                .header("x-forwarded-proto", "https")
                .body(axum::body::Body::empty())
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
            let answer = app.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(answer.into_body(), 64).await.unwrap();
            assert_eq!(&body[..], https.as_bytes(), "from {peer}");
        }
    }

    #[test]
    fn the_forwarded_host_is_the_one_the_outermost_trusted_proxy_received() {
        // (X-Forwarded-For, X-Forwarded-Host, the host)
        let cases = [
            ("198.51.100.1", "shop.example", Some("shop.example")),
            // The client's own value stands left of the proxy's (the old code took it).
            (
                "198.51.100.1",
                "evil.example, shop.example",
                Some("shop.example"),
            ),
            (
                "198.51.100.1, 10.0.0.3",
                "shop.example, inner.internal",
                Some("shop.example"),
            ),
            // Only the outermost proxy set a host: it serves.
            (
                "198.51.100.1, 10.0.0.3",
                "shop.example",
                Some("shop.example"),
            ),
            ("", "shop.example", Some("shop.example")),
            ("198.51.100.1", "", None),
        ];
        for (forwarded_for, forwarded_host, host) in cases {
            let mut headers = vec![("x-forwarded-host", forwarded_host)];
            if !forwarded_for.is_empty() {
                headers.push(("x-forwarded-for", forwarded_for));
            }
            let seen = forwarding("10.0.0.2", &headers);
            assert_eq!(
                seen.host.as_deref(),
                host,
                "{forwarded_for:?} {forwarded_host:?}"
            );
        }
        // From an untrusted peer, or with the forwarded host off, there is none.
        assert_eq!(
            forwarding("203.0.113.9", &[("x-forwarded-host", "shop.example")]).host,
            None
        );
        let off = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()], false);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", HeaderValue::from_static("shop.example"));
        assert_eq!(off.forwarding(ip("10.0.0.2"), &headers).host, None);
    }

    #[test]
    fn bytes_that_are_not_text_do_not_hide_the_proxys_entry() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.1").unwrap(),
        );
        let seen = proxies(&["10.0.0.0/8"]).forwarding(ip("10.0.0.2"), &headers);
        assert_eq!(seen.client, ip("198.51.100.1"));
    }
}
