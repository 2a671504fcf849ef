//! OAuth 1.0a HMAC-SHA1 signatures as LTI 1.1 uses them (RFC 5849 section 3.4).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The RFC 3986 unreserved characters `A-Z a-z 0-9 - . _ ~`, which OAuth leaves as they are, by
/// byte value.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes a string the OAuth way (RFC 5849 section 3.6): a space is `%20`, never `+`.
pub fn encode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    encode_into(&mut out, s.as_bytes());
    ascii_string(out)
}

/// Appends `bytes` percent-encoded the OAuth way (upper-case hex) to `out`, a run of unreserved
/// bytes at a time: this runs over every parameter of every launch, twice.
fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    loop {
        let run = rest
            .iter()
            .position(|&b| !UNRESERVED[usize::from(b)])
            .unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        let Some((&b, tail)) = rest[run..].split_first() else {
            return;
        };
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        rest = tail;
    }
}

/// The encoder's output as a `String`: it is ASCII by construction.
fn ascii_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Builds the base string URI (RFC 5849 section 3.4.1.2): scheme and host lower-cased, the default
/// port dropped, the path as sent, no query.
pub fn base_uri(scheme: &str, host: &str, port: Option<u16>, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let path = if path.is_empty() { "/" } else { path };
    match port {
        Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}{path}"),
        _ => format!("{scheme}://{host}{path}"),
    }
}

/// Splits an absolute URL (`scheme://host[:port]/path?query`) into its base string URI.
/// Returns `None` when the URL has no scheme (letters, digits, `+ - .`), no host, a host with
/// characters no host holds (a `:` outside an IPv6 literal's brackets, spaces, controls; an
/// internationalised name is kept as written), or a port that is not a number.
pub fn base_uri_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = match host.starts_with('[') {
        true => is_valid_host(host),
        false => {
            !host.is_empty()
                && !host
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || ":/?#[]@\\".contains(c))
        }
    };
    if !scheme_ok || !host_ok {
        return None;
    }
    Some(base_uri(scheme, host, port, path))
}

/// True for a host a URL can name: a name or an IPv4 address (letters, digits, dots, hyphens;
/// underscores as in docker service names), or a bracketed IPv6 address.
pub fn is_valid_host(host: &str) -> bool {
    if let Some(ipv6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return ipv6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // DNS names are at most 253 characters; anything longer is only a way to make logs and
    // refusal records as long as the request.
    let labels_ok = name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    // A name whose last label is a number (`256`, `0x7f`: browsers read those as IPv4 parts) can
    // only be an IPv4 address as written (`1.2.3.256` is not).
    let numeric = name.rsplit('.').next().is_some_and(|last| {
        last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    labels_ok && (!numeric || name.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Splits `host[:port]`, keeping IPv6 literals such as `[::1]:8000` whole.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let colon = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return Some((authority, None)),
    };
    let port = parse_port(&authority[colon + 1..])?;
    Some((&authority[..colon], Some(port)))
}

/// A port as URLs write it: digits only (`u16`'s parser would also take `+80`), and not 0.
pub fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|p| *p != 0)
}

/// Every name and value but `oauth_signature`'s, encoded one after the other into one buffer
/// (no allocation per parameter), and where each lies in it.
struct Encoded {
    bytes: Vec<u8>,
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl Encoded {
    fn of<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Encoded {
        let mut bytes = Vec::with_capacity(1024);
        let mut spans = Vec::with_capacity(32);
        for (name, value) in params {
            if name == "oauth_signature" {
                continue;
            }
            let start = bytes.len();
            encode_into(&mut bytes, name.as_bytes());
            let middle = bytes.len();
            encode_into(&mut bytes, value.as_bytes());
            spans.push((start..middle, middle..bytes.len()));
        }
        Encoded { bytes, spans }
    }

    /// The encoded pairs, sorted by name, then value.
    fn sorted(&self) -> Vec<(&[u8], &[u8])> {
        let mut pairs: Vec<(&[u8], &[u8])> = self
            .spans
            .iter()
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
            .collect();
        pairs.sort_unstable();
        pairs
    }
}

/// The signature base string (RFC 5849 section 3.4.1): `METHOD&enc(base_uri)&enc(params)`,
/// where the parameters are normalised (section 3.4.1.3.2): every name and value encoded, sorted
/// by name and value, joined with `&`; `oauth_signature` is left out, repeated names and empty
/// values are kept.
pub fn signature_base_string<'a, I>(method: &str, base_uri: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let encoded = Encoded::of(params);
    // Encoded once more: each `%` of the first encoding becomes `%25`, and the joining `=` and
    // `&` become `%3D` and `%26` (everything else in it is unreserved).
    let mut out = Vec::with_capacity(
        method.len() + 3 * base_uri.len() + 2 * encoded.bytes.len() + 6 * encoded.spans.len(),
    );
    out.extend(method.bytes().map(|b| b.to_ascii_uppercase()));
    out.push(b'&');
    encode_into(&mut out, base_uri.as_bytes());
    out.push(b'&');
    for (i, (name, value)) in encoded.sorted().into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"%26");
        }
        encode_into(&mut out, name);
        out.extend_from_slice(b"%3D");
        encode_into(&mut out, value);
    }
    ascii_string(out)
}

fn mac(base_string: &str, consumer_secret: &str) -> Option<Hmac<Sha1>> {
    // The token secret is always empty in LTI 1.1, so the key is `enc(secret)&`.
    let key = format!("{}&", encode(consumer_secret));
    // HMAC takes keys of any length, so this never fails; no panic on a request path regardless.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(base_string.as_bytes());
    Some(mac)
}

/// Signs a base string with HMAC-SHA1, returning the base64 signature.
pub fn sign(base_string: &str, consumer_secret: &str) -> String {
    mac(base_string, consumer_secret)
        .map(|mac| BASE64.encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Checks a base64 HMAC-SHA1 signature in constant time.
pub fn verify(base_string: &str, consumer_secret: &str, signature: &str) -> bool {
    // As received (RFC 5849 section 3.2): no whitespace trimmed, which no signer adds.
    match BASE64.decode(signature) {
        Ok(given) => {
            mac(base_string, consumer_secret).is_some_and(|mac| mac.verify_slice(&given).is_ok())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in [
            "tool.example.edu",
            "127.0.0.1",
            "lti_tool",
            "[::1]",
            "[2001:db8::1]",
            "tool.example.edu.",
            "localhost",
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "[::1",
            "x]]><x/>",
            "tool.example.edu/x",
            "a@b",
            "[not:v6]",
            "é.edu",
            ".",
            "..",
            "a..b",
            "999.999.999.999",
            "1.2.3.256",
            "1.2.3.4.5",
            "0x7f",
            "example.0x1",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        // Every label may be valid, the name still not: DNS stops at 253 characters.
        let longest = format!("{}example", "a.".repeat(123));
        assert!(longest.len() == 253 && is_valid_host(&longest));
        assert!(!is_valid_host(&format!("a.{longest}")));
        for bad in [
            "tool.test:+80",
            "tool.test:",
            "tool.test:65536",
            "tool.test:8o",
            "tool.test:0",
        ] {
            assert!(split_host_port(bad).is_none(), "{bad}");
        }
        // `X-Forwarded-Port` is read by the same rule.
        assert_eq!(parse_port("443"), Some(443));
        for bad in ["+443", "0", "", " 443", "65536", "4a"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_unreserved_only() {
        assert_eq!(encode("a b+c~d-e.f_g"), "a%20b%2Bc~d-e.f_g");
        assert_eq!(encode("ü&="), "%C3%BC%26%3D");
    }

    proptest::proptest! {
        /// Against the `percent-encoding` crate (an independent implementation) with the
        /// RFC 3986 unreserved set, and the base string against its encode-sort-join-encode
        /// definition.
        #[test]
        fn encoding_agrees_with_the_percent_encoding_crate(
            params in proptest::collection::vec(("\\PC{0,6}", "[ -~ü%+&=]{0,6}"), 0..6)
        ) {
            use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
            const RESERVED: &AsciiSet =
                &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
            let by_crate = |s: &str| utf8_percent_encode(s, RESERVED).to_string();
            for (name, value) in &params {
                proptest::prop_assert_eq!(encode(name), by_crate(name));
                proptest::prop_assert_eq!(encode(value), by_crate(value));
            }
            let mut pairs: Vec<(String, String)> =
                params.iter().map(|(n, v)| (by_crate(n), by_crate(v))).collect();
            pairs.sort();
            let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let want = format!("POST&{}&{}", by_crate("http://h/a b"), by_crate(&joined.join("&")));
            let borrowed = params.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            proptest::prop_assert_eq!(signature_base_string("post", "http://h/a b", borrowed), want);
        }
    }

    #[test]
    fn base_uri_drops_default_ports_and_lowercases() {
        assert_eq!(
            base_uri("HTTP", "LocalHost", Some(80), "/any"),
            "http://localhost/any"
        );
        assert_eq!(base_uri("https", "h", Some(443), "/a"), "https://h/a");
        assert_eq!(base_uri("https", "h", Some(8443), "/a"), "https://h:8443/a");
        assert_eq!(base_uri("http", "h", None, ""), "http://h/");
        assert_eq!(
            base_uri_of_url("HTTP://LocalHost:8000/any?x=1").as_deref(),
            Some("http://localhost:8000/any")
        );
        assert_eq!(
            base_uri_of_url("http://[::1]:8000/a").as_deref(),
            Some("http://[::1]:8000/a")
        );
        assert_eq!(base_uri_of_url("nohost"), None);
        // Found by fuzzing (bb115): a host no URL can hold, or a scheme with a `?`, is none.
        assert_eq!(base_uri_of_url("http://h:::80/"), None);
        assert_eq!(base_uri_of_url("x?://h/"), None);
        assert_eq!(base_uri_of_url("://h/"), None);
        assert_eq!(
            base_uri_of_url("https://L\u{e9}.example/o").as_deref(),
            Some("https://l\u{e9}.example/o")
        );
    }

    #[test]
    fn sorts_after_encoding() {
        // `a b` encodes to `a%20b`, which sorts before `a+`'s `a%2B` and after `a!`'s `a%21`.
        let params = [("a+", "1"), ("a b", "2"), ("a!", "3")];
        assert_eq!(
            signature_base_string("POST", "http://h/", params),
            "POST&http%3A%2F%2Fh%2F&a%2520b%3D2%26a%2521%3D3%26a%252B%3D1"
        );
    }

    #[test]
    fn verify_refuses_garbage_signatures() {
        let base = signature_base_string("POST", "http://h/", [("a", "b")]);
        let good = sign(&base, "s");
        assert!(verify(&base, "s", &good));
        assert!(!verify(&base, "s2", &good));
        assert!(!verify(&base, "s", "not base64!"));
        assert!(!verify(&base, "s", ""));
        // Whitespace around it is not the value signed.
        assert!(!verify(&base, "s", &format!(" {good}")));
        assert!(!verify(&base, "s", &format!("{good}\n")));
    }
}
