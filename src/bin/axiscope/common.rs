//! What every command shares: loading a model on a backend, naming it, reading and writing a
//! bundle and checking it fits the model.

use anyhow::{Context, Result, bail};
use axiscope::engine::gpu::GpuModel;
use axiscope::engine::{Backend, Model};
use axiscope::science::data::short_model_name;
use axiscope::science::{Bundle, ModelFit};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Cpu,
    Gpu,
}

/// The engine `choice` names, loaded with the model's weights.
pub fn backend(m: &Model, choice: BackendChoice, threads: usize) -> Result<Box<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Cpu => Box::new(m.cpu_backend(threads)?),
        BackendChoice::Gpu => Box::new(
            pollster::block_on(GpuModel::open(&m.gguf))
                .context("--backend gpu failed (--backend cpu runs without a GPU)")?,
        ),
    })
}

pub fn load(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Model::from_bytes(bytes).with_context(|| format!("cannot load {}", path.display()))
}

/// What the default prompt "You are {model_name}." calls the model: its file name shortened
/// (`SmolLM2-135M-Instruct.Q4_1.gguf` -> `SmolLM2-135M-Instruct`). GGUF `general.name` is
/// often a training run's label ("Smollm2 135M 8k Lc100K Mix1 Ep2"), so it is only the fallback.
pub fn model_name(path: &Path, model: &Model) -> String {
    let file = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
    short_model_name(file).unwrap_or_else(|| model.config.name.clone())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn read_bundle(path: &Path) -> Result<Bundle> {
    let b = if path.is_dir() {
        Bundle::read_dir(path)?
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Bundle::from_blob(&bytes)?
    };
    Ok(b)
}

pub fn write_bundle(b: &Bundle, path: &Path) -> Result<()> {
    if path.extension().is_some_and(|e| e == "axb") {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, b.to_blob())
            .with_context(|| format!("cannot write {}", path.display()))
    } else {
        Ok(b.write_dir(path)?)
    }
}

/// The bundle must describe this model's shape (the file may differ: another quantization).
pub fn check_fits(b: &Bundle, m: &Model) -> Result<()> {
    if b.model.fit(m.config.n_layers, m.config.hidden, None) == ModelFit::Other {
        bail!(
            "the bundle is for {} ({} layers x {}), the model has {} layers x {}",
            b.model.name,
            b.model.n_layers,
            b.model.hidden,
            m.config.n_layers,
            m.config.hidden
        );
    }
    Ok(())
}

pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
