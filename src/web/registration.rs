//! `GET /lti/config.xml`: the IMS Common Cartridge link an LMS imports to register the tool; also
//! `/favicon.ico`, sent on to the tool's icon (`/static/icon.svg`, served by `assets`).

use rocket::{get, routes, Route, State};
use rocket_dyn_templates::{context, Template};

use crate::error::LtiError;
use crate::web::origin::RequestOrigin;
use crate::web::pages::main_launch_page;
use crate::web::AppState;

/// The `cartridge_basiclti_link` for this tool, with absolute URLs from `public_url` or the
/// request's host.
#[get("/lti/config.xml")]
fn config_xml(state: &State<AppState>, origin: RequestOrigin) -> Result<Template, LtiError> {
    // Relative URLs are of no use to an LMS importing the file.
    let base = origin.required()?.to_url();
    // Canvas finds the tool for its other URLs (an assignment at /initial_staff) by this domain,
    // and requires the port to match when the URL names one: a port that is not the scheme's
    // default goes in too, as `base` writes it.
    let domain = base
        .split_once("://")
        .map(|(_, authority)| authority)
        .unwrap_or_default();
    // Values are escaped here and marked safe in the template: Tera's HTML escaping would also
    // turn every `/` into `&#x2F;`, which is valid XML but unreadable for the admin pasting it.
    Ok(Template::render(
        "lti/config",
        context! {
            title: xml_escape(&state.settings.tool_title),
            description: xml_escape(&state.settings.tool_description),
            launch_url: xml_escape(&format!("{base}{}", main_launch_page())),
            secure: base.starts_with("https://"),
            domain: xml_escape(domain),
            base: xml_escape(&base),
        },
    ))
}

/// Escapes the five XML special characters.
fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Where browsers look for an icon on their own (pages that are not HTML, like this XML, name none).
#[get("/favicon.ico")]
fn favicon() -> rocket::response::Redirect {
    rocket::response::Redirect::permanent("/static/icon.svg")
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![config_xml, favicon]
}
