//! `migrator`: parse the command line, initialise tracing, run the command, exit with its code
//! (0 success, 1 error, 2 the rollout failed, 3 the rollout is paused).

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Err(error) = silo::logging::init("warn") {
        eprintln!("error: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = silo::migrator_cli::MigratorCli::parse();
    match silo::migrator_cli::run(cli).await {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
