//! `axiscope`: the native command line over the same engine the web app runs.

#[cfg(not(target_arch = "wasm32"))]
mod engine_cmds;
#[cfg(not(target_arch = "wasm32"))]
mod science_cmds;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = engine_cmds::Cli::parse();
    match engine_cmds::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axiscope: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
