//! `ternc`: compile Darknet YOLO models into ternary-weight, multiply-free kernels.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ternc_ir::InputError;

#[derive(Parser)]
#[command(name = "ternc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layer table (shapes, parameters, BFLOPs), its IR, or JSON.
    Inspect(commands::inspect::Args),
    /// Write random Darknet weights for a cfg (He-normal, deterministic per seed).
    Init(commands::init::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Init(a) => commands::init::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Bad input is the user's to fix (exit 2); anything else is ours (exit 1).
            if let Some(input) = e.downcast_ref::<InputError>() {
                eprintln!("error: {input}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}
