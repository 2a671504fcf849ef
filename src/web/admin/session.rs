//! Admin login and its session: the `Admin` guard (cookie, idle expiry, CSRF token), login with
//! Argon2id and a per-address throttle, logout, and the 401 catcher that shows the login page.

use std::time::Duration;

use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::Redirect;
use rocket::{catch, post, Responder, State};
use rocket_dyn_templates::context;
use subtle::ConstantTimeEq;

use super::login_queue::{Checking, QueuePlace, Refused, MAX_WAIT_FOR_CHECKS};
use super::{render, Page};
use crate::crypto;
use crate::error::LtiError;
use crate::store;
use crate::store::admin::{self, Attempt};
use crate::web::error::remember;
use crate::web::origin::{client_address, SecureCookies, StartedElsewhere};
use crate::web::session_cookie::cookies_named;
use crate::web::AppState;

/// Name of the admin session cookie (distinct from the LTI session's) over plain http.
pub const ADMIN_COOKIE: &str = "lti_admin";
/// Its name when it is `Secure`: browsers take a `__Secure-` cookie only with `Secure` from an
/// https page, so no plain-http page (nor a network attacker's) can plant or overwrite it. Not
/// `__Host-`, which requires `Path=/`: admin cookies go only to `/admin`.
pub const SECURE_ADMIN_COOKIE: &str = "__Secure-lti_admin";
/// Most admin cookies of one name a request is looked up by: a sibling subdomain served over https
/// can still set one for the whole domain, which must not hide the admin's own.
const MAX_ADMIN_COOKIES: usize = 4;

/// Failed logins allowed per address per minute; the next attempt gets 429.
pub const MAX_FAILURES_PER_MINUTE: i64 = 5;

/// Admin password checks running at once (see `login`).
static PASSWORD_CHECKS: rocket::tokio::sync::Semaphore =
    rocket::tokio::sync::Semaphore::const_new(1);
/// Request guard: a live admin session (its idle expiry is pushed back on each use). Without
/// one it fails with 401, which the `/admin` catcher answers with the login page.
pub struct Admin(admin::AdminSession);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = LtiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let fail = |e: LtiError| request::Outcome::Error((remember(req, &e), e));
        let Some(state) = req.rocket().state::<AppState>() else {
            return fail(LtiError::Storage("no state".into()));
        };
        let secure = SecureCookies::of(req, &state.settings);
        let tokens = cookie_values(req, ADMIN_COOKIE, secure);
        if tokens.is_empty() {
            return fail(LtiError::AdminLoginRequired);
        }
        let idle = state.settings.admin_idle_timeout;
        // The first that names a live session: another one, set for the whole domain by a
        // sibling site, does not lock the admin out.
        for token in &tokens {
            match admin::touch_session(&state.db, token, store::now(), idle).await {
                Ok(Some(session)) => return request::Outcome::Success(Admin(session)),
                Ok(None) => {}
                Err(e) => return fail(e),
            }
        }
        req.cookies().remove(admin_cookie(String::new(), secure));
        fail(LtiError::AdminLoginRequired)
    }
}

impl Admin {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.0.csrf
    }

    /// Refuses (403) a form whose token is not this session's; compared in constant time.
    pub fn check_csrf(&self, token: Option<&str>) -> Result<(), LtiError> {
        let expected = self.0.csrf.as_bytes();
        match token {
            Some(t) if bool::from(t.as_bytes().ct_eq(expected)) => Ok(()),
            _ => Err(LtiError::BadCsrfToken),
        }
    }
}

/// Request guard: the client's address for login throttling (the proxy's client when the
/// peer is a trusted proxy; never a header from anyone else).
pub struct ClientAddress(pub String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddress {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let address = match req.rocket().state::<AppState>() {
            Some(state) => client_address(req, &state.settings),
            None => req
                .remote()
                .map_or("unknown".into(), |p| p.ip().to_canonical().to_string()),
        };
        request::Outcome::Success(ClientAddress(address))
    }
}

/// What the login throttle counts failures by: the address, except that an IPv6 client counts by
/// its /64 (one host usually holds a whole /64, and could otherwise rotate through it), and an
/// IPv6 address that carries an IPv4 one (mapped, compatible, or NAT64's `64:ff9b::/96`) counts as
/// that IPv4 client, so the clients behind one gateway are not one bucket.
fn throttle_bucket(address: &str) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let v6 = match address.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(v6)) => v6,
        Ok(v4) => return v4.to_string(),
        Err(_) => return address.to_string(),
    };
    let s = v6.segments();
    if v6.is_loopback() || v6.is_unspecified() {
        return v6.to_string();
    }
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])).to_string();
    }
    format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
}

/// Marks a browser that logged in with the current admin password: its logins skip the cap on
/// queued password checks (a flood of guesses cannot keep it out). Worth nothing else; a new
/// password makes every one of them stale.
pub const DEVICE_COOKIE: &str = "lti_admin_device";
/// Its name when it is `Secure` (see [`SECURE_ADMIN_COOKIE`]).
pub const SECURE_DEVICE_COOKIE: &str = "__Secure-lti_admin_device";

/// The `__Secure-` name of an admin cookie when the request is `Secure`, else the plain one.
fn cookie_name(plain: &'static str, secure: SecureCookies) -> &'static str {
    match (secure.0, plain) {
        (false, _) => plain,
        (true, ADMIN_COOKIE) => SECURE_ADMIN_COOKIE,
        (true, _) => SECURE_DEVICE_COOKIE,
    }
}

/// Where admin cookies go: only to the admin pages.
const ADMIN_PATH: &str = "/admin";

/// Request guard: whether the request carried an admin session cookie, live or not (an ended
/// session's is answered with the login page that says so).
pub(super) struct AdminCookieSent(pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AdminCookieSent {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let sent = req.rocket().state::<AppState>().is_some_and(|state| {
            !cookie_values(req, ADMIN_COOKIE, SecureCookies::of(req, &state.settings)).is_empty()
        });
        request::Outcome::Success(AdminCookieSent(sent))
    }
}

/// The admin cookies `plain` names (and its `__Secure-` form) as the browser sent them, by exact
/// name, as the session cookie is read (`web::session_cookie::session_ids_of`): the `__Secure-`
/// ones always count, first; the plain ones only on a request that is not `Secure`.
fn cookie_values(req: &Request<'_>, plain: &'static str, secure: SecureCookies) -> Vec<String> {
    let prefixed = cookie_name(plain, SecureCookies(true));
    let mut values = cookies_named(req, prefixed, MAX_ADMIN_COOKIES);
    if !secure.0 {
        values.extend(cookies_named(req, plain, MAX_ADMIN_COOKIES));
    }
    values.truncate(MAX_ADMIN_COOKIES);
    values
}

/// What a device cookie's signature covers: its id and the current password hash (whose salt
/// changes with each new password), never sent anywhere.
fn device_binding(password_hash: &str, id: &str) -> String {
    format!("admin device v1 {id} {password_hash}")
}

/// The id of a browser's device mark (`ID.SIGNATURE`), if it is valid for the current password.
fn known_device(state: &AppState, password_hash: &str, mark: &str) -> Option<String> {
    let (id, signature) = mark.split_once('.')?;
    let valid = !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && state
            .admin_devices
            .verify(&device_binding(password_hash, id), signature);
    valid.then(|| id.to_string())
}

/// The browser's device mark as it sent it ([`cookie_values`]), if any.
struct DeviceMark(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for DeviceMark {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        // The `__Secure-` one first; the plain name counts even over https (where a sibling
        // subdomain could set it): a mark is worth something only with a valid signature bound
        // to the current password, and marks set under the plain name keep working.
        let mark = cookie_values(req, DEVICE_COOKIE, SecureCookies(false))
            .into_iter()
            .next();
        request::Outcome::Success(DeviceMark(mark))
    }
}

/// The device cookie: like the admin cookie, but kept for a year.
fn device_cookie(value: String, secure: SecureCookies) -> Cookie<'static> {
    Cookie::build((cookie_name(DEVICE_COOKIE, secure), value))
        .path(ADMIN_PATH)
        .http_only(true)
        .same_site(rocket::http::SameSite::Strict)
        .secure(secure.0)
        .max_age(rocket::time::Duration::days(365))
        .build()
}

/// The admin cookie: HttpOnly, SameSite=Strict, Secure as configured or whenever the request
/// came over https (as the session cookie), and then `__Secure-lti_admin`, else `lti_admin`;
/// sent only to `/admin`.
fn admin_cookie(value: String, secure: SecureCookies) -> Cookie<'static> {
    Cookie::build((cookie_name(ADMIN_COOKIE, secure), value))
        .path(ADMIN_PATH)
        .http_only(true)
        .same_site(rocket::http::SameSite::Strict)
        .secure(secure.0)
        .build()
}

/// The login page, or the set-up explanation when no admin password exists yet.
pub(super) fn login_page(status: Status, has_password: bool, error: Option<&str>) -> Page {
    login_page_saying(status, has_password, error, None)
}

/// The login page with a `notice` that is no error of the user's (why they are asked again).
fn login_page_saying(
    status: Status,
    has_password: bool,
    error: Option<&str>,
    notice: Option<&str>,
) -> Page {
    if has_password {
        render(status, "admin/login", context! { error, notice })
    } else {
        render(status, "admin/setup", context! {})
    }
}

/// Whether an admin password has been set (else the admin page offers its setup).
pub(super) async fn has_password(state: &AppState) -> Result<bool, LtiError> {
    Ok(admin::password_hash(&state.db).await?.is_some())
}

/// What an admin action answers.
#[derive(Responder)]
pub enum Reply {
    /// A page.
    Page(Page),
    /// Back to the list (after a change), or to the login page.
    Redirect(Redirect),
}

#[derive(FromForm)]
struct LoginForm {
    password: Option<String>,
}

/// Checks the password (Argon2id, off the async threads); throttled per address. A login form
/// posted from another site's page is refused (login CSRF): there is no session yet whose token
/// the form could carry, so the browser's `Sec-Fetch-Site` and `Origin` decide.
#[post("/login", data = "<form>")]
async fn login(
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
    address: ClientAddress,
    elsewhere: StartedElsewhere,
    secure: SecureCookies,
    mark: DeviceMark,
    form: Form<LoginForm>,
) -> Result<Reply, LtiError> {
    if elsewhere.0 {
        log::warn!("admin login refused: posted from another site");
        return Err(LtiError::CrossSiteForm);
    }
    let address = address.0;
    let Some(hash) = admin::password_hash(&state.db).await? else {
        return Ok(Reply::Page(login_page(Status::Ok, false, None)));
    };
    // A browser that logged in before with this password skips the cap: a flood of guesses
    // cannot keep its admin out. Before anything is written: a busy refusal costs nothing.
    let device = mark
        .0
        .as_deref()
        .and_then(|m| known_device(state, &hash, m));
    // A marked browser counts on its own: guesses from its address (a shared NAT) do not lock it
    // out, and a stolen mark still allows only a few guesses a minute.
    let bucket = match &device {
        Some(id) => format!("device {id}"),
        None => throttle_bucket(&address),
    };
    let (attempt, now, _checking, _place) =
        counted_attempt(state, &bucket, device.is_some(), &address).await?;
    let password = form.into_inner().password.unwrap_or_default();
    let binding = hash.clone();
    // One check at a time, whoever asks: Argon2id is slow on purpose, and guesses from many
    // addresses (each under its own throttle) must not take the cores that launches need.
    // The permit goes with the check, so it is held until the check ends even if the client
    // leaves first.
    let ok = match PASSWORD_CHECKS.acquire().await {
        Ok(permit) => rocket::tokio::task::spawn_blocking(move || {
            let _one_at_a_time = permit;
            crypto::verify_password(&password, &hash)
        })
        .await
        .unwrap_or(false),
        Err(_) => false,
    };
    if !ok {
        log::warn!("admin login failed from {address}");
        return Ok(Reply::Page(login_page(
            Status::Unauthorized,
            true,
            Some("That password is not right."),
        )));
    }
    admin::forget_attempt(&state.db, attempt).await?;
    let token = admin::start_session(&state.db, now, state.settings.admin_idle_timeout).await?;
    cookies.add(admin_cookie(token, secure));
    // A mark of its own for each browser (kept if it has one): its failures count on their own.
    let id = device.unwrap_or_else(crate::store::sessions::new_id);
    let mark = format!(
        "{id}.{}",
        state.admin_devices.token(&device_binding(&binding, &id))
    );
    cookies.add(device_cookie(mark, secure));
    log::warn!("admin logged in from {address}");
    Ok(Reply::Redirect(Redirect::to("/admin")))
}

/// Counts a login attempt as failed before its password check (the row `forget_attempt` clears
/// on success), under the bucket's throttle, so parallel guesses cannot outrun it: returns the
/// attempt's row, the time, and the places it holds while its check runs. An attempt that finds
/// the limit taken up by checks still running waits for their outcome, holding no place in the
/// queue and writing nothing: right passwords sent at once are not failures.
async fn counted_attempt(
    state: &AppState,
    bucket: &str,
    known_device: bool,
    address: &str,
) -> Result<(i64, i64, Checking, QueuePlace), LtiError> {
    let queue = &state.login_queue;
    let waited_since = std::time::Instant::now();
    loop {
        let now = store::now();
        if queue.is_over_limit(bucket, now) {
            queue.log_refusal(Refused::Throttled, now);
            return Err(LtiError::TooManyLogins);
        }
        if waited_since.elapsed() >= MAX_WAIT_FOR_CHECKS {
            queue.log_refusal(Refused::Waited, now);
            return Err(LtiError::LoginsBusy);
        }
        // No more of a bucket's attempts in their check than it may fail: the next wait here.
        let Some(checking) = queue.checking(bucket, MAX_FAILURES_PER_MINUTE) else {
            rocket::tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Some(place) = queue.take(known_device) else {
            queue.log_refusal(Refused::Busy, now);
            return Err(LtiError::LoginsBusy);
        };
        // A check that was running when the rows were counted is either running after the count
        // or has ended since `ended_before`: neither is taken for a decided failure.
        let (_, ended_before) = checking.others();
        match admin::begin_attempt(&state.db, bucket, now, MAX_FAILURES_PER_MINUTE).await? {
            Attempt::Counted(id) => return Ok((id, now, checking, place)),
            Attempt::OverLimit(counted) => {
                let (running_after, ended_after) = checking.others();
                let ran = u64::try_from(running_after)
                    .unwrap_or(u64::MAX)
                    .saturating_add(ended_after.saturating_sub(ended_before));
                let decided = counted - i64::try_from(ran).unwrap_or(i64::MAX);
                if decided >= MAX_FAILURES_PER_MINUTE {
                    if queue.remember_over_limit(bucket, now) {
                        log::warn!(
                            "admin login: {address} ({bucket}) is over \
                             {MAX_FAILURES_PER_MINUTE} failures a minute; refused for a minute"
                        );
                    }
                    queue.log_refusal(Refused::Throttled, now);
                    return Err(LtiError::TooManyLogins);
                }
            }
        }
        drop((checking, place));
        rocket::tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(FromForm)]
struct CsrfForm {
    csrf: Option<String>,
}

/// Ends the admin session.
#[post("/logout", data = "<form>")]
async fn logout(
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
    session: Admin,
    secure: SecureCookies,
    address: ClientAddress,
    form: Form<CsrfForm>,
) -> Result<Redirect, LtiError> {
    session.check_csrf(form.csrf.as_deref())?;
    admin::end_session(&state.db, &session.0.id)
        .await
        .map_err(LtiError::logout_not_recorded)?;
    cookies.remove(admin_cookie(String::new(), secure));
    log::warn!("admin logged out from {}", address.0);
    Ok(Redirect::to("/admin"))
}

/// Any admin address without a live admin session: the login page (or set-up page), with 401.
#[catch(401)]
pub(super) async fn unauthorized(req: &Request<'_>) -> Page {
    let Some(state) = req.rocket().state::<AppState>() else {
        return login_page_saying(Status::Unauthorized, true, None, None);
    };
    let secure = SecureCookies::of(req, &state.settings);
    // A cookie that got here names no live session: clear it (Rocket drops the guard's own removal
    // before a catcher runs).
    let sent = !cookie_values(req, ADMIN_COOKIE, secure).is_empty();
    let post = req.method() == rocket::http::Method::Post;
    login_again_page(state, req.cookies(), secure, sent, post).await
}

/// The 401 login page; when the browser sent an admin cookie, its session has ended: the cookie
/// goes, and the page says why the admin is asked again (and, after a POST, that what the form
/// held is gone).
pub(super) async fn login_again_page(
    state: &AppState,
    cookies: &CookieJar<'_>,
    secure: SecureCookies,
    cookie_sent: bool,
    after_post: bool,
) -> Page {
    let mut ended = None;
    if cookie_sent {
        cookies.remove(admin_cookie(String::new(), secure));
        let idle = state.settings.admin_idle_timeout;
        let idle = match (idle % 60, idle / 60) {
            (0, 1) => "1 minute".to_string(),
            (0, minutes) => format!("{minutes} minutes"),
            _ => format!("{idle} seconds"),
        };
        let lost = match after_post {
            true => " What you were sending was not saved.",
            false => "",
        };
        let max_hours = crate::store::admin::SESSION_MAX_AGE / 3600;
        ended = Some(format!(
            "Your admin session has ended (after {idle} without use, {max_hours} hours after \
             logging in, or a logout or password change elsewhere). Log in again.{lost}"
        ));
    }
    let has = has_password(state).await.unwrap_or(true);
    login_page_saying(Status::Unauthorized, has, None, ended.as_deref())
}

/// The routes of this module.
pub(super) fn routes() -> Vec<rocket::Route> {
    rocket::routes![login, logout]
}

#[cfg(test)]
mod tests {
    use super::{device_binding, throttle_bucket};
    use crate::web::csrf::CsrfKey;

    #[test]
    fn a_device_mark_is_bound_to_its_id_and_the_password() {
        let key = CsrfKey::random();
        let mark = key.token(&device_binding("$argon2id$old", "id-1"));
        assert!(key.verify(&device_binding("$argon2id$old", "id-1"), &mark));
        assert!(!key.verify(&device_binding("$argon2id$new", "id-1"), &mark));
        assert!(!key.verify(&device_binding("$argon2id$old", "id-2"), &mark));
    }

    #[test]
    fn an_ipv6_client_is_throttled_by_its_slash_64() {
        assert_eq!(throttle_bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            throttle_bucket("2001:db8:1:2:ffff:1:2:3"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(throttle_bucket("2001:db8:1:3::1"), "2001:db8:1:2::/64");
        assert_eq!(throttle_bucket("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(throttle_bucket("::192.0.2.8"), "192.0.2.8");
        assert_eq!(throttle_bucket("64:ff9b::192.0.2.9"), "192.0.2.9");
        assert_eq!(throttle_bucket("64:ff9b::198.51.100.1"), "198.51.100.1");
        assert_eq!(throttle_bucket("::1"), "::1");
        assert_eq!(throttle_bucket("192.0.2.7"), "192.0.2.7");
        assert_eq!(throttle_bucket("unknown"), "unknown");
    }
}
