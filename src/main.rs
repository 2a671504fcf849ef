//! `lti-tool`: runs the server, or manages consumers from the command line.

use clap::Parser;

#[rocket::main]
async fn main() -> std::process::ExitCode {
    let cli = rocket_lti_tool::cli::Cli::parse();
    rocket_lti_tool::cli::run(cli).await
}
