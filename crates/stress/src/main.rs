//! `fetchreward-stress`: the whole pipeline as processes of the release binaries, under faults
//! (`chaos`, on the durable local stack) and under a long load (`soak`). `make chaos` and
//! `make soak` run it; docs/chaos.md explains the scenarios and how to read the reports.
//!
//! Exit status: 0 when every check passed, 1 when one failed (the report says which), 2 when
//! the run could not be made (stack down, binaries missing, Postgres not durable, ...).

mod chaos;
mod queues;
mod report;
mod rows;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fetchreward-stress",
    version,
    about = "The pipeline under faults and under a long load"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Faults mid-load, one scenario each: kill -9 of each service, a Postgres crash, an SQS
    /// outage, ingestor replicas, poison messages. Needs `FR_PG_DURABLE=1 make up`.
    Chaos(chaos::ChaosArgs),
    /// A long load through one set of services; fails when a service's memory keeps growing.
    Soak(soak::SoakArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Chaos(args) => chaos::run(args).await,
        Command::Soak(args) => soak::run(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
