//! Where a request came from and how it reached us: the scheme, host and port the LMS used (the
//! part of the signed URL that a TLS-terminating proxy changes: from `public_url`, else from a
//! trusted proxy's forwarded headers, else from the request itself), the client's address,
//! whether another site started the request, and whether cookies are `Secure`.

use std::net::IpAddr;

use rocket::request::{self, FromRequest, Request};

use crate::config::Settings;
use crate::error::LtiError;
use crate::lti::oauth::{base_uri, base_uri_of_url, is_valid_host, parse_port, split_host_port};
use crate::lti::params::split_unquoted;
use crate::web::error::remember;
use crate::web::AppState;

pub use crate::config::Origin;

/// The last value of a header that may be repeated and hold a comma-separated list, trimmed:
/// the one the nearest proxy (the trusted one) set or appended after anything the client sent.
fn last_value<'a>(req: &'a Request<'_>, name: &str) -> Option<&'a str> {
    let line = req.headers().get(name).last()?;
    line.rsplit(',').map(str::trim).find(|v| !v.is_empty())
}

/// What forwarded headers claim, believed or not, as the nearest proxy wrote them (the last
/// values): `X-Forwarded-Proto`, `-Host` and `-Port`, or, when the request has none of those,
/// RFC 7239's `Forwarded` (its last element's `proto` and `host`). One family only: a tool that
/// mixed them could take one from the client while the proxy sets the other.
fn forwarded_claim(req: &Request<'_>) -> (Option<String>, Option<String>, Option<u16>) {
    let proto = last_value(req, "X-Forwarded-Proto").map(str::to_string);
    let host = last_value(req, "X-Forwarded-Host").map(str::to_string);
    let port = last_value(req, "X-Forwarded-Port").and_then(parse_port);
    if proto.is_some() || host.is_some() || port.is_some() {
        return (proto, host, port);
    }
    match last_forwarded_element(req) {
        Some(element) => (
            forwarded_pair(element, "proto"),
            forwarded_pair(element, "host"),
            None,
        ),
        None => (None, None, None),
    }
}

/// The last element of the last `Forwarded` line (the one the nearest proxy added), split at
/// commas outside quoted strings: a proxy quotes the client's `Host` it copies into `host=`, and
/// a comma in it must not start an element of the client's making.
fn last_forwarded_element<'a>(req: &'a Request<'_>) -> Option<&'a str> {
    let line = req.headers().get("Forwarded").last()?;
    split_unquoted(line, ',')
        .0
        .into_iter()
        .rev()
        .map(str::trim)
        .find(|element| !element.is_empty())
}

/// One parameter of a `Forwarded` element (`for=192.0.2.60;proto=https;host="a.example"`), its
/// quotes and escapes removed; names are case-insensitive, and semicolons inside a quoted value
/// are part of it (RFC 7239 section 4).
fn forwarded_pair(element: &str, name: &str) -> Option<String> {
    split_unquoted(element, ';').0.into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) => unescape(quoted),
            None => value.to_string(),
        };
        (key.trim().eq_ignore_ascii_case(name) && !value.is_empty()).then_some(value)
    })
}

/// A quoted string's content with its `\x` escapes resolved.
fn unescape(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => chars.next().unwrap_or('\\'),
            c => c,
        });
    }
    out
}

/// True when another site's page started this request (a link, image or form there), as browsers
/// say in `Sec-Fetch-Site`, or (older browsers) in an `Origin` or `Referer` that is not ours. A typed address,
/// our own pages and clients that send neither header (not a browser that can be tricked) are not.
/// The browser's own `Sec-Fetch-Site` is preferred: our idea of our origin can be wrong behind a
/// proxy that is not configured (`public_url`, `trusted_proxies`).
pub fn started_by_another_site(req: &Request<'_>) -> bool {
    if let Some(site) = req.headers().get_one("Sec-Fetch-Site") {
        let site = site.trim();
        return site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site");
    }
    // Older browsers: `Origin` on forms; on links and images only the page's address (`Referer`).
    let (origin, referer) = (
        req.headers().get_one("Origin"),
        req.headers().get_one("Referer"),
    );
    let Some(origin) = origin.or_else(|| referer.and_then(origin_of_url)) else {
        return false;
    };
    // Sandboxed frames and some cross-site redirects send an opaque origin: not ours.
    if origin.trim() == "null" {
        return true;
    }
    let Some(theirs) = base_uri_of_url(origin) else {
        return true;
    };
    let (own, asked_for) = own_origins(req, origin);
    own.is_some_and(|own| own != theirs) && asked_for.is_none_or(|asked| asked != theirs)
}

/// This tool's origin as `origin` (an `Origin` header, a `Referer`'s start) would be written, in
/// base-URI form (lower case, default port dropped): the origin the LMS signs for, and the
/// address the browser asked for (`Host`, with `origin`'s scheme), which still matches when a TLS
/// proxy in front is not configured and the scheme differs. With `public_url` set, its host under
/// another scheme is not the tool (a page served there over plain http is someone else's);
/// another address the tool is reached at (an internal one) still is.
fn own_origins(req: &Request<'_>, origin: &str) -> (Option<String>, Option<String>) {
    let settings = req
        .rocket()
        .state::<AppState>()
        .map(|state| &state.settings);
    let own = settings
        .and_then(|settings| signed_origin(req, settings).ok())
        .map(|o| base_uri(&o.scheme, &o.host, o.port, "/"));
    let asked_for = single_host(req).and_then(|host| {
        let scheme = origin.split_once("://")?.0;
        base_uri_of_url(&format!("{scheme}://{}", host.trim()))
    });
    let public = settings.is_some_and(|settings| settings.public_url.is_some());
    let authority = |uri: &str| uri.split_once("://").map(|(_, rest)| rest.to_string());
    let asked_for =
        asked_for.filter(|asked| !public || own.as_deref().and_then(authority) != authority(asked));
    (own, asked_for)
}

/// True when the request's `Origin` header names this tool's own origin. Browsers set it, and a
/// page of another site cannot make it say ours.
fn origin_is_ours(req: &Request<'_>) -> bool {
    let Some(origin) = req.headers().get_one("Origin").map(str::trim) else {
        return false;
    };
    let Some(theirs) = base_uri_of_url(origin) else {
        return false;
    };
    let (own, asked_for) = own_origins(req, origin);
    own.is_some_and(|own| own == theirs) || asked_for.is_some_and(|asked| asked == theirs)
}

/// False for a request a browser made for a page's part (an image, a script, a `fetch`), as
/// `Sec-Fetch-Mode` says; an LMS launch is always a navigation (a form into a window or frame;
/// Chrome 76-79 said `nested-navigate` for a frame). Clients that do not say (older browsers,
/// LMS test tools) count as navigations.
pub fn is_navigation(req: &Request<'_>) -> bool {
    req.headers()
        .get_one("Sec-Fetch-Mode")
        .map(str::trim)
        .is_none_or(|mode| {
            mode.eq_ignore_ascii_case("navigate") || mode.eq_ignore_ascii_case("nested-navigate")
        })
}

/// `scheme://authority` of a URL (a `Referer`), without its path, query or fragment.
fn origin_of_url(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(&url[..scheme.len() + 3 + authority.len()])
}

/// Request guard: whether another site's page started the request (`started_by_another_site`).
pub struct StartedElsewhere(pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for StartedElsewhere {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        request::Outcome::Success(StartedElsewhere(started_by_another_site(req)))
    }
}

/// The `Host` header when it was sent exactly once and is not blank. Two make the request invalid
/// (RFC 9112 section 3.2): which one a proxy or the LMS meant cannot be told.
fn single_host<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let mut hosts = req.headers().get("Host");
    let host = hosts.next()?.trim();
    (hosts.next().is_none() && !host.is_empty()).then_some(host)
}

/// Works out the origin the LMS signed for this request.
pub fn signed_origin(req: &Request<'_>, settings: &Settings) -> Result<Origin, LtiError> {
    if let Some(public) = &settings.public_url {
        return Ok(public.clone());
    }
    let host_header = single_host(req);
    let mut scheme = "http".to_string();
    let mut authority = host_header.map(str::to_string);
    let mut port_override = None;
    // Which header to blame for a host no URL could hold.
    let mut unusable = LtiError::MissingHost;
    if peer_ip(req).is_some_and(|peer| settings.trusted_proxies.contains(&peer)) {
        let (proto, host, port) = forwarded_claim(req);
        if let Some(p) = proto {
            scheme = p.to_ascii_lowercase();
        }
        if let Some(h) = host {
            authority = Some(h);
            unusable = LtiError::BadForwardedHost;
        }
        port_override = port;
    }
    if scheme != "http" && scheme != "https" {
        scheme = "http".to_string();
    }
    let authority = authority.ok_or(LtiError::MissingHost)?;
    // Anyone can send any `Host`: one that no URL could hold is no origin (nor shown in links).
    let (host, port) = split_host_port(&authority)
        .filter(|(host, _)| is_valid_host(host))
        .ok_or(unusable)?;
    Ok(Origin {
        scheme,
        // As `public_url` is: host names are not case-sensitive, and links look alike then.
        host: host.to_ascii_lowercase(),
        port: port_override.or(port),
    })
}

/// The peer's address, canonical: an IPv4 client of a dual-stack (`::`) listener arrives as
/// `::ffff:a.b.c.d`, which is compared, logged and throttled as `a.b.c.d`.
fn peer_ip(req: &Request<'_>) -> Option<IpAddr> {
    req.remote().map(|addr| addr.ip().to_canonical())
}

/// The client's address: the peer's, or when the peer is a trusted proxy, the address that proxy
/// saw: the last entry of `X-Forwarded-For` (of its last line: proxies append theirs after any
/// the client sent). Headers from anyone else are ignored; a trusted proxy must set or append
/// `X-Forwarded-For` (see the README), or it passes on the client's own claim. RFC 7239's
/// `Forwarded: for=` is not read: the tool cannot tell which family the proxy sets, and a proxy
/// that sets only `Forwarded` passes on a client's own `X-Forwarded-For`, so reading either by
/// what the request holds would let the client choose.
pub fn client_address(req: &Request<'_>, settings: &Settings) -> String {
    let Some(peer) = peer_ip(req) else {
        return "unknown".to_string();
    };
    if !settings.trusted_proxies.contains(&peer) {
        return peer.to_string();
    }
    last_value(req, "X-Forwarded-For")
        .and_then(parse_node)
        .map(|ip| ip.to_canonical())
        .unwrap_or(peer)
        .to_string()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:5555`, `2001:db8::1` or
/// `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(with_port) = node.parse::<std::net::SocketAddr>() {
        return Some(with_port.ip());
    }
    node.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// The origin that forwarded headers claim, believed or not: only used to explain a refused
/// launch (see `web::diagnosis`), never to accept one.
pub fn untrusted_forwarded_origin(req: &Request<'_>) -> Option<Origin> {
    let (proto, host, forwarded_port) = forwarded_claim(req);
    let host = host?;
    let (host, port) = split_host_port(&host)?;
    // Shown to the admin and logged as what a proxy may have said: only a host a URL can name.
    if !is_valid_host(host) {
        return None;
    }
    let port = forwarded_port.or(port);
    let scheme = match proto {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(Origin {
        scheme: scheme.to_string(),
        host: host.to_string(),
        port,
    })
}

/// Request guard: the request comes from one of this tool's own pages, as the real "Open in a
/// new window" and test launcher forms do. Another site posting a hand-off token (its own, to
/// log the victim in as someone else) or making the test launcher sign a launch is refused; browsers say where a form came from in `Sec-Fetch-Site` and
/// `Origin`, and a client that sends neither is not a browser that can be tricked.
pub struct FromOwnPage;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for FromOwnPage {
    type Error = LtiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        // Not even a typed address ("none"): the real form is on one of our pages. But WebKit
        // (Safari) says `cross-site` for every form posted into a new window (`target=_blank`,
        // the "Open in a new window" button), even from the tool's own top-level page; its
        // `Origin` still names the page the form was on.
        let own_page = match req.headers().get_one("Sec-Fetch-Site") {
            Some(site) => site.trim().eq_ignore_ascii_case("same-origin") || origin_is_ours(req),
            None => !started_by_another_site(req),
        };
        if !own_page {
            let e = LtiError::CrossSiteForm;
            return request::Outcome::Error((remember(req, &e), e));
        }
        request::Outcome::Success(FromOwnPage)
    }
}

/// Request guard: the origin the LMS reaches this request at (see [`signed_origin`]), or why it
/// cannot be told (no usable Host header, or forwarded host).
pub struct RequestOrigin(Result<Origin, LtiError>);

impl RequestOrigin {
    /// `scheme://host[:port]`, or an empty string when unknown (links then stay relative).
    pub fn url(&self) -> String {
        self.0.as_ref().map(Origin::to_url).unwrap_or_default()
    }

    /// The origin, for a page that cannot do without it.
    pub fn required(self) -> Result<Origin, LtiError> {
        self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestOrigin {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let origin = match req.rocket().state::<AppState>() {
            Some(state) => signed_origin(req, &state.settings),
            None => Err(LtiError::Storage("no state".into())),
        };
        request::Outcome::Success(RequestOrigin(origin))
    }
}

/// Whether the session cookie gets `Secure`: when `cookie_secure` is on, and also whenever the
/// request reached us over https (as the LMS signed it, or through a trusted proxy), since
/// browsers drop a `SameSite=None` cookie without it.
#[derive(Debug, Clone, Copy)]
pub struct SecureCookies(pub bool);

impl SecureCookies {
    /// Works it out for `req`.
    pub fn of(req: &Request<'_>, settings: &Settings) -> Self {
        SecureCookies(
            settings.cookie_secure
                || signed_origin(req, settings).is_ok_and(|o| o.scheme == "https"),
        )
    }

    /// Works it out for `req` with the app's settings (`Secure` when there are none).
    pub fn of_request(req: &Request<'_>) -> Self {
        match req.rocket().state::<AppState>() {
            Some(state) => SecureCookies::of(req, &state.settings),
            None => SecureCookies(true),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SecureCookies {
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        request::Outcome::Success(SecureCookies::of_request(req))
    }
}
