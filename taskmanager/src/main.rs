//! `taskmanager`: the Sluice taskmanager daemon.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use sluice_common::config::ConfigArgs;
use sluice_common::observability::init_logging;
use sluice_taskmanager::MemoryPools;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The Sluice taskmanager: offers slots to the jobmanager and runs the tasks deployed to them.
#[derive(Parser, Debug)]
#[command(name = "taskmanager", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the derived memory configuration and exit without starting (dry run).
    #[arg(long)]
    print_memory: bool,
    /// Output format of --print-memory.
    #[arg(long, value_enum, default_value = "text", requires = "print_memory")]
    format: Format,
}

fn fail(message: &str) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let loaded = match cli.config.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.to_string()),
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if cli.print_memory {
        return match MemoryPools::from_config(&loaded.config) {
            Ok(pools) => {
                match cli.format {
                    Format::Text => print!("{}\n{}", pools.memory.breakdown(), pools.sluice_breakdown()),
                    Format::Json => println!("{}", pools.to_json()),
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    tracing::info!("Loading configuration from {}", loaded.file);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(sluice_taskmanager::daemon::run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            fail(&e)
        }
    }
}
