//! Sending outcomes requests: OAuth 1.0a HMAC-SHA1 signing with a body hash, one shared HTTP
//! client, timeouts, bounded retries of what is safe to retry, and reading the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::xml::{self, CodeMajor, Operation, Response, ResultData};
use super::{check_score, OutcomeError, OutcomeTarget};
use crate::lti::oauth::{base_uri_of_url, encode, sign, signature_base_string};
use crate::lti::params::parse_form;

/// Timeouts and retries of the outcomes client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for one whole request, connection included.
    pub timeout: Duration,
    /// Longest wait for the connection alone.
    pub connect_timeout: Duration,
    /// How many times a request is tried at most (connection errors and 5xx only are retried).
    pub attempts: u32,
    /// The pause before the first retry; it doubles on each further retry.
    pub backoff: Duration,
    /// Largest response body read; a bigger one is malformed.
    pub max_response_bytes: usize,
    /// Certificate authorities trusted besides the public web's and the system's (an LMS whose
    /// certificate comes from a campus CA).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Whether a grade service may be on this machine or its link (see [`is_local`]). Off, a
    /// consumer cannot make the tool post to services only the tool's host can reach.
    pub allow_local: bool,
}

impl ClientConfig {
    /// The longest one operation can take: every attempt timing out, with the pauses between.
    pub fn longest_operation(&self) -> Duration {
        let attempts = self.attempts.max(1);
        let pauses = (1..attempts).map(|n| self.backoff * 2u32.saturating_pow(n - 1));
        self.timeout * attempts + pauses.sum::<Duration>()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(250),
            max_response_bytes: 64 * 1024,
            extra_roots: Vec::new(),
            allow_local: false,
        }
    }
}

/// The consumer key and secret that sign the request (those of the consumer that launched).
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// `oauth_consumer_key`.
    pub key: &'a str,
    /// The shared secret.
    pub secret: &'a str,
}

/// The outcomes client: one per process, since it holds the HTTP connection pool.
#[derive(Debug, Clone)]
pub struct OutcomesClient {
    http: reqwest::Client,
    config: ClientConfig,
}

/// `base64(SHA-1(body))`, the `oauth_body_hash` of the OAuth Request Body Hash extension.
pub fn body_hash(body: &[u8]) -> String {
    BASE64.encode(Sha1::digest(body))
}

/// The `Authorization: OAuth ...` header for POSTing `body` to `url`. The URL's query parameters
/// are signed along with the protocol fields (RFC 5849 section 3.4.1.3).
pub fn authorization_header(
    credentials: Credentials<'_>,
    url: &str,
    body: &[u8],
    nonce: &str,
    timestamp: i64,
) -> Result<String, OutcomeError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(OutcomeError::BadServiceUrl("not an http(s) URL".into()));
    }
    // A user name or password in the URL would go out as a second `Authorization` header.
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .unwrap_or("");
    if authority.contains('@') {
        return Err(OutcomeError::BadServiceUrl(
            "it carries a user name or password".into(),
        ));
    }
    let base_uri = base_uri_of_url(url)
        .ok_or_else(|| OutcomeError::BadServiceUrl("no host, or a bad port".into()))?;
    let without_fragment = url.split('#').next().unwrap_or(url);
    let query = match without_fragment.split_once('?') {
        Some((_, q)) => parse_form(q.as_bytes())
            .map_err(|e| OutcomeError::BadServiceUrl(format!("query string: {e}")))?,
        None => Vec::new(),
    };
    let timestamp = timestamp.to_string();
    let hash = body_hash(body);
    let oauth = [
        ("oauth_body_hash", hash.as_str()),
        ("oauth_consumer_key", credentials.key),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", timestamp.as_str()),
        ("oauth_version", "1.0"),
    ];
    let base = signature_base_string(
        "POST",
        &base_uri,
        query
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(oauth.iter().copied()),
    );
    let signature = sign(&base, credentials.secret);
    let mut header = String::from("OAuth ");
    for (name, value) in oauth
        .iter()
        .copied()
        .chain([("oauth_signature", signature.as_str())])
    {
        if !header.ends_with(' ') {
            header.push_str(", ");
        }
        header.push_str(&format!("{name}=\"{}\"", encode(value)));
    }
    Ok(header)
}

/// What one attempt ended with.
enum Attempt {
    Done(Result<Response, OutcomeError>),
    Retry(OutcomeError),
}

impl OutcomesClient {
    /// Builds the client (once, at start-up). Redirects are not followed: the signature is bound
    /// to the URL, and a redirected POST would lose its body.
    pub fn new(config: ClientConfig) -> Result<OutcomesClient, OutcomeError> {
        let mut builder = reqwest::Client::builder();
        for root in &config.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if !config.allow_local {
            // Through a proxy, the proxy would resolve the names this check is about.
            builder = builder
                .dns_resolver(std::sync::Arc::new(NoLocalAddresses))
                .no_proxy();
        }
        let http = builder
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // `Authorization`, not `authorization`: names are case-insensitive, but some LMS
            // servers (IIS-hosted ones) have failed on lower case, as PyLTI notes.
            .http1_title_case_headers()
            .user_agent(concat!("rocket-lti-tool/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                OutcomeError::Network(format!("cannot build the HTTP client: {}", causes(e)))
            })?;
        Ok(OutcomesClient { http, config })
    }

    /// Its timeouts and retries.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `replaceResult`: sets the score (0.0 to 1.0; anything else is refused before sending).
    pub async fn replace_result(
        &self,
        credentials: Credentials<'_>,
        target: &OutcomeTarget,
        score: f64,
        data: Option<ResultData>,
    ) -> Result<Response, OutcomeError> {
        let score = check_score(score)?;
        self.send(credentials, target, &Operation::Replace { score, data })
            .await
    }

    /// `readResult`: the current score (`response.score`, `None` when the LMS has none).
    pub async fn read_result(
        &self,
        credentials: Credentials<'_>,
        target: &OutcomeTarget,
    ) -> Result<Response, OutcomeError> {
        let response = self.send(credentials, target, &Operation::Read).await?;
        // `processing` without a result: the LMS will know later, so the score is unknown.
        if !response.has_read_response && response.code_major != CodeMajor::Processing {
            return Err(OutcomeError::MalformedResponse(
                "success without a readResultResponse".into(),
            ));
        }
        Ok(response)
    }

    /// `deleteResult`: removes the score.
    pub async fn delete_result(
        &self,
        credentials: Credentials<'_>,
        target: &OutcomeTarget,
    ) -> Result<Response, OutcomeError> {
        self.send(credentials, target, &Operation::Delete).await
    }

    /// Sends one operation, retrying connection errors and 5xx answers with a doubling pause.
    /// Each attempt is signed afresh (new nonce and timestamp): LMSs refuse a reused nonce.
    pub async fn send(
        &self,
        credentials: Credentials<'_>,
        target: &OutcomeTarget,
        operation: &Operation,
    ) -> Result<Response, OutcomeError> {
        target.check_sendable()?;
        let message_id = uuid::Uuid::new_v4().simple().to_string();
        let body = xml::request(&message_id, &target.sourcedid, operation);
        let mut pause = self.config.backoff;
        let attempts = self.config.attempts.max(1);
        // An attempt the LMS answered with a 5xx may have been recorded: if a later one then fails
        // in a way that says nothing reached the LMS (no connection, a redirect, a 4xx) or that
        // the LMS refused it (a failure in words, which an LMS that dedupes by message sends to
        // a retry of what it recorded), that is not the whole story, and the 5xx is reported.
        let mut answered: Option<OutcomeError> = None;
        // (A read changes nothing: its refusal is only its own.)
        let write = !matches!(operation, Operation::Read);
        let unsure = |answered: &Option<OutcomeError>, error: OutcomeError| match answered {
            Some(earlier) if error.nothing_recorded() || (write && error.is_refusal()) => {
                log::warn!(
                    "{}: {}, after an attempt answered with {earlier} that may have been recorded",
                    operation.name(),
                    // The LMS's words: escaped, so they cannot forge log lines.
                    error.to_string().escape_debug()
                );
                earlier.clone()
            }
            _ => error,
        };
        for attempt in 1..=attempts {
            match self.attempt(credentials, &target.service_url, &body).await {
                Attempt::Done(result) => {
                    return self
                        .outcome(operation, &message_id, result)
                        .map_err(|e| unsure(&answered, e));
                }
                Attempt::Retry(error) if attempt == attempts => {
                    log::warn!(
                        "{}: giving up after {attempt} attempts: {error}",
                        operation.name()
                    );
                    return Err(unsure(&answered, error));
                }
                Attempt::Retry(error) => {
                    if matches!(error, OutcomeError::HttpStatus(_)) {
                        answered.get_or_insert_with(|| error.clone());
                    }
                    log::info!(
                        "{}: attempt {attempt} failed ({error}); retrying in {pause:?}",
                        operation.name()
                    );
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        Err(OutcomeError::Network("no attempt made".into()))
    }

    fn outcome(
        &self,
        operation: &Operation,
        message_id: &str,
        result: Result<Response, OutcomeError>,
    ) -> Result<Response, OutcomeError> {
        let response = result?;
        // A success is taken only as the answer to this request: one that names another message
        // or another operation (a proxy's cache, a mixed-up LMS) says nothing about this one.
        // LMSs that leave the fields out are taken at their word, and so is a refusal whatever
        // it names (Moodle's early refusals name `unknownRequest` and no message).
        let done = matches!(
            response.code_major,
            CodeMajor::Success | CodeMajor::Processing
        );
        // The values go into the log line, so that an LMS that echoes something else shows.
        let shown = |r: &str| r.chars().take(60).collect::<String>();
        if let Some(r) = echoed(&response.message_ref).filter(|&r| done && r != message_id) {
            return Err(OutcomeError::MalformedResponse(format!(
                "the answer names another request (imsx_messageRefIdentifier {:?})",
                shown(r)
            )));
        }
        let name = operation.name();
        // Canvas echoes `replaceResult`, Moodle and Sakai `replaceResultRequest`; some may echo
        // the answer's own element, `replaceResultResponse`.
        let names_this = |r: &str| {
            r == name
                || r.strip_suffix("Request") == Some(name)
                || r.strip_suffix("Response") == Some(name)
        };
        if let Some(r) = echoed(&response.operation_ref).filter(|&r| done && !names_this(r)) {
            return Err(OutcomeError::MalformedResponse(format!(
                "the answer is about another operation (imsx_operationRefIdentifier {:?})",
                shown(r)
            )));
        }
        let description = response.description.clone();
        match response.code_major {
            CodeMajor::Success | CodeMajor::Processing => Ok(response),
            CodeMajor::Failure => Err(OutcomeError::Failure {
                operation: operation.name(),
                description,
            }),
            CodeMajor::Unsupported => Err(OutcomeError::Unsupported {
                operation: operation.name(),
                description,
            }),
        }
    }

    async fn attempt(&self, credentials: Credentials<'_>, url: &str, body: &str) -> Attempt {
        // Signed as it will be sent: the HTTP client normalises the address (dot segments,
        // spaces, case), and the LMS checks the signature against the request it receives.
        let url = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Attempt::Done(Err(OutcomeError::BadServiceUrl(e.to_string()))),
        };
        // A host name is checked as it resolves (`NoLocalAddresses`), an address here.
        let literal = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if let Some(ip) = literal.filter(|ip| !self.config.allow_local && is_local(*ip)) {
            return Attempt::Done(Err(OutcomeError::BadServiceUrl(local_refusal(ip))));
        }
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let header = match authorization_header(
            credentials,
            url.as_str(),
            body.as_bytes(),
            &nonce,
            chrono::Utc::now().timestamp(),
        ) {
            Ok(h) => h,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, header)
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return unsent(e),
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = self
            .read_body(response)
            .await
            .and_then(|bytes| decode_body(&bytes, content_type.as_deref()));
        answered(status, text)
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, OutcomeError> {
        let limit = self.config.max_response_bytes;
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > limit {
                        return Err(OutcomeError::MalformedResponse(format!(
                            "response over {limit} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(OutcomeError::Timeout),
                Err(e) => return Err(network(e)),
            }
        }
        Ok(bytes)
    }
}

/// An answer's text: in the encoding its byte order mark, else its `Content-Type` charset, else
/// its XML declaration names (some LMSs answer in ISO-8859-1), else UTF-8, as XML reads it.
fn decode_body(bytes: &[u8], content_type: Option<&str>) -> Result<String, OutcomeError> {
    let (encoding, bytes) = match encoding_rs::Encoding::for_bom(bytes) {
        Some((encoding, bom)) => (encoding, &bytes[bom..]),
        None => {
            let label = content_type
                .and_then(charset_in_content_type)
                .or_else(|| encoding_in_xml_declaration(bytes));
            let encoding = match label {
                None => encoding_rs::UTF_8,
                Some(label) => encoding_rs::Encoding::for_label(label.trim().as_bytes())
                    .ok_or_else(|| {
                        OutcomeError::MalformedResponse(format!(
                            "response in an unknown encoding {label:?}"
                        ))
                    })?,
            };
            (encoding, bytes)
        }
    };
    let text = encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| {
            OutcomeError::MalformedResponse(format!("response is not valid {}", encoding.name()))
        })?;
    Ok(text.into_owned())
}

/// The `charset` parameter of a `Content-Type` value.
fn charset_in_content_type(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The `encoding` of a leading `<?xml ... ?>` declaration.
fn encoding_in_xml_declaration(bytes: &[u8]) -> Option<&str> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let head = bytes.strip_prefix(b"<?xml")?;
    let end = head.windows(2).take(200).position(|w| w == b"?>")?;
    let declaration = std::str::from_utf8(&head[..end]).ok()?;
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    after[1..].split(quote).next()
}

/// A field the LMS echoed, unless it left it out or empty.
fn echoed(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// A network error, without the URL (it may carry tokens in its query).
fn network(e: reqwest::Error) -> OutcomeError {
    OutcomeError::Network(causes(e))
}

/// Loopback, link-local (where clouds serve instance metadata), unspecified, multicast and
/// broadcast addresses, the metadata services that sit elsewhere, and IPv6 addresses that carry
/// one of those IPv4 addresses (mapped, compatible, NAT64, 6to4): no LMS a tool serves lives
/// there, but services of the tool's own host do. Private networks (10/8, 192.168/16, fc00::/7)
/// are not local: campus LMSs live there.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                // Alibaba Cloud's instance metadata.
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let low32 = Ipv4Addr::from(u128::from(v6) as u32);
            let embedded = match s {
                // IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96).
                [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
                // NAT64's well-known prefix (64:ff9b::/96).
                [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
                // 6to4 (2002::/16): the IPv4 address follows the prefix.
                [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
                _ => None,
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
                // NAT64 for local use (64:ff9b:1::/48) may map to anything.
                || s[..3] == [0x64, 0xff9b, 1]
                // AWS's instance metadata over IPv6.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || embedded.is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

/// How a refused local address starts its message (found again in the connection error).
const LOCAL_REFUSAL: &str = "the grade service address is local";

fn local_refusal(ip: IpAddr) -> String {
    format!(
        "{LOCAL_REFUSAL} ({ip}): set outcomes_allow_local = true if the LMS runs on this machine"
    )
}

/// Resolves host names as the system does, without the local addresses ([`is_local`]); a name
/// with nothing else is an error. Checked at connection time, so a name cannot pass a check and
/// then resolve elsewhere.
struct NoLocalAddresses;

impl reqwest::dns::Resolve for NoLocalAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> =
                all.iter().copied().filter(|a| !is_local(a.ip())).collect();
            match (usable.is_empty(), all.first()) {
                (true, Some(first)) => Err(local_refusal(first.ip()).into()),
                _ => Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The error and its causes in one line, without the URL ("…: invalid peer certificate:
/// UnknownIssuer"): reqwest's own message only says the request failed.
fn causes(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// What a request that got no answer comes to: a retry when nothing was sent and a retry may
/// connect, else the error as it stays.
fn unsent(e: reqwest::Error) -> Attempt {
    match e {
        // Nothing was sent (a connection that timed out included). A certificate we do not
        // trust stays untrusted on a retry.
        e if e.is_connect() => {
            let why = causes(e);
            if let Some(at) = why.find(LOCAL_REFUSAL) {
                return Attempt::Done(Err(OutcomeError::BadServiceUrl(why[at..].to_string())));
            }
            // rustls's words for an answer that is no TLS record (plain http, say): that
            // stays so on a retry too.
            if why.contains("InvalidContentType") || why.contains("corrupt message") {
                return Attempt::Done(Err(OutcomeError::NotTls(why)));
            }
            match why.contains("certificate") {
                true => Attempt::Done(Err(OutcomeError::Certificate(why))),
                false => Attempt::Retry(OutcomeError::Unconnected(why)),
            }
        }
        e if e.is_timeout() => Attempt::Done(Err(OutcomeError::Timeout)),
        e if e.is_builder() => Attempt::Done(Err(OutcomeError::BadServiceUrl(
            e.without_url().to_string(),
        ))),
        e => Attempt::Done(Err(network(e))),
    }
}

/// What an answer comes to: the LMS's envelope, a retry for a server error without one, or the
/// error the status and body make.
fn answered(status: reqwest::StatusCode, text: Result<String, OutcomeError>) -> Attempt {
    if status.is_server_error() {
        // Retried, unless the LMS said in an envelope that it refused the request: then
        // a retry would be refused again, and its reason is worth more than the status.
        return match text.as_deref().map(xml::parse_response) {
            Ok(Ok(r)) if r.code_major != CodeMajor::Success => Attempt::Done(Ok(r)),
            _ => Attempt::Retry(OutcomeError::HttpStatus(status.as_u16())),
        };
    }
    let text = match text {
        Ok(t) => t,
        Err(e) => return Attempt::Done(Err(e)),
    };
    let parsed = xml::parse_response(&text);
    Attempt::Done(match parsed {
        Ok(r) if status.is_success() => Ok(r),
        // A refusal with 401 (Unauthorized): the LMS's words, and the hint the status gives.
        // A 403 is a refusal like any other (a closed course, a policy).
        Ok(r) if r.code_major == CodeMajor::Failure && status.as_u16() == 401 => {
            Err(OutcomeError::SignatureRefused {
                status: 401,
                description: r.description,
            })
        }
        // A refusal with an envelope explains itself better than its status does.
        Ok(r) if r.code_major != CodeMajor::Success => Ok(r),
        Err(e) if status.is_success() => Err(e),
        _ => Err(OutcomeError::HttpStatus(status.as_u16())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_operation_is_every_attempt_timing_out_with_the_pauses_between() {
        let defaults = ClientConfig::default();
        assert_eq!(defaults.longest_operation(), Duration::from_millis(30_750));
        let once = ClientConfig {
            attempts: 1,
            ..ClientConfig::default()
        };
        assert_eq!(once.longest_operation(), Duration::from_secs(10));
    }

    #[test]
    fn local_addresses_are_this_machine_and_its_link_not_private_networks() {
        let local = [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "100.100.100.200",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:5",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "fd00:ec2::254",
        ];
        for ip in local {
            assert!(is_local(ip.parse().unwrap()), "{ip}");
        }
        let remote = [
            "10.0.0.5",
            "192.168.1.10",
            "172.16.0.1",
            "8.8.8.8",
            "100.64.0.1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.5",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in remote {
            assert!(!is_local(ip.parse().unwrap()), "{ip}");
        }
    }

    const CREDS: Credentials<'static> = Credentials {
        key: "key",
        secret: "secret",
    };

    #[test]
    fn answers_are_decoded_by_their_declared_charset() {
        let latin1 = b"<?xml version='1.0' encoding='ISO-8859-1'?><d>Note enregistr\xe9e</d>";
        // By the XML declaration, by the header (which wins), and UTF-8 by default (BOM dropped).
        assert!(decode_body(latin1, None)
            .unwrap()
            .ends_with("enregistr\u{e9}e</d>"));
        let header = Some("application/xml; Charset=\"latin1\"");
        assert_eq!(
            decode_body(b"<d>\xe9</d>", header).unwrap(),
            "<d>\u{e9}</d>"
        );
        // A byte order mark wins over a charset that says otherwise.
        let marked = "\u{feff}<d>\u{e9}</d>";
        assert_eq!(
            decode_body(marked.as_bytes(), header).unwrap(),
            &marked[3..]
        );
        let utf8 = "\u{feff}<?xml version=\"1.0\"?><d>\u{e9}</d>";
        assert_eq!(
            decode_body(utf8.as_bytes(), Some("text/xml")).unwrap(),
            &utf8[3..]
        );
        // Bytes that are not what the answer says, and unknown charsets, are malformed answers.
        for (bytes, content_type) in [
            (&b"<d>\xe9</d>"[..], None),
            (&b"<d>\xe9</d>"[..], Some("text/xml; charset=utf-8")),
            (&b"<d/>"[..], Some("text/xml; charset=klingon")),
        ] {
            let err = decode_body(bytes, content_type).unwrap_err();
            assert!(matches!(err, OutcomeError::MalformedResponse(_)), "{err:?}");
        }
        // A charset label as long as the LMS likes is quoted cut, in the log and on pages.
        let label = format!("text/xml; charset={}", "c".repeat(60_000));
        let err = decode_body(b"<d/>", Some(label.as_str())).unwrap_err();
        assert!(
            err.to_string().chars().count() < 400,
            "{}",
            err.to_string().len()
        );
    }

    #[test]
    fn body_hash_is_base64_sha1() {
        // SHA-1("") and SHA-1("abc") from FIPS 180 test vectors.
        assert_eq!(body_hash(b""), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
        assert_eq!(body_hash(b"abc"), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    }

    #[test]
    fn header_carries_every_protocol_field_encoded() {
        let h = authorization_header(
            CREDS,
            "https://lms.test/o?a=1",
            b"<x/>",
            "n1",
            1_700_000_000,
        )
        .unwrap();
        assert!(h.starts_with("OAuth oauth_body_hash=\""), "{h}");
        for field in [
            "oauth_consumer_key=\"key\"",
            "oauth_nonce=\"n1\"",
            "oauth_signature_method=\"HMAC-SHA1\"",
            "oauth_timestamp=\"1700000000\"",
            "oauth_version=\"1.0\"",
            "oauth_signature=\"",
        ] {
            assert!(h.contains(field), "{field} in {h}");
        }
        // base64's `+`, `/` and `=` are percent-encoded inside the header.
        let sig = h.split("oauth_signature=\"").nth(1).unwrap();
        assert!(!sig.trim_end_matches('"').contains(['+', '/', '=']), "{h}");
    }

    #[test]
    fn unusable_urls_are_refused_before_sending() {
        for url in [
            "ftp://lms.test/o",
            "lms.test/o",
            "http://",
            "http://h:port/o",
            "http://user:pass@lms.test/o",
            "https://token@lms.test:8443/o?x=1",
        ] {
            assert!(
                matches!(
                    authorization_header(CREDS, url, b"", "n", 1),
                    Err(OutcomeError::BadServiceUrl(_))
                ),
                "{url}"
            );
        }
    }
}
