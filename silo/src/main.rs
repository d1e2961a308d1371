//! `silo`: parse the command line, initialise tracing, run the command. Nothing else.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Two rustls crypto providers are compiled in (sqlx's ring and reqwest's aws-lc-rs); pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Err(error) = silo::logging::init("info,sqlx=warn,apalis=warn") {
        eprintln!("error: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = silo::cli::Cli::parse();
    match silo::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
