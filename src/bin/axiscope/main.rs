//! `axiscope`: the native command line over the same engine the web app runs.
//!
//! This file holds the command table; [`engine_cmds`] the engine's commands (inspect,
//! tokenize, generate), [`science_cmds`] the method's (build, project, report), [`common`]
//! loading a model and reading or writing a bundle, [`edits`] the capping and steering
//! options both kinds share, [`rollout_cache`] the build's `--rollouts-cache` file.

#[cfg(not(target_arch = "wasm32"))]
mod common;
#[cfg(not(target_arch = "wasm32"))]
mod edits;
#[cfg(not(target_arch = "wasm32"))]
mod engine_cmds;
#[cfg(not(target_arch = "wasm32"))]
mod rollout_cache;
#[cfg(not(target_arch = "wasm32"))]
mod science_cmds;

#[cfg(not(target_arch = "wasm32"))]
use anyhow::Result;
#[cfg(not(target_arch = "wasm32"))]
use clap::{Parser, Subcommand};
#[cfg(not(target_arch = "wasm32"))]
use serde_json::json;
#[cfg(not(target_arch = "wasm32"))]
use std::path::PathBuf;

#[cfg(not(target_arch = "wasm32"))]
#[derive(Parser)]
#[command(
    name = "axiscope",
    version,
    about = "Read and steer a small chat model's persona: the Assistant Axis, natively."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
pub enum Command {
    /// Architecture, sizes, quantization types and chat template of a GGUF model.
    Inspect {
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Token ids of a text (special tokens such as <|im_start|> recognised), as JSON.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
    },
    /// Generate a reply to one prompt, optionally capped or steered along a bundle's axis.
    Generate(engine_cmds::GenerateArgs),
    /// Build a persona bundle: rollouts for every role and the default, role vectors, the
    /// Assistant Axis per layer, PCA, projection percentiles, the fidelity report.
    Build(science_cmds::BuildArgs),
    /// Project a conversation's assistant turns on the axis (generating the replies first when
    /// it has only user turns), or place new roles on the bundle's map.
    Project(science_cmds::ProjectArgs),
    /// The fidelity numbers of a bundle: cos(PC1, axis), explained variance, nearest and
    /// farthest roles, split-half stability.
    Report(science_cmds::ReportArgs),
}

#[cfg(not(target_arch = "wasm32"))]
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => engine_cmds::inspect(&model, json),
        Command::Tokenize { model, text } => {
            let m = common::load(&model)?;
            let ids = m.tokenizer.encode(&text)?;
            println!("{}", json!({ "ids": ids }));
            Ok(())
        }
        Command::Generate(args) => engine_cmds::generate(args),
        Command::Build(args) => science_cmds::build(args),
        Command::Project(args) => science_cmds::project(args),
        Command::Report(args) => science_cmds::report(args),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axiscope: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
