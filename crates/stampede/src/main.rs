//! `stampede`: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use stampede::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => stampede::serve(*args).map(|()| ExitCode::SUCCESS),
        Command::Token(args) => stampede::token::print(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => stampede_bench::bench(args.command),
        Command::Audit(args) => stampede_bench::audit(*args),
        Command::CheckHistory(args) => stampede_bench::check_history(*args),
        Command::Drill(args) => stampede_bench::drill::drill(*args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stampede: {err:#}");
            ExitCode::FAILURE
        }
    }
}
