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
    /// Run the bundled fully ternary detector (JIT) on the bundled images: boxes, timing, PNGs.
    Demo(commands::demo::Args),
    /// Print a model's layer table (shapes, parameters, BFLOPs), its IR, or JSON.
    Inspect(commands::inspect::Args),
    /// Write random Darknet weights for a cfg (He-normal, deterministic per seed).
    Init(commands::init::Args),
    /// Run a model on one input; print the heads or dump every layer's output.
    Run(commands::run::Args),
    /// Ternarize chosen layers (TWN): writes PREFIX.cfg with ternary=1 and PREFIX.weights.
    Ternarize(commands::ternarize::Args),
    /// Compile a model to an object file with a C API: PREFIX.o and PREFIX.h (LLVM).
    Compile(commands::compile::Args),
    /// Detect objects in images: boxes as text or JSON, annotated PNGs.
    Detect(commands::detect::Args),
    /// Time inference: median/min/max per image and per layer.
    Bench(commands::bench::Args),
    /// VOC mAP (all-point and 11-point) per class on a data set's valid list.
    Map(commands::map::Args),
    /// Darknet-layout data: write a synthetic data set, check a .data file's lists.
    Dataset(commands::dataset::Args),
    /// Train a model: the stages of a plan (ternary layers growing), or one stage from a cfg.
    Train(commands::train::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => commands::demo::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Init(a) => commands::init::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Detect(a) => commands::detect::run(a),
        Command::Ternarize(a) => commands::ternarize::run(a),
        Command::Compile(a) => commands::compile::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Map(a) => commands::map::run(a),
        Command::Dataset(a) => commands::dataset::run(a),
        Command::Train(a) => commands::train::run(a),
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
