//! The launch benchmark: `cargo run --release --example bench [-- --seconds 10 --connections 16]`.
//!
//! Builds and starts the release server on a loopback port with a fresh database and the baseline
//! routes on (`benchmark_routes`), pre-signs launches with `oauth1-request` (not our verifier),
//! and drives four phases from this process over keep-alive HTTP/1.1 connections: the POST
//! baseline, valid launches, the GET baseline, and session-page GETs with the cookies the launches
//! set. For each it prints requests/s, p50 and p99 latency, non-2xx answers and transport
//! errors, the server's and the load generator's CPU time per request and the machine's idle share
//! (a phase with idle CPU is bound by waiting, not by work), then the server's peak resident
//! memory (VmHWM) and our figures as ratios of the baselines, against the targets of issue 6.
//! Exits non-zero when a target is missed.

use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth1_request as oauth;
use rocket::tokio;
use rocket::tokio::io::{AsyncReadExt, AsyncWriteExt};
use rocket::tokio::net::TcpStream;

const KEY: &str = "bench";
const SECRET: &str = "bench-secret-0123456789abcdef";
/// Sessions the GET phases rotate over: a lecture's worth of students.
const SESSIONS: usize = 1000;

/// Command-line options.
struct Args {
    seconds: u64,
    warmup: u64,
    connections: usize,
    launches: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 10,
        warmup: 2,
        connections: 16,
        launches: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--seconds" => a.seconds = value()?,
            "--warmup" => a.warmup = value()?,
            "--connections" => a.connections = value()? as usize,
            "--launches" => a.launches = value()? as usize,
            _ => {
                return Err(format!(
                    "unknown option {flag}; use --seconds, --warmup, --connections, --launches"
                ))
            }
        }
    }
    if a.launches == 0 {
        // More than the server can take in the time (it has reached 12,000/s on 2 cores): a
        // phase that runs out says so.
        a.launches = 20_000 * (a.seconds + a.warmup) as usize;
    }
    Ok(a)
}

/// One phase's outcome.
struct Figures {
    name: &'static str,
    requests: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: usize,
    errors: usize,
    exhausted: bool,
    peak_rss_kib: u64,
    /// Server CPU time (user + system) per request in the measured window, in microseconds.
    cpu_us_per_request: f64,
    /// The load generator's CPU time per request, in microseconds.
    load_cpu_us_per_request: f64,
    /// The machine's idle share over the measured window (all CPUs), when `/proc/stat` is readable.
    idle_share: Option<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// What each connection sends next; `None` ends the phase (the pre-signed launches ran out).
type NextRequest = Arc<dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync>;

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let binary = build_server()?;
    let dir = std::env::temp_dir().join(format!("lti-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let env = server_env(&dir, port);

    let status = Command::new(&binary)
        .args(["consumer", "add", KEY, "--secret", SECRET])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("could not add the benchmark consumer".into());
    }
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let server = Command::new(&binary)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut server = KillOnDrop(server);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_until_up(addr, &mut server.0)?;
    let pid = server.0.id();
    println!(
        "server pid {pid}, port {port}, database in {}",
        dir.display()
    );

    let started = Instant::now();
    let bodies = Arc::new(sign_launches(port, args.launches));
    println!(
        "pre-signed {} launches with oauth1-request in {:.1} s",
        bodies.len(),
        started.elapsed().as_secs_f64()
    );
    print_machine();
    println!(
        "{} connections, {} s warm-up + {} s measured per phase\n",
        args.connections, args.warmup, args.seconds
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let host = format!("127.0.0.1:{port}");
    let cookies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    let post_baseline = {
        let (bodies, host) = (bodies.clone(), host.clone());
        let next = AtomicUsize::new(0);
        let f: NextRequest = Arc::new(move |_| {
            let i = next.fetch_add(1, Ordering::Relaxed) % bodies.len();
            Some(post_request(&host, "/bench/post", &bodies[i]))
        });
        runtime.block_on(phase("POST baseline", addr, args, f, None, pid))
    };
    let launches = {
        let (bodies, host) = (bodies.clone(), host.clone());
        let next = AtomicUsize::new(0);
        let f: NextRequest = Arc::new(move |_| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            bodies.get(i).map(|b| post_request(&host, "/initial", b))
        });
        runtime.block_on(phase("launches", addr, args, f, Some(cookies.clone()), pid))
    };
    let cookies: Vec<String> = cookies.lock().map(|c| c.clone()).unwrap_or_default();
    if cookies.is_empty() {
        return Err("no launch succeeded, so there is no session to GET".into());
    }
    let cookies = Arc::new(cookies);
    let get = |name: &'static str, path: &'static str| {
        let (cookies, host) = (cookies.clone(), host.clone());
        let next = AtomicUsize::new(0);
        let f: NextRequest = Arc::new(move |_| {
            let i = next.fetch_add(1, Ordering::Relaxed) % cookies.len();
            Some(get_request(&host, path, &cookies[i]))
        });
        runtime.block_on(phase(name, addr, args, f, None, pid))
    };
    let get_baseline = get("GET baseline", "/bench/get");
    let sessions = get("session GETs", "/session");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);

    Ok(report(
        &[post_baseline, launches, get_baseline, sessions],
        cookies.len(),
    ))
}

/// Kills the server however the benchmark ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build_server() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("building the release server (cargo build --release --bin lti-tool --example bench)");
    // With the example in the same build, features unify as in `cargo run --example bench`, so
    // the two commands do not rebuild each other's dependencies. Nor must the variables `cargo
    // run` set for this process reach the build: some build scripts (ring's) ask to be rerun
    // when `CARGO_MANIFEST_DIR` or `CARGO_PKG_*` change, so each command rebuilt them.
    let package_vars = std::env::vars_os().map(|(k, _)| k).filter(|k| {
        let k = k.to_string_lossy();
        k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*k)
    });
    let mut command = Command::new(cargo);
    for name in package_vars {
        command.env_remove(name);
    }
    let status = command
        .args([
            "build",
            "--release",
            "--bin",
            "lti-tool",
            "--example",
            "bench",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("the release build failed".into());
    }
    // This example runs from target/release/examples/; the server is two levels up.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("lti-tool"))
        .ok_or("cannot locate target/release")?;
    if !binary.exists() {
        return Err(format!("{} is missing", binary.display()));
    }
    Ok(binary)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn server_env(dir: &Path, port: u16) -> Vec<(String, String)> {
    use base64::Engine as _;
    use rand::RngCore;
    let mut key = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let secret_key = base64::engine::general_purpose::STANDARD.encode(key);
    [
        ("ROCKET_PROFILE", "release".to_string()),
        ("ROCKET_ADDRESS", "127.0.0.1".to_string()),
        ("ROCKET_PORT", port.to_string()),
        (
            "ROCKET_DATABASE_URL",
            format!("sqlite://{}", dir.join("bench.db").display()),
        ),
        ("ROCKET_SECRET_KEY", secret_key),
        // The load generator speaks plain http; a Secure cookie would still be sent back by it,
        // but this keeps the server's answers the same as a browser on http would get.
        ("ROCKET_COOKIE_SECURE", "false".to_string()),
        ("ROCKET_BENCHMARK_ROUTES", "true".to_string()),
        ("ROCKET_LOG_LEVEL", "critical".to_string()),
        ("ROCKET_CLI_COLORS", "false".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn wait_until_up(addr: SocketAddr, server: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("the server exited at start: {status}"));
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the server did not start within 30 s".into())
}

/// Launch bodies, each with its own nonce and the current time, signed by `oauth1-request`.
fn sign_launches(port: u16, count: usize) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}/initial");
    let timestamp = NonZeroU64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    );
    (0..count)
        .map(|i| {
            let user = format!("user-{i}");
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let list = oauth::ParameterList::new(vec![
                ("lti_message_type", "basic-lti-launch-request"),
                ("lti_version", "LTI-1p0"),
                ("resource_link_id", "link-1"),
                ("user_id", user.as_str()),
                ("roles", "Learner"),
                ("lis_person_name_full", "Ada Lovelace"),
                ("context_id", "course-1"),
                ("context_title", "Analytical Engines"),
            ]);
            let mut builder = oauth::Builder::<_, &str>::new(
                oauth::Credentials::new(KEY, SECRET),
                oauth::HmacSha1::new(),
            );
            builder
                .nonce(nonce.as_str())
                .timestamp(timestamp)
                .version(true);
            format!(
                "{}&{}",
                oauth::to_form(&list),
                builder.to_form("POST", &url, &list)
            )
        })
        .collect()
}

fn post_request(host: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get_request(host: &str, path: &str, cookie: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: lti_session={cookie}\r\n\r\n")
        .into_bytes()
}

/// Runs one phase: `connections` keep-alive connections, each sending its next request as soon
/// as the previous answer is in, for the warm-up then the measured time.
async fn phase(
    name: &'static str,
    addr: SocketAddr,
    args: &Args,
    next: NextRequest,
    cookies: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    pid: u32,
) -> Figures {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.seconds);
    let exhausted = Arc::new(AtomicBool::new(false));
    // The server's CPU time over the measured window: steadier than requests/s on a shared machine.
    // The load generator's own CPU and the machine's idle time tell whether a phase is CPU-bound.
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let me = std::process::id();
        let before = (cpu_ticks(pid), cpu_ticks(me), idle_ticks());
        tokio::time::sleep_until(end.into()).await;
        (
            cpu_ticks(pid).saturating_sub(before.0),
            cpu_ticks(me).saturating_sub(before.1),
            idle_ticks().map(|(idle, all)| {
                let (idle0, all0) = before.2.unwrap_or((idle, all));
                idle.saturating_sub(idle0) as f64 / all.saturating_sub(all0).max(1) as f64
            }),
        )
    });
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (next, cookies, exhausted) = (next.clone(), cookies.clone(), exhausted.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = ConnFigures::default();
            let mut conn: Option<Conn> = None;
            while Instant::now() < end {
                let Some(request) = next(c) else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                if conn.is_none() {
                    match TcpStream::connect(addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            conn = Some(Conn::new(s));
                        }
                        Err(_) => {
                            out.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(open) = conn.as_mut() else { continue };
                let sent = Instant::now();
                let answer = open.roundtrip(&request).await;
                let took = sent.elapsed();
                let counted = sent >= measure_from && Instant::now() <= end;
                match answer {
                    Ok(answer) => {
                        if counted {
                            out.latencies_us.push(took.as_micros() as u32);
                            if !(200..300).contains(&answer.status) {
                                out.non_2xx += 1;
                            }
                        }
                        if let (Some(jar), Some(cookie)) = (&cookies, answer.session_cookie) {
                            if let Ok(mut jar) = jar.lock() {
                                if jar.len() < SESSIONS {
                                    jar.push(cookie);
                                }
                            }
                        }
                        if answer.close {
                            conn = None;
                        }
                    }
                    Err(_) => {
                        if counted {
                            out.errors += 1;
                        }
                        conn = None;
                    }
                }
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let (mut non_2xx, mut errors) = (0, 0);
    for t in tasks {
        if let Ok(f) = t.await {
            latencies.extend(f.latencies_us);
            non_2xx += f.non_2xx;
            errors += f.errors;
        }
    }
    let (cpu_ticks_used, own_ticks, idle) = cpu.await.unwrap_or((0, 0, None));
    let seconds = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(0.001);
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let figures = Figures {
        name,
        requests: latencies.len(),
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        non_2xx,
        errors,
        exhausted: exhausted.load(Ordering::Relaxed),
        peak_rss_kib: peak_rss_kib(pid),
        cpu_us_per_request: cpu_ticks_used as f64 * 1e6 / USER_HZ / latencies.len().max(1) as f64,
        load_cpu_us_per_request: own_ticks as f64 * 1e6 / USER_HZ / latencies.len().max(1) as f64,
        idle_share: idle,
    };
    print_figures(&figures);
    figures
}

#[derive(Default)]
struct ConnFigures {
    latencies_us: Vec<u32>,
    non_2xx: usize,
    errors: usize,
}

/// One keep-alive connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The parts of an answer the benchmark looks at.
struct Answer {
    status: u16,
    session_cookie: Option<String>,
    close: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    async fn roundtrip(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        use std::io::{Error, ErrorKind};
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| Error::new(ErrorKind::InvalidData, "head not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no status"))?;
        let (mut length, mut cookie, mut close) = (None, None, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("set-cookie") {
                if let Some(v) = value.strip_prefix("lti_session=") {
                    let v = v.split(';').next().unwrap_or("");
                    if !v.is_empty() {
                        cookie = Some(v.to_string());
                    }
                }
            }
        }
        let length =
            length.ok_or_else(|| Error::new(ErrorKind::InvalidData, "no Content-Length"))?;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        self.buf.drain(..head_end + length);
        Ok(Answer {
            status,
            session_cookie: cookie,
            close,
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The server's CPU time so far (user + system, all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The machine's idle and total clock ticks so far, over all CPUs (`/proc/stat`).
fn idle_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // idle and iowait are the 4th and 5th counters.
    Some((ticks.get(3)? + ticks.get(4)?, ticks.iter().sum()))
}

/// Clock ticks per second in `/proc` (USER_HZ, part of Linux's ABI: 100).
const USER_HZ: f64 = 100.0;

/// The server's peak resident set size (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn print_machine() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("machine: {cpus} CPUs ({model}), server and load generator on the same machine");
}

fn print_figures(f: &Figures) {
    println!(
        "{:<14} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  non-2xx {:>5}  errors {:>3}  peak RSS {:>5.1} MiB  server CPU {:>4.0} µs/req  load CPU {:>3.0} µs/req  idle {}{}",
        f.name,
        f.rate(),
        f.p50_ms,
        f.p99_ms,
        f.non_2xx,
        f.errors,
        f.peak_rss_kib as f64 / 1024.0,
        f.cpu_us_per_request,
        f.load_cpu_us_per_request,
        f.idle_share
            .map_or("?".to_string(), |i| format!("{:.0} %", i * 100.0)),
        if f.exhausted {
            "  (ran out of pre-signed launches: raise --launches)"
        } else {
            ""
        }
    );
}

/// Prints the ratios and the targets; true when every target is met.
fn report(all: &[Figures; 4], sessions: usize) -> bool {
    let [post, launch, get, session] = all;
    let launch_ratio = launch.rate() / post.rate();
    let session_ratio = session.rate() / get.rate();
    let peak_mib = all.iter().map(|f| f.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let errors: usize = all.iter().map(|f| f.non_2xx + f.errors).sum();
    let checks = [
        (
            format!(
                "launches / POST baseline      {:>6.1} %",
                launch_ratio * 100.0
            ),
            ">= 50 %",
            launch_ratio >= 0.5,
        ),
        (
            format!(
                "session GETs / GET baseline   {:>6.1} %",
                session_ratio * 100.0
            ),
            ">= 70 %",
            session_ratio >= 0.7,
        ),
        (
            format!("launch p99                    {:>6.2} ms", launch.p99_ms),
            "< 25 ms",
            launch.p99_ms < 25.0,
        ),
        (
            format!("server peak RSS (VmHWM)       {peak_mib:>6.1} MiB"),
            "< 40 MiB",
            peak_mib < 40.0,
        ),
        (
            format!("non-2xx answers and errors    {errors:>6}"),
            "= 0",
            errors == 0,
        ),
    ];
    println!("\n(session GETs rotate over {sessions} sessions created by the launches)");
    let mut all_met = true;
    for (line, target, met) in checks {
        println!(
            "{line}   target {target:<9} {}",
            if met { "met" } else { "MISSED" }
        );
        all_met &= met;
    }
    all_met
}
