//! `sluice`: submit and manage jobs on a Sluice cluster.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sluice_jobmanager::cli::Cli::parse();
    match sluice_jobmanager::cli::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}
