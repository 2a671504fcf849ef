//! `lti-tool`: runs the server, or manages consumers from the command line.

use clap::Parser;

/// mimalloc rather than glibc malloc: a quarter less CPU per launch and per page (README, "Benchmark").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) sends SIGXFSZ on the write that
    // passes it, which kills by default; ignored, that write fails (EFBIG) and the request gets
    // the 503 a full disk gets.
    // SAFETY: signal(2) with SIG_IGN, before any other thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match rocket_lti_tool::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's tip for `--secret -abc` (`-- -abc`) would make the secret the key.
            // `args_os`: `args` panics on an argument that is not UTF-8, which clap refuses
            // with a message of its own.
            let secret_given = std::env::args_os().any(|a| a == "--secret");
            if e.kind() == clap::error::ErrorKind::UnknownArgument && secret_given {
                let _ = e.print();
                eprintln!("(a secret that starts with '-' is given as --secret=-…)");
                return std::process::ExitCode::from(2);
            }
            e.exit()
        }
    };
    // Rocket reads some of these to build its runtime and panics on a bad one: say which, and
    // exit. The command line checks the rest too: it must not seal secrets under a `secret_key`
    // the server would refuse to start with.
    if let Err(e) = rocket_lti_tool::config::check_rocket_settings(&rocket_lti_tool::figment()) {
        eprintln!("lti-tool: invalid configuration: {e}");
        return std::process::ExitCode::FAILURE;
    }
    rocket::execute(rocket_lti_tool::cli::run(cli))
}
