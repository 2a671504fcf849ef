//! The files under `/static/`, compiled into the binary: the stylesheet and the icon.
//!
//! Pages link them with their version (`/static/style.css?v=…`, from the templates' `asset_url`
//! function), and an address with the current version is cached for a year: a student's browser
//! fetches the stylesheet once, not on every page of the visit inside the LMS frame, and an
//! upgrade changes the address. Any other address (a fork's template, the icon the LMS fetches)
//! is revalidated on each use and answered 304 while the file is unchanged.

use std::sync::LazyLock;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{get, routes, Route};
use sha2::{Digest, Sha256};

/// A file compiled into the binary, and its version (a hash of its content).
pub struct Asset {
    path: &'static str,
    body: &'static str,
    content_type: ContentType,
    version: String,
}

impl Asset {
    fn new(path: &'static str, body: &'static str, content_type: ContentType) -> Asset {
        let hash = Sha256::digest(body.as_bytes());
        let version = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            path,
            body,
            content_type,
            version,
        }
    }

    /// Its address with its version, as pages link it.
    pub fn url(&self) -> String {
        format!("{}?v={}", self.path, self.version)
    }
}

static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "/static/style.css",
        include_str!("../../static/style.css"),
        ContentType::CSS,
    )
});

static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "/static/icon.svg",
        include_str!("../../static/icon.svg"),
        ContentType::SVG,
    )
});

/// The versioned address of the file at `path` (`/static/style.css`), for the templates; the
/// plain path for a file this module does not serve.
pub fn asset_url(path: &str) -> String {
    match [&*STYLESHEET, &*ICON].into_iter().find(|a| a.path == path) {
        Some(asset) => asset.url(),
        None => path.to_string(),
    }
}

/// An answer with a file: in full, or 304 when the browser's copy is this version.
struct Served {
    asset: &'static Asset,
    /// The address named the current version.
    versioned: bool,
}

impl<'r> Responder<'r, 'static> for Served {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let etag = format!("\"{}\"", self.asset.version);
        let cache = match self.versioned {
            true => "public, max-age=31536000, immutable",
            false => "no-cache",
        };
        // Weak or strong, listed or `*`: any match means the browser holds these bytes.
        let unchanged = req.headers().get("If-None-Match").any(|list| {
            list.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
        let mut response = Response::build();
        response
            .header(Header::new("ETag", etag))
            .header(Header::new("Cache-Control", cache));
        match unchanged {
            true => response.status(Status::NotModified),
            false => response
                .header(self.asset.content_type.clone())
                .sized_body(self.asset.body.len(), std::io::Cursor::new(self.asset.body)),
        };
        Ok(response.finalize())
    }
}

fn serve(asset: &'static Asset, v: Option<&str>) -> Served {
    Served {
        asset,
        versioned: v == Some(asset.version.as_str()),
    }
}

#[get("/static/style.css?<v>")]
fn stylesheet(v: Option<&str>) -> Served {
    serve(&STYLESHEET, v)
}

#[get("/static/icon.svg?<v>")]
fn icon(v: Option<&str>) -> Served {
    serve(&ICON, v)
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![stylesheet, icon]
}
