//! The files under `/static/`, compiled into the binary: the stylesheet and the icon. A fork
//! serves its own the same way, from its module: an [`Asset`] and a route that answers [`Served`].
//!
//! Browsers may keep them for five minutes, then revalidate them with their `ETag` (a 304 while
//! the file is unchanged): a student's browser does not fetch the stylesheet again on every page
//! of a visit inside the LMS frame, and an upgrade reaches every browser within minutes, with the
//! pages' addresses unchanged (a fork's templates link them as they are).

use std::sync::LazyLock;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{get, routes, Route};
use sha2::{Digest, Sha256};

/// How long a browser may use its copy before asking again.
const FRESH_FOR: &str = "public, max-age=300";

/// A file compiled into the binary, and its entity tag (a hash of its content).
pub struct Asset {
    body: &'static str,
    content_type: ContentType,
    etag: String,
}

impl Asset {
    /// A file's content (`include_str!`) and its type; kept in a `static` `LazyLock`.
    pub fn new(body: &'static str, content_type: ContentType) -> Asset {
        let hash = Sha256::digest(body.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            body,
            content_type,
            etag: format!("\"{hex}\""),
        }
    }
}

static STYLESHEET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../../static/style.css"), ContentType::CSS));

static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../../static/icon.svg"), ContentType::SVG));

/// An answer with a file: in full, or 304 when the browser's copy is this one.
pub struct Served(pub &'static Asset);

impl<'r> Responder<'r, 'static> for Served {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let asset = self.0;
        // Weak or strong, listed or `*`: any match means the browser holds these bytes.
        let unchanged = req.headers().get("If-None-Match").any(|list| {
            list.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == asset.etag || tag == "*")
        });
        let mut response = Response::build();
        response
            .header(Header::new("ETag", asset.etag.clone()))
            .header(Header::new("Cache-Control", FRESH_FOR));
        match unchanged {
            true => response.status(Status::NotModified),
            false => response
                .header(asset.content_type.clone())
                .sized_body(asset.body.len(), std::io::Cursor::new(asset.body)),
        };
        Ok(response.finalize())
    }
}

#[get("/static/style.css")]
fn stylesheet() -> Served {
    Served(&STYLESHEET)
}

#[get("/static/icon.svg")]
fn icon() -> Served {
    Served(&ICON)
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![stylesheet, icon]
}
