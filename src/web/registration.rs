//! `GET /lti/config.xml`: the IMS Common Cartridge link an LMS imports to register the tool; also
//! the tool's icon (`/static/icon.svg`, `/favicon.ico`) that the link names.

use rocket::{get, routes, Route, State};
use rocket_dyn_templates::{context, Template};

use crate::error::LtiError;
use crate::lti::oauth::split_host_port;
use crate::web::origin::RequestOrigin;
use crate::web::pages::LAUNCH_PAGE;
use crate::web::AppState;

/// The `cartridge_basiclti_link` for this tool, with absolute URLs from `public_url` or the
/// request's host.
#[get("/lti/config.xml")]
fn config_xml(state: &State<AppState>, origin: RequestOrigin) -> Result<Template, LtiError> {
    // Relative URLs are of no use to an LMS importing the file.
    let base = origin.required()?.to_url();
    let authority = base
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let host = split_host_port(authority)
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    // Values are escaped here and marked safe in the template: Tera's HTML escaping would also
    // turn every `/` into `&#x2F;`, which is valid XML but unreadable for the admin pasting it.
    Ok(Template::render(
        "lti/config",
        context! {
            title: xml_escape(&state.settings.tool_title),
            description: xml_escape(&state.settings.tool_description),
            launch_url: xml_escape(&format!("{base}{LAUNCH_PAGE}")),
            secure: base.starts_with("https://"),
            host: xml_escape(&host),
            base: xml_escape(&base),
        },
    ))
}

/// Escapes the five XML special characters.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[get("/static/icon.svg")]
fn icon() -> (rocket::http::ContentType, &'static str) {
    (
        rocket::http::ContentType::SVG,
        include_str!("../../static/icon.svg"),
    )
}

/// Where browsers look for an icon on their own (pages that are not HTML, like this XML, name none).
#[get("/favicon.ico")]
fn favicon() -> rocket::response::Redirect {
    rocket::response::Redirect::permanent("/static/icon.svg")
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![config_xml, icon, favicon]
}
