//! The LTI 1.1 Basic Outcomes envelopes: building `imsx_POXEnvelopeRequest` documents and reading
//! the `imsx_POXEnvelopeResponse` that comes back.

use quick_xml::escape::{escape, resolve_xml_entity};
use quick_xml::events::Event;
use quick_xml::Reader;

use super::OutcomeError;

/// The namespace of the LTI 1.1 outcomes messages.
pub const NAMESPACE: &str = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0";

/// Extra data sent with a score (Canvas shows it with the submission; other LMSs ignore it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultData {
    /// Free text.
    Text(String),
    /// A link to the learner's work.
    Url(String),
}

/// One outcomes operation on one result.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Sets the score (already checked to be within 0.0..=1.0), with optional result data.
    Replace {
        /// The score, 0.0 to 1.0.
        score: f64,
        /// Text or URL shown beside the score.
        data: Option<ResultData>,
    },
    /// Reads the score.
    Read,
    /// Deletes the score.
    Delete,
}

impl Operation {
    /// The operation's name as the envelope spells it (`replaceResult`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Replace { .. } => "replaceResult",
            Operation::Read => "readResult",
            Operation::Delete => "deleteResult",
        }
    }
}

/// Formats a score the way LMSs parse it: plain decimal with at least one decimal digit (`1.0`,
/// `0.0`, as LTI 1.1 writes the range and PyLTI sends them), never an exponent, and never `-0`
/// (an unsigned decimal is what LTI 1.1 asks for).
pub fn format_score(score: f64) -> String {
    // At most 12 decimals: LMSs keep fewer (Moodle 5), and the shortest exact form of a tiny
    // score runs to hundreds of digits. `-0.0 + 0.0` is `0.0`.
    let fixed = format!("{:.12}", score + 0.0);
    let trimmed = fixed.trim_end_matches('0');
    match trimmed {
        // A tiny negative score rounds to `-0.000000000000`.
        "-0." => "0.0".to_string(),
        t if t.ends_with('.') => format!("{t}0"),
        t => t.to_string(),
    }
}

/// The request envelope for `operation` on `sourcedid`, identified by `message_id`. Every value
/// is XML-escaped (Moodle's sourcedids are JSON, full of quotes).
pub fn request(message_id: &str, sourcedid: &str, operation: &Operation) -> String {
    let name = operation.name();
    let result = match operation {
        Operation::Replace { score, data } => {
            let data = match data {
                None => String::new(),
                Some(ResultData::Text(t)) => {
                    format!("<resultData><text>{}</text></resultData>", xml_text(t))
                }
                Some(ResultData::Url(u)) => {
                    format!("<resultData><url>{}</url></resultData>", xml_text(u))
                }
            };
            format!(
                "<result><resultScore><language>en</language><textString>{}</textString>\
                 </resultScore>{data}</result>",
                format_score(*score)
            )
        }
        Operation::Read | Operation::Delete => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <imsx_POXEnvelopeRequest xmlns=\"{NAMESPACE}\">\
         <imsx_POXHeader><imsx_POXRequestHeaderInfo><imsx_version>V1.0</imsx_version>\
         <imsx_messageIdentifier>{}</imsx_messageIdentifier></imsx_POXRequestHeaderInfo></imsx_POXHeader>\
         <imsx_POXBody><{name}Request><resultRecord><sourcedGUID><sourcedId>{}</sourcedId></sourcedGUID>\
         {result}</resultRecord></{name}Request></imsx_POXBody></imsx_POXEnvelopeRequest>",
        escape(message_id),
        escape(sourcedid)
    )
}

/// Whether XML 1.0 allows `c` in a document (most control characters, U+FFFE and U+FFFF are out,
/// and no escape can carry them).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// Free text escaped for XML, without the characters XML cannot carry: a stray one in a learner's
/// comment would make the whole request unreadable for the LMS. (A sourcedid with one is refused
/// before this, since changing an identifier would send the score elsewhere or nowhere.)
fn xml_text(s: &str) -> String {
    let kept: String = s.chars().filter(|&c| is_xml_char(c)).collect();
    escape(kept.as_str()).into_owned()
}

/// `imsx_codeMajor`: how the LMS says the operation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMajor {
    /// Done.
    Success,
    /// Accepted, will be done later (rare): not an error, but the score is not known yet.
    Processing,
    /// Refused.
    Failure,
    /// The LMS does not offer this operation.
    Unsupported,
}

/// What the response envelope said.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `imsx_codeMajor`.
    pub code_major: CodeMajor,
    /// `imsx_description`, empty when absent.
    pub description: String,
    /// `imsx_messageRefIdentifier`: the request's message id, when echoed.
    pub message_ref: Option<String>,
    /// `imsx_operationRefIdentifier`, when given.
    pub operation_ref: Option<String>,
    /// The score of a `readResult` response; `None` when the LMS has none (empty `textString`).
    pub score: Option<f64>,
    /// Whether the body held a `readResultResponse` at all.
    pub has_read_response: bool,
}

fn malformed(why: impl Into<String>) -> OutcomeError {
    OutcomeError::MalformedResponse(why.into())
}

/// Largest element depth we follow; real envelopes are about 6 deep.
const MAX_DEPTH: usize = 32;

/// Adds text to the innermost open element (text outside the root element is dropped).
fn push_text(texts: &mut [String], text: &str) {
    if let Some(open) = texts.last_mut() {
        open.push_str(text);
    }
}

/// Parses a response envelope. Elements are matched by local name, so any namespace prefix works;
/// a document that is not XML, not an `imsx_POXEnvelopeResponse`, or has no `imsx_codeMajor` is
/// malformed.
pub fn parse_response(body: &str) -> Result<Response, OutcomeError> {
    let mut reader = Reader::from_str(body);
    let mut path: Vec<String> = Vec::new();
    // The text of each open element, its children's included: markup inside a description
    // (`Grade <b>not</b> recorded`) must not cut the text before it.
    let mut texts: Vec<String> = Vec::new();
    let mut code_major = None;
    let mut description = String::new();
    let mut message_ref = None;
    let mut operation_ref = None;
    let mut score_text: Option<String> = None;
    let mut has_read_response = false;
    let mut saw_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(format!("not XML: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(malformed("nested too deeply"));
                }
                let name = e.local_name().as_ref().to_string();
                if path.is_empty() {
                    if saw_root || name != "imsx_POXEnvelopeResponse" {
                        return Err(malformed(format!("unexpected root element <{name}>")));
                    }
                    saw_root = true;
                }
                if name == "readResultResponse" {
                    has_read_response = true;
                }
                if matches!(event, Event::Start(_)) {
                    path.push(name);
                    texts.push(String::new());
                } else if name == "textString" && in_read_score(&path) {
                    score_text = Some(String::new());
                }
            }
            Event::Text(t) => push_text(&mut texts, &t.xml10_content()),
            Event::CData(t) => push_text(&mut texts, &t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| malformed(e.to_string()))? {
                    push_text(&mut texts, c.encode_utf8(&mut [0; 4]));
                } else {
                    let name = r.xml10_content();
                    let value = resolve_xml_entity(&name)
                        .ok_or_else(|| malformed(format!("unknown entity &{name};")))?;
                    push_text(&mut texts, value);
                }
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let text = texts.pop().unwrap_or_default();
                push_text(&mut texts, &text);
                let value = text.trim().to_string();
                match name.as_str() {
                    // Two statuses (`failure` then `success`) say nothing certain.
                    "imsx_codeMajor" if code_major.is_some() => {
                        return Err(malformed("more than one imsx_codeMajor"))
                    }
                    "imsx_codeMajor" => code_major = Some(value),
                    // Shown to users and logged: keep it to a paragraph.
                    "imsx_description" => description = value.chars().take(500).collect(),
                    "imsx_messageRefIdentifier" => message_ref = Some(value),
                    "imsx_operationRefIdentifier" => operation_ref = Some(value),
                    "textString" if in_read_score(&path) => score_text = Some(value),
                    _ => {}
                }
            }
            Event::Eof if path.is_empty() => break,
            Event::Eof => return Err(malformed("unclosed elements")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !saw_root {
        return Err(malformed("empty document"));
    }
    let code_major = code_major_of(code_major)?;
    let score = score_of(score_text.as_deref())?;
    Ok(Response {
        code_major,
        description,
        message_ref,
        operation_ref,
        score,
        has_read_response,
    })
}

/// The status an `imsx_codeMajor` names. The vocabulary is lower case; an LMS writing `Success`
/// means nothing else by it.
fn code_major_of(text: Option<String>) -> Result<CodeMajor, OutcomeError> {
    match text.map(|c| c.to_ascii_lowercase()).as_deref() {
        Some("success") => Ok(CodeMajor::Success),
        Some("processing") => Ok(CodeMajor::Processing),
        Some("failure") => Ok(CodeMajor::Failure),
        Some("unsupported") => Ok(CodeMajor::Unsupported),
        Some(other) => Err(malformed(format!(
            "unknown imsx_codeMajor {:?}",
            other.chars().take(40).collect::<String>()
        ))),
        None => Err(malformed("no imsx_codeMajor")),
    }
}

/// The score a read's `textString` holds: none when empty (no score yet).
fn score_of(text: Option<&str>) -> Result<Option<f64>, OutcomeError> {
    match text {
        None | Some("") => Ok(None),
        Some(s) => parse_score_text(s).map(Some).ok_or_else(|| {
            malformed(format!(
                "score {:?} is not a number from 0.0 to 1.0",
                s.chars().take(40).collect::<String>()
            ))
        }),
    }
}

/// True inside `readResultResponse/result/resultScore` (where the read score lives).
fn in_read_score(path: &[String]) -> bool {
    let n = path.len();
    n >= 3
        && path[n - 1] == "resultScore"
        && path[n - 2] == "result"
        && path[n - 3] == "readResultResponse"
}

/// A score as LMSs write it (`0.85`, `1`, `1.0E-1` from Java); only finite values in 0.0..=1.0.
fn parse_score_text(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <imsx_POXEnvelopeRequest xmlns=\"http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0\">\
        <imsx_POXHeader><imsx_POXRequestHeaderInfo><imsx_version>V1.0</imsx_version>\
        <imsx_messageIdentifier>m-1</imsx_messageIdentifier></imsx_POXRequestHeaderInfo></imsx_POXHeader>";

    #[test]
    fn replace_result_document() {
        let doc = request(
            "m-1",
            "3124567",
            &Operation::Replace {
                score: 0.92,
                data: None,
            },
        );
        let expected = format!(
            "{HEAD}<imsx_POXBody><replaceResultRequest><resultRecord><sourcedGUID>\
             <sourcedId>3124567</sourcedId></sourcedGUID><result><resultScore><language>en</language>\
             <textString>0.92</textString></resultScore></result></resultRecord></replaceResultRequest>\
             </imsx_POXBody></imsx_POXEnvelopeRequest>"
        );
        assert_eq!(doc, expected);
    }

    #[test]
    fn replace_result_with_text_and_url_data() {
        let text = request(
            "m-1",
            "s",
            &Operation::Replace {
                score: 1.0,
                data: Some(ResultData::Text("good <b>work</b> & more".into())),
            },
        );
        assert!(text.contains(
            "<textString>1.0</textString></resultScore><resultData><text>good &lt;b&gt;work&lt;/b&gt; \
             &amp; more</text></resultData></result>"
        ));
        let url = request(
            "m-1",
            "s",
            &Operation::Replace {
                score: 0.0,
                data: Some(ResultData::Url("https://x.test/a?b=1&c=2".into())),
            },
        );
        assert!(url.contains(
            "<textString>0.0</textString></resultScore><resultData><url>https://x.test/a?b=1&amp;c=2</url>\
             </resultData></result>"
        ));
    }

    #[test]
    fn characters_xml_cannot_carry_are_left_out() {
        let doc = request(
            "m-1",
            "s1",
            &Operation::Replace {
                score: 0.5,
                data: Some(ResultData::Text(
                    "ctl\u{1}\u{2}char\ttab\u{FFFE}é\u{1F600}".into(),
                )),
            },
        );
        assert!(doc.contains("<sourcedId>s1</sourcedId>"));
        assert!(doc.contains("<text>ctlchar\ttabé\u{1F600}</text>"));
        assert!(doc.chars().all(|c| c >= ' ' || c == '\n' || c == '\t'));
    }

    #[test]
    fn read_and_delete_documents() {
        for (op, name) in [
            (Operation::Read, "readResult"),
            (Operation::Delete, "deleteResult"),
        ] {
            let expected = format!(
                "{HEAD}<imsx_POXBody><{name}Request><resultRecord><sourcedGUID>\
                 <sourcedId>abc</sourcedId></sourcedGUID></resultRecord></{name}Request>\
                 </imsx_POXBody></imsx_POXEnvelopeRequest>"
            );
            assert_eq!(request("m-1", "abc", &op), expected);
        }
    }

    #[test]
    fn moodle_json_sourcedid_is_escaped_and_round_trips() {
        let sourcedid =
            r#"{"data":{"instanceid":"2","userid":"4","typeid":"1","launchid":1}<x>&'y'"}"#;
        let doc = request("m-1", sourcedid, &Operation::Read);
        let expected = format!(
            "{HEAD}<imsx_POXBody><readResultRequest><resultRecord><sourcedGUID><sourcedId>\
             {{&quot;data&quot;:{{&quot;instanceid&quot;:&quot;2&quot;,&quot;userid&quot;:&quot;4&quot;,\
             &quot;typeid&quot;:&quot;1&quot;,&quot;launchid&quot;:1}}&lt;x&gt;&amp;&apos;y&apos;&quot;}}\
             </sourcedId></sourcedGUID></resultRecord></readResultRequest></imsx_POXBody>\
             </imsx_POXEnvelopeRequest>"
        );
        assert_eq!(doc, expected);
        // An XML parser reads back exactly the sourcedid we were given.
        let mut reader = Reader::from_str(&doc);
        let mut inside = false;
        let mut got = String::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) if e.local_name().as_ref() == "sourcedId" => inside = true,
                Event::End(e) if e.local_name().as_ref() == "sourcedId" => inside = false,
                Event::Text(t) if inside => got.push_str(&t.xml10_content()),
                Event::GeneralRef(r) if inside => {
                    got.push_str(resolve_xml_entity(&r.xml10_content()).unwrap())
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(got, sourcedid);
    }

    fn envelope(code: &str, description: &str, body: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <imsx_POXEnvelopeResponse xmlns=\"{NAMESPACE}\"><imsx_POXHeader><imsx_POXResponseHeaderInfo>\
             <imsx_version>V1.0</imsx_version><imsx_messageIdentifier>4560</imsx_messageIdentifier>\
             <imsx_statusInfo><imsx_codeMajor>{code}</imsx_codeMajor><imsx_severity>status</imsx_severity>\
             <imsx_description>{description}</imsx_description>\
             <imsx_messageRefIdentifier>m-1</imsx_messageRefIdentifier>\
             <imsx_operationRefIdentifier>readResult</imsx_operationRefIdentifier></imsx_statusInfo>\
             </imsx_POXResponseHeaderInfo></imsx_POXHeader><imsx_POXBody>{body}</imsx_POXBody>\
             </imsx_POXEnvelopeResponse>"
        )
    }

    #[test]
    fn parses_a_read_response_with_its_score() {
        let r = parse_response(&envelope(
            "success",
            "Result read &amp; found",
            "<readResultResponse><result><resultScore><language>en</language>\
             <textString> 0.91 </textString></resultScore></result></readResultResponse>",
        ))
        .unwrap();
        assert_eq!(r.code_major, CodeMajor::Success);
        assert_eq!(r.description, "Result read & found");
        assert_eq!(r.message_ref.as_deref(), Some("m-1"));
        assert_eq!(r.operation_ref.as_deref(), Some("readResult"));
        assert_eq!(r.score, Some(0.91));
        assert!(r.has_read_response);
    }

    #[test]
    fn markup_inside_a_text_keeps_the_text_around_it() {
        let r = parse_response(&envelope(
            "failure",
            "Grade <b>not</b> recorded: <i>closed</i>",
            "<readResultResponse><result><resultScore><language>en</language>\
             <textString>0.<x/>5</textString></resultScore></result></readResultResponse>",
        ))
        .unwrap();
        assert_eq!(r.description, "Grade not recorded: closed");
        assert_eq!(r.score, Some(0.5));
    }

    #[test]
    fn an_empty_score_is_no_score() {
        for body in [
            "<readResultResponse><result><resultScore><language>en</language><textString/>\
             </resultScore></result></readResultResponse>",
            "<readResultResponse><result><resultScore><language>en</language><textString></textString>\
             </resultScore></result></readResultResponse>",
        ] {
            let r = parse_response(&envelope("success", "", body)).unwrap();
            assert_eq!(r.score, None);
            assert!(r.has_read_response);
        }
    }

    #[test]
    fn prefixed_namespaces_and_other_codes_parse() {
        let doc = format!(
            "<x:imsx_POXEnvelopeResponse xmlns:x=\"{NAMESPACE}\"><x:imsx_POXHeader>\
             <x:imsx_POXResponseHeaderInfo><x:imsx_statusInfo><x:imsx_codeMajor>unsupported</x:imsx_codeMajor>\
             <x:imsx_description>deleteResult is not supported</x:imsx_description></x:imsx_statusInfo>\
             </x:imsx_POXResponseHeaderInfo></x:imsx_POXHeader><x:imsx_POXBody/></x:imsx_POXEnvelopeResponse>"
        );
        let r = parse_response(&doc).unwrap();
        assert_eq!(r.code_major, CodeMajor::Unsupported);
        assert_eq!(r.description, "deleteResult is not supported");
        assert_eq!(
            parse_response(&envelope("failure", "no such sourcedid", ""))
                .unwrap()
                .code_major,
            CodeMajor::Failure
        );
        for (code, expected) in [
            ("Success", CodeMajor::Success),
            ("FAILURE", CodeMajor::Failure),
            ("Processing", CodeMajor::Processing),
        ] {
            let r = parse_response(&envelope(code, "", "")).unwrap();
            assert_eq!(r.code_major, expected, "{code}");
        }
    }

    #[test]
    fn malformed_responses_are_refused() {
        let bad = [
            "",
            "not xml at all",
            "<html><body>Login</body></html>",
            "<imsx_POXEnvelopeResponse><imsx_POXHeader></imsx_POXEnvelopeResponse>",
            "<imsx_POXEnvelopeResponse></imsx_POXEnvelopeResponse>",
            &envelope("great", "", ""),
            &envelope("failure", "", "").replace(
                "<imsx_severity>",
                "<imsx_codeMajor>success</imsx_codeMajor><imsx_severity>",
            ),
            &envelope("success", "&nosuch;", ""),
            &envelope(
                "success",
                "",
                "<readResultResponse><result><resultScore><textString>1.5</textString>\
                 </resultScore></result></readResultResponse>",
            ),
            &envelope(
                "success",
                "",
                "<readResultResponse><result><resultScore><textString>NaN</textString>\
                 </resultScore></result></readResultResponse>",
            ),
        ];
        for doc in bad {
            assert!(
                matches!(parse_response(doc), Err(OutcomeError::MalformedResponse(_))),
                "{doc}"
            );
        }
    }
}
