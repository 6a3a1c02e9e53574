//! `stampede`: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use stampede::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => stampede::serve(*args),
        Command::Token(args) => stampede::token::print(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stampede: {err:#}");
            ExitCode::FAILURE
        }
    }
}
