//! Decoding launch parameters from a form body, a query string and an `Authorization: OAuth` header.

use percent_encoding::percent_decode;

/// Name/value pairs in the order they arrived; repeated names and empty values are kept.
pub type Params = Vec<(String, String)>;

/// The first value of the parameter `name`, empty or not.
pub fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// More parameters than any real launch carries; a request over it is refused before any work.
pub const MAX_PARAMS: usize = 1000;

/// Why a parameter list could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A name or value is not UTF-8 once percent-decoded.
    #[error("a parameter is not valid UTF-8")]
    InvalidUtf8,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("too many parameters (more than {MAX_PARAMS})")]
    TooMany,
    /// The `Authorization: OAuth` header could not be parsed.
    #[error("the Authorization header is malformed")]
    MalformedHeader,
}

fn decode_component(raw: &[u8]) -> Result<String, ParamsError> {
    // Most names and values need no decoding at all: one copy.
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return String::from_utf8(raw.to_vec()).map_err(|_| ParamsError::InvalidUtf8);
    }
    // One pass: `+` is a space in form encoding (an encoded plus, `%2B`, stays `+`), and a `%`
    // not followed by two hex digits is kept as it is, as browsers and `percent_decode` do.
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(raw.get(i)), hex(raw.get(i + 1))) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| ParamsError::InvalidUtf8)
}

/// Decodes an `application/x-www-form-urlencoded` body or query string, strictly: invalid UTF-8 is
/// an error rather than replaced, so what we verify is exactly what was signed.
pub fn parse_form(raw: &[u8]) -> Result<Params, ParamsError> {
    let mut out = Params::new();
    for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PARAMS {
            return Err(ParamsError::TooMany);
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(out)
}

/// Reads the fields of an `Authorization: OAuth k="v", ...` header (RFC 5849 section 3.5.1):
/// every one but `realm`, which is not signed. RFC 5849 signs them all, as oauthlib does; LMSs
/// send only `oauth_*` there, but any other is signed, and then read, like a body field.
/// Returns `Ok(None)` for other schemes.
pub fn parse_authorization_header(header: &str) -> Result<Option<Params>, ParamsError> {
    let header = header.trim_start();
    let Some(scheme_end) = header.find(|c: char| c.is_ascii_whitespace()) else {
        return Ok(None);
    };
    if !header[..scheme_end].eq_ignore_ascii_case("OAuth") {
        return Ok(None);
    }
    let mut out = Params::new();
    for item in split_outside_quotes(&header[scheme_end..])? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, value) = item.split_once('=').ok_or(ParamsError::MalformedHeader)?;
        let name = name.trim();
        // `realm` is an RFC 2617 quoted string (commas and escaped quotes allowed), its name
        // case-insensitive; it is not signed, so its value is not even read.
        if name.eq_ignore_ascii_case("realm") {
            continue;
        }
        let value = value
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(ParamsError::MalformedHeader)?;
        let decode = |s: &str| {
            String::from_utf8(percent_decode(s.as_bytes()).collect())
                .map_err(|_| ParamsError::InvalidUtf8)
        };
        out.push((decode(name)?, decode(value)?));
        if out.len() > MAX_PARAMS {
            return Err(ParamsError::TooMany);
        }
    }
    Ok(Some(out))
}

/// Splits an auth-param list at the commas outside quoted strings, leaving out empty items; an
/// unterminated quote is malformed, and more items than a launch may have parameters (plus a
/// realm) are too many.
fn split_outside_quotes(list: &str) -> Result<Vec<&str>, ParamsError> {
    let (parts, unterminated) = split_unquoted(list, ',');
    if unterminated {
        return Err(ParamsError::MalformedHeader);
    }
    let items: Vec<&str> = parts
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .collect();
    match items.len() > MAX_PARAMS + 1 {
        true => Err(ParamsError::TooMany),
        false => Ok(items),
    }
}

/// `s` split at each `separator` outside a quoted string (`\"` escapes a quote inside one), as
/// HTTP header lists are (RFC 9110 section 5.6); also says whether a quote was left open.
pub fn split_unquoted(s: &str, separator: char) -> (Vec<&str>, bool) {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    (parts, quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_keeps_repeats_empties_and_plus() {
        let p = parse_form(b"a=1&a=2&b=&c&d=x+y%2Bz&&e=%C3%BC").unwrap();
        let want: Vec<(&str, &str)> = vec![
            ("a", "1"),
            ("a", "2"),
            ("b", ""),
            ("c", ""),
            ("d", "x y+z"),
            ("e", "ü"),
        ];
        let got: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got, want);
    }

    /// The decoding as `percent_decode` (an independent implementation) does it once `+` is a
    /// space.
    fn decoded_by_the_crate(raw: &[u8]) -> Result<String, ParamsError> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        String::from_utf8(percent_decode(&spaced).collect()).map_err(|_| ParamsError::InvalidUtf8)
    }

    #[test]
    fn broken_escapes_are_kept_as_they_are() {
        for raw in [
            "%", "%4", "%zz", "%%41", "a%2", "%2B+%20", "%c3%BC", "%C3", "100%", "%+1", "%0g",
        ] {
            assert_eq!(
                decode_component(raw.as_bytes()),
                decoded_by_the_crate(raw.as_bytes()),
                "{raw}"
            );
        }
        assert_eq!(decode_component(b"%%41%4").unwrap(), "%A%4");
    }

    proptest::proptest! {
        #[test]
        fn decoding_agrees_with_the_percent_encoding_crate(
            raw in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"%+2Bbcf09AF".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..24,
            )
        ) {
            proptest::prop_assert_eq!(decode_component(&raw), decoded_by_the_crate(&raw));
        }
    }

    #[test]
    fn form_refuses_invalid_utf8_and_floods() {
        assert_eq!(parse_form(b"a=%FF"), Err(ParamsError::InvalidUtf8));
        assert_eq!(parse_form(b"a=\xff"), Err(ParamsError::InvalidUtf8));
        let flood = "a=1&".repeat(MAX_PARAMS + 1);
        assert_eq!(parse_form(flood.as_bytes()), Err(ParamsError::TooMany));
    }

    #[test]
    fn authorization_header_drops_realm() {
        let h = r#"OAuth realm="x", oauth_consumer_key="k%20y", oauth_nonce="n""#;
        let p = parse_authorization_header(h).unwrap().unwrap();
        assert_eq!(
            p,
            vec![
                ("oauth_consumer_key".into(), "k y".into()),
                ("oauth_nonce".into(), "n".into())
            ]
        );
        assert_eq!(parse_authorization_header("Bearer abc").unwrap(), None);
        assert!(parse_authorization_header("OAuth oauth_nonce=n").is_err());
        // A realm is a quoted string: commas and escaped quotes inside it, any case of its name.
        for realm in [r#"realm="Photos, Inc.""#, r#"REALM="a\",b""#, r#"Realm="""#] {
            let h = format!(r#"OAuth {realm}, oauth_consumer_key="k%20y",oauth_nonce="n""#);
            assert_eq!(parse_authorization_header(&h).unwrap().unwrap(), p, "{h}");
        }
        assert!(parse_authorization_header(r#"OAuth realm="open, oauth_nonce="n""#).is_err());
        // Empty items are nothing; too many items are refused as they are split.
        let commas = format!("OAuth {}", ",".repeat(100_000));
        assert_eq!(
            parse_authorization_header(&commas).unwrap().unwrap(),
            vec![]
        );
        let flood = format!("OAuth {}", vec![r#"a="b""#; MAX_PARAMS + 2].join(","));
        assert_eq!(
            parse_authorization_header(&flood),
            Err(ParamsError::TooMany)
        );
    }
}
