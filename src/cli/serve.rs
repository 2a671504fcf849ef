//! `lti-tool serve`: runs the server until it is stopped, then closes the database; says why
//! when it cannot listen or start.

use std::process::ExitCode;

use crate::config::describe;

/// Where the server is set to listen, as Rocket reads it; `None` when the settings are bad (Rocket
/// then says so itself).
pub(super) fn listen_address() -> Option<std::net::SocketAddr> {
    let figment = crate::figment();
    let address = figment.extract_inner::<std::net::IpAddr>("address").ok()?;
    let port = figment.extract_inner::<u16>("port").ok()?;
    Some(std::net::SocketAddr::new(address, port))
}

/// Why the server cannot listen, with what to change: Rocket says why only at log level
/// `normal`, and a release build logs at `critical`.
pub(super) fn cannot_listen(at: Option<std::net::SocketAddr>, why: &std::io::Error) -> String {
    let at = at.map(|a| format!(" {a}")).unwrap_or_default();
    let hint = match why.kind() {
        std::io::ErrorKind::AddrInUse => "is the server already running? otherwise set ROCKET_PORT",
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a higher ROCKET_PORT behind \
             a proxy"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "ROCKET_ADDRESS must be an address of this machine (or 0.0.0.0)"
        }
        _ => "check ROCKET_ADDRESS and ROCKET_PORT",
    };
    format!("lti-tool: cannot listen on{at}: {why} ({hint})")
}

/// Runs the server until it is stopped, its log lines passed on by a [`LogRelay`] in a debug
/// build.
pub(super) async fn serve() -> ExitCode {
    let relay = LogRelay::start();
    let code = serve_until_stopped().await;
    if let Some(relay) = relay {
        relay.finish();
    }
    code
}

/// Passes the server's standard output on through a pipe, dropping what cannot be written.
/// Rocket's logger in a debug build (`cargo run`) panics on a line it cannot write: with the log
/// in a file on a full disk (or over `ulimit -f`), every request that logs would end unanswered,
/// and a SIGTERM be lost with the task that logs it. Writing into the pipe never fails; the relay
/// thread drops the lines the file refuses, and the requests get their pages (a 503 while the
/// database cannot grow either). Release builds drop such lines themselves; a terminal is left
/// alone.
struct LogRelay {
    done: std::sync::mpsc::Receiver<()>,
}

impl LogRelay {
    #[cfg(unix)]
    fn start() -> Option<LogRelay> {
        use std::io::{IsTerminal, Read, Write};
        use std::os::fd::{FromRawFd, OwnedFd};
        if !cfg!(debug_assertions) || std::io::stdout().is_terminal() {
            return None;
        }
        let mut ends = [0; 2];
        // SAFETY: pipe2(2) fills the two descriptors of a new pipe into `ends`.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both are open descriptors this process owns from here on.
        let (from, into) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let _ = std::io::stdout().flush();
        // SAFETY: fcntl(2) duplicates the open standard output; the copy is ours alone.
        let target = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if target < 0 {
            return None;
        }
        // SAFETY: `target` is the open descriptor just made.
        let target = unsafe { OwnedFd::from_raw_fd(target) };
        // SAFETY: dup2(2) of an open descriptor onto 1: standard output now writes into the pipe.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&into), 1) } < 0 {
            return None;
        }
        drop(into);
        let (sent, done) = std::sync::mpsc::channel();
        let mut target = std::fs::File::from(target);
        let restore = target.try_clone().ok();
        let relay = std::thread::Builder::new()
            .name("log relay".into())
            .spawn(move || {
                let mut from = std::fs::File::from(from);
                let mut buffer = [0u8; 8192];
                let mut dropped = false;
                loop {
                    let n = match from.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    };
                    // What the file refuses (a full disk) is dropped, and the next write that
                    // fits says so first, on a line of its own (a line may have been cut).
                    if dropped && target.write_all(DROPPED).is_err() {
                        continue;
                    }
                    dropped = target.write_all(&buffer[..n]).is_err();
                }
                let _ = sent.send(());
            });
        if relay.is_err() {
            // No thread to read the pipe: standard output goes back where it was.
            if let Some(restore) = restore {
                // SAFETY: dup2(2) of an open descriptor onto 1.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&restore), 1) };
            }
            return None;
        }
        Some(LogRelay { done })
    }

    #[cfg(not(unix))]
    fn start() -> Option<LogRelay> {
        None
    }

    /// Passes on what is left (waiting a second at most), once the server has stopped.
    fn finish(self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        #[cfg(unix)]
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: dup2(2) of an open descriptor onto 1, which closes the pipe's last
            // writing end: the relay reads to its end.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) };
        }
        let _ = self.done.recv_timeout(std::time::Duration::from_secs(1));
    }
}

/// What the [`LogRelay`] writes where log lines were dropped.
#[cfg(unix)]
const DROPPED: &[u8] = b"\n[log lines were dropped here: the log file could not be written]\n";

/// Runs the server until it is stopped.
async fn serve_until_stopped() -> ExitCode {
    match crate::rocket()
        .attach(rocket::fairing::AdHoc::on_liftoff(
            "Open-file limit",
            |_| Box::pin(async { raise_open_file_limit() }),
        ))
        .attach(rocket::fairing::AdHoc::on_shutdown("Stop clock", |_| {
            Box::pin(async {
                let _ = STOP_ASKED.set(std::time::Instant::now());
            })
        }))
        .launch()
        .await
    {
        Ok(rocket) => {
            close_store(&rocket).await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            match e.kind() {
                // Stopped, but a request outlived the grace period (a grade call to a slow
                // LMS) and was cut off, as a lost connection would be; or the server failed
                // while it stopped. The database is closed all the same.
                rocket::error::ErrorKind::Shutdown(rocket, failure) => {
                    let finished = failure.is_none() && requests_finish(rocket).await;
                    let closing = close_store(rocket);
                    if rocket::tokio::time::timeout(std::time::Duration::from_secs(5), closing)
                        .await
                        .is_err()
                    {
                        log::warn!("the database could not be closed in time (the WAL is replayed at the next start)");
                    }
                    if finished {
                        return ExitCode::SUCCESS;
                    }
                    if failure.is_none() {
                        eprintln!(
                            "lti-tool: stopped; requests still running after the shutdown \
                                 grace period were cut off"
                        );
                        return ExitCode::SUCCESS;
                    }
                    eprintln!("lti-tool: {e}");
                }
                rocket::error::ErrorKind::Config(e) => {
                    eprintln!("lti-tool: invalid configuration: {}", describe(e.clone()))
                }
                // Rocket says why only at log level `normal`; a second server on the port is
                // the usual cause, and worth saying at every level.
                rocket::error::ErrorKind::Bind(why) => {
                    eprintln!("{}", cannot_listen(listen_address(), why))
                }
                // The fairing logged why.
                rocket::error::ErrorKind::FailedFairings(_) => {
                    eprintln!("lti-tool: the server did not start (the reason is logged above)")
                }
                // Rocket logs the details (which routes collide, say a fork's with the tool's).
                _ => eprintln!("lti-tool: {}", e.pretty_print()),
            }
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard one, as Go's runtime does for its servers:
/// every client connection holds a file, and Rocket 0.5 never times out an idle one, so the usual
/// soft limit of 1024 is what a few hundred idle sockets from one client use up (then every new
/// connection is refused). Serve behind a proxy that times clients out (README, production).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return;
    };
    if current >= maximum {
        return;
    }
    limit.current = Some(maximum);
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => log::info!("open-file limit raised from {current} to {maximum}"),
        Err(e) => log::warn!("open-file limit stays at {current}: {e}"),
    }
}

/// When the server was asked to stop (its shutdown fairings ran).
static STOP_ASKED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Waits for requests still running when Rocket returned, until the shutdown's grace and mercy
/// periods are over; true when none is left. Rocket 0.5 returns that way on two paths: after
/// grace + mercy + 1 s (its shutdown fairings ran: `STOP_ASKED` is set, the periods are over and
/// nothing is waited for), or at once when its server stopped before it saw the signal (the
/// fairings did not run), with requests still at work, holding the other references.
async fn requests_finish(rocket: &std::sync::Arc<rocket::Rocket<rocket::Orbit>>) -> bool {
    let shutdown = &rocket.config().shutdown;
    let periods = std::time::Duration::from_secs(u64::from(shutdown.grace + shutdown.mercy));
    let asked = STOP_ASKED
        .get()
        .copied()
        .unwrap_or_else(std::time::Instant::now);
    while std::sync::Arc::strong_count(rocket) > 1 {
        if asked.elapsed() >= periods {
            return false;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
}

/// Closes the stopped server's launch writer and database (see `store::close`).
async fn close_store<P: rocket::Phase>(rocket: &rocket::Rocket<P>) {
    if let Some(state) = rocket.state::<crate::web::AppState>() {
        state.front.close().await;
        if let Some(note) = crate::store::close(&state.db).await {
            log::warn!("{note}");
        }
    }
}
