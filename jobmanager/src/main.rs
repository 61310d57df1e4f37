//! `jobmanager`: the Sluice jobmanager daemon.

use std::process::ExitCode;

use clap::Parser;
use sluice_common::config::ConfigArgs;
use sluice_common::observability::init_logging;

/// The Sluice jobmanager: schedules jobs over taskmanagers, coordinates checkpoints, serves
/// REST and metrics.
#[derive(Parser, Debug)]
#[command(name = "jobmanager", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the derived memory configuration and exit without starting.
    #[arg(long)]
    print_memory: bool,
    /// Print the effective value of a configuration key (file, SLUICE_PROPERTIES, -D, else the
    /// default) and exit: how scripts read e.g. rest.port.
    #[arg(long, value_name = "KEY")]
    print_option: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let loaded = match cli.config.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(key) = &cli.print_option {
        return match loaded.config.effective_text(key) {
            Some(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("Error: configuration key '{key}' has no value and no default");
                ExitCode::from(1)
            }
        };
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if cli.print_memory {
        return match sluice_jobmanager::daemon::derive_memory(&loaded.config) {
            Ok(memory) => {
                print!("{}", memory.breakdown());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        };
    }
    tracing::info!("Loading configuration from {}", loaded.file);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(sluice_jobmanager::daemon::run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}
