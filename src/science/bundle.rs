//! The persona bundle: everything the app needs about one model's persona space, built
//! once natively (rollouts take hours) and loaded natively or in the browser.
//!
//! Over 600 lines: the format's table, writer, reader and every validation check side by
//! side, so that what is written is what is checked.
//!
//! # Two equivalent forms
//! - **Directory**: `manifest.json` plus one little-endian binary file per array.
//! - **Blob** (one file, simplest for the browser to fetch): the 8 bytes `AXBUNDLE`, a
//!   `u32` LE format version (2), a `u32` LE byte length `M`, `M` bytes of the same
//!   `manifest.json`, zero padding to a multiple of 8, then every array of
//!   `manifest.arrays` in that order with exactly its file's bytes, each followed by zero
//!   padding to a multiple of 8 (so typed-array views stay aligned).
//!
//! # Arrays (`dtype`, shape; R roles, L layers, H hidden, K PCs, N rollouts)
//! | name | dtype | shape | content |
//! |---|---|---|---|
//! | `role_offsets` | f16 | R, L, H | role vector minus `mu_roles` (offsets keep f16 precise) |
//! | `default_vector` | f32 | L, H | mean of the default rollouts |
//! | `mu_roles` | f32 | L, H | mean of the role vectors |
//! | `axis` | f32 | L, H | `default_vector - mu_roles` |
//! | `unit_axis` | f32 | L, H | `axis / ‖axis‖` per layer |
//! | `mean_token_norm` | f32 | L | `n_L`, for steering |
//! | `projection_percentiles` | f32 | L, 99 | centred `(h - mu).u`, q = 1..99 |
//! | `raw_projection_percentiles` | f32 | L, 99 | raw `h.u`, q = 1..99: capping `tau_l` |
//! | `pca_components` | f32 | L, K, H | PCs at every layer (PC1 toward the default) |
//! | `pca_singular_values` | f32 | L, K | `s`, singular values of the centred role matrix |
//! | `pca_explained_variance` | f32 | L, K | `s^2 / (R - 1)` |
//! | `pca_explained_variance_ratio` | f32 | L, K | share of the total role variance |
//! | `pca_role_coords` | f32 | L, R, K | every role's coordinates |
//! | `pca_default_coords` | f32 | L, K | the default's coordinates |
//! | `rollout_projections` | f16 | N, L | centred projection of every rollout |
//! | `rollout_meta` | u32 | N, 4 | role index (R = default), prompt index, question id, tokens |
//!
//! Version 1 kept the PCA of the analysis layer only (the arrays above without their `L`);
//! it still reads, the other layers' PCAs recomputed from the stored role vectors.
//!
//! Role vectors and rollout projections are stored as f16, so [`Bundle::new`] rounds them
//! on the way in: a bundle in memory is exactly what its files hold and reading back what
//! was written gives an equal [`Bundle`]. The other arrays (and the percentiles, taken
//! before rounding) are f32. Reading validates everything (magic, manifest, names,
//! dtypes, shapes, byte lengths, finiteness, unit length of `unit_axis`, role indices and
//! counts) and reports the offending file; it never panics.

use serde::{Deserialize, Serialize};

use super::pca::{Pca, persona_pca};
use super::report::FidelityReport;
use super::vectors::{PERCENTILE_STEPS, PersonaVectors, ProjectionStats, RolloutMeta};
use super::{Error, Result};

pub const FORMAT: &str = "axiscope-bundle";
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
const MAGIC: &[u8; 8] = b"AXBUNDLE";

/// Which model the bundle describes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    /// sha256 of the GGUF file, lower-case hex.
    pub sha256: String,
    pub n_layers: usize,
    pub hidden: usize,
}

/// How a bundle's model relates to a loaded one: the one rule the CLI and the page share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFit {
    /// The same file (sha256 on both sides, equal).
    SameFile,
    /// The same shape, the file unknown on one side.
    SameShape,
    /// The same shape, another file (another quantization or fine-tune): the vectors may
    /// still mean something, but the bundle was not built for it.
    OtherFile,
    /// Another shape: nothing in the bundle applies.
    Other,
}

impl ModelInfo {
    /// How this bundle's model fits a model of `n_layers` x `hidden` whose file hashes to
    /// `sha256` (when known).
    pub fn fit(&self, n_layers: usize, hidden: usize, sha256: Option<&str>) -> ModelFit {
        if self.n_layers != n_layers || self.hidden != hidden {
            return ModelFit::Other;
        }
        match sha256 {
            Some(h) if !self.sha256.is_empty() && !h.is_empty() => {
                if h.eq_ignore_ascii_case(&self.sha256) {
                    ModelFit::SameFile
                } else {
                    ModelFit::OtherFile
                }
            }
            _ => ModelFit::SameShape,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: String,
    /// e.g. "assistant-like", "human", "fantastical" (free text, from the role data).
    pub category: String,
    pub n_rollouts: u32,
}

/// How the rollouts were produced, recorded for reproducibility.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildSettings {
    pub questions: u32,
    pub prompts_per_role: u32,
    /// Sampled replies per default prompt x question (1 in bundles from before the option).
    #[serde(default = "one")]
    pub default_seeds: u32,
    pub max_new_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Anything else worth recording (no judge model, chat template, tool version...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
    U32,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 | Dtype::U32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::U32 => "u32",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrayInfo {
    pub name: String,
    pub file: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl ArrayInfo {
    fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model: ModelInfo,
    pub analysis_layer: usize,
    pub roles: Vec<RoleInfo>,
    pub default_rollouts: u32,
    pub n_rollouts: usize,
    pub pca_components: usize,
    pub settings: BuildSettings,
    pub fidelity: Option<FidelityReport>,
    pub arrays: Vec<ArrayInfo>,
}

/// A bundle in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub model: ModelInfo,
    pub analysis_layer: usize,
    /// One per role, same order as `vectors.roles`.
    pub categories: Vec<String>,
    pub settings: BuildSettings,
    pub fidelity: Option<FidelityReport>,
    pub vectors: PersonaVectors,
    pub stats: ProjectionStats,
    /// `[n_layers]`: the PCA of every layer, first K components, PC1 toward the default.
    pub layer_pcas: Vec<Pca>,
    /// `[n_layers][K]`: the default vector's PCA coordinates at every layer.
    pub layer_default_pcs: Vec<Vec<f32>>,
    /// `[n_roles][n_layers][hidden]`: the stored f16 offsets `role - mu_roles` (as f32);
    /// `vectors.role_vectors` is `mu_roles + role_offsets`. Kept so that writing re-emits
    /// exactly these values (recomputing `(mu + q) - mu` in f32 need not give back `q`).
    role_offsets: Vec<f32>,
}

/// Rounds through f16, refusing values f16 cannot hold (it would turn them into infinity).
fn round_f16(v: &[f32], what: &str) -> Result<Vec<f32>> {
    v.iter()
        .map(|&x| {
            let h = half::f16::from_f32(x);
            if h.is_finite() {
                Ok(h.to_f32())
            } else {
                Err(Error::Invalid(format!(
                    "bundle: {what} value {x} overflows f16"
                )))
            }
        })
        .collect()
}

fn role_vectors_from_offsets(offsets: &[f32], mu: &[f32]) -> Vec<f32> {
    offsets
        .chunks_exact(mu.len())
        .flat_map(|o| o.iter().zip(mu).map(|(a, b)| a + b))
        .collect()
}

impl Bundle {
    /// Assembles a bundle, running the PCA at the analysis layer (`n_pcs` components) and
    /// rounding the f16-stored arrays. `categories` has one entry per role of `vectors`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: ModelInfo,
        analysis_layer: usize,
        categories: Vec<String>,
        settings: BuildSettings,
        fidelity: Option<FidelityReport>,
        vectors: PersonaVectors,
        stats: ProjectionStats,
        n_pcs: usize,
    ) -> Result<Self> {
        if model.n_layers != vectors.n_layers
            || model.hidden != vectors.hidden
            || stats.n_layers != vectors.n_layers
        {
            return Err(Error::Invalid(format!(
                "bundle: model has {} layers x {}, vectors {} x {}, stats {} layers",
                model.n_layers, model.hidden, vectors.n_layers, vectors.hidden, stats.n_layers
            )));
        }
        if categories.len() != vectors.n_roles() {
            return Err(Error::Invalid(format!(
                "bundle: {} categories for {} roles",
                categories.len(),
                vectors.n_roles()
            )));
        }
        if n_pcs == 0 {
            return Err(Error::Invalid("bundle: keep at least one PC".into()));
        }
        if analysis_layer >= vectors.n_layers {
            return Err(Error::Invalid(format!(
                "bundle: analysis layer {analysis_layer} of {} layers",
                vectors.n_layers
            )));
        }
        let mut vectors = vectors;
        let width = vectors.n_layers * vectors.hidden;
        let offsets: Vec<f32> = vectors
            .role_vectors
            .chunks_exact(width)
            .flat_map(|r| r.iter().zip(&vectors.mu_roles).map(|(a, b)| a - b))
            .collect();
        let role_offsets = round_f16(&offsets, "role offset")?;
        vectors.role_vectors = role_vectors_from_offsets(&role_offsets, &vectors.mu_roles);
        // The PCA of the role vectors as stored, so a reader that recomputes it (a version 1
        // bundle's other layers) gets the same numbers.
        let (layer_pcas, layer_default_pcs) = layer_pcas(&vectors, n_pcs)?;
        let mut stats = stats;
        stats.projections = round_f16(&stats.projections, "rollout projection")?;
        Ok(Self {
            model,
            analysis_layer,
            categories,
            settings,
            fidelity,
            vectors,
            stats,
            layer_pcas,
            layer_default_pcs,
            role_offsets,
        })
    }

    /// The PCA at the analysis layer (the map's).
    pub fn pca(&self) -> &Pca {
        &self.layer_pcas[self.analysis_layer]
    }

    /// The default's coordinates on [`Bundle::pca`].
    pub fn default_pc(&self) -> &[f32] {
        &self.layer_default_pcs[self.analysis_layer]
    }

    fn dims(&self) -> Dims {
        Dims {
            roles: self.vectors.n_roles(),
            layers: self.vectors.n_layers,
            hidden: self.vectors.hidden,
            pcs: self.layer_pcas[0].n_components(),
            rollouts: self.stats.rollouts.len(),
            version: VERSION,
        }
    }

    /// The manifest and every array's bytes, in manifest order.
    fn encode(&self) -> (Manifest, Vec<Vec<u8>>) {
        let v = &self.vectors;
        let n_roles = v.n_roles() as u32;
        let meta: Vec<u32> = self
            .stats
            .rollouts
            .iter()
            .flat_map(|m| {
                [
                    m.role.unwrap_or(n_roles),
                    m.prompt_index,
                    m.question_id,
                    m.n_tokens,
                ]
            })
            .collect();
        let all = |f: &dyn Fn(&Pca) -> &Vec<f32>| -> Vec<f32> {
            self.layer_pcas
                .iter()
                .flat_map(|p| f(p).iter().copied())
                .collect()
        };
        let data: Vec<(&str, Payload)> = vec![
            ("role_offsets", Payload::F16(self.role_offsets.clone())),
            ("default_vector", Payload::F32(v.default_vector.clone())),
            ("mu_roles", Payload::F32(v.mu_roles.clone())),
            ("axis", Payload::F32(v.axis.clone())),
            ("unit_axis", Payload::F32(v.unit.clone())),
            ("mean_token_norm", Payload::F32(v.mean_token_norm.clone())),
            (
                "projection_percentiles",
                Payload::F32(self.stats.percentiles.clone()),
            ),
            (
                "raw_projection_percentiles",
                Payload::F32(self.stats.raw_percentiles.clone()),
            ),
            ("pca_components", Payload::F32(all(&|p| &p.components))),
            (
                "pca_singular_values",
                Payload::F32(all(&|p| &p.singular_values)),
            ),
            (
                "pca_explained_variance",
                Payload::F32(all(&|p| &p.explained_variance)),
            ),
            (
                "pca_explained_variance_ratio",
                Payload::F32(all(&|p| &p.explained_variance_ratio)),
            ),
            ("pca_role_coords", Payload::F32(all(&|p| &p.scores))),
            (
                "pca_default_coords",
                Payload::F32(self.layer_default_pcs.concat()),
            ),
            (
                "rollout_projections",
                Payload::F16(self.stats.projections.clone()),
            ),
            ("rollout_meta", Payload::U32(meta)),
        ];
        let dims = self.dims();
        let mut arrays = Vec::new();
        let mut bytes = Vec::new();
        for (name, payload) in data {
            let (dtype, shape) = expected(name, &dims).expect("every written array has a spec");
            arrays.push(ArrayInfo {
                name: name.into(),
                file: format!("{name}.{}", dtype.name()),
                dtype,
                shape,
            });
            bytes.push(payload.to_le_bytes());
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            model: self.model.clone(),
            analysis_layer: self.analysis_layer,
            roles: v
                .roles
                .iter()
                .zip(&self.categories)
                .zip(&v.role_rollouts)
                .map(|((name, category), &n)| RoleInfo {
                    name: name.clone(),
                    category: category.clone(),
                    n_rollouts: n,
                })
                .collect(),
            default_rollouts: v.default_rollouts,
            n_rollouts: self.stats.rollouts.len(),
            pca_components: dims.pcs,
            settings: self.settings.clone(),
            fidelity: self.fidelity.clone(),
            arrays,
        };
        (manifest, bytes)
    }

    /// Serialises to the single-blob form.
    pub fn to_blob(&self) -> Vec<u8> {
        let (manifest, arrays) = self.encode();
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        let mut out =
            Vec::with_capacity(16 + json.len() + arrays.iter().map(|a| a.len() + 8).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        pad8(&mut out);
        for a in &arrays {
            out.extend_from_slice(a);
            pad8(&mut out);
        }
        out
    }

    /// Parses the single-blob form.
    pub fn from_blob(blob: &[u8]) -> Result<Self> {
        let err = |msg: String| Error::Bundle {
            file: "bundle blob".into(),
            msg,
        };
        if blob.len() < 16 || &blob[..8] != MAGIC {
            return Err(err("not an axiscope bundle (bad magic)".into()));
        }
        let version = u32::from_le_bytes(blob[8..12].try_into().expect("4 bytes"));
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(err(format!(
                "format version {version}, this build reads {OLDEST_VERSION} to {VERSION}{}",
                if version > VERSION {
                    ": a newer axiscope wrote it"
                } else {
                    ""
                }
            )));
        }
        let m_len = u32::from_le_bytes(blob[12..16].try_into().expect("4 bytes")) as usize;
        // Offsets are checked against the blob's length before any arithmetic that could
        // overflow a 32-bit usize (wasm32).
        let fits = |start: usize, n: usize| n <= blob.len().saturating_sub(start);
        if !fits(16, m_len) {
            return Err(err(format!(
                "truncated: manifest of {m_len} bytes does not fit"
            )));
        }
        let manifest = parse_manifest(&blob[16..16 + m_len])?;
        let mut pos = (16 + m_len).next_multiple_of(8);
        let mut arrays = Vec::with_capacity(manifest.arrays.len());
        for a in &manifest.arrays {
            let n = a.byte_len();
            if !fits(pos, n) {
                return Err(Error::Bundle {
                    file: a.file.clone(),
                    msg: format!(
                        "blob truncated: needs {n} bytes at offset {pos}, blob has {}",
                        blob.len()
                    ),
                });
            }
            arrays.push(blob[pos..pos + n].to_vec());
            pos = (pos + n).next_multiple_of(8);
        }
        if pos < blob.len() {
            return Err(err(format!(
                "{} trailing bytes after the last array",
                blob.len() - pos
            )));
        }
        // pos > len only by padding the last array: a cut into its padding, harmless but
        // not what we write.
        if pos > blob.len() {
            return Err(err("truncated in the final padding".into()));
        }
        Self::decode(manifest, arrays)
    }

    /// Writes the directory form (creating the directory if needed).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<()> {
        let io = |file: &str, e: std::io::Error| Error::Bundle {
            file: file.into(),
            msg: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
        let (manifest, arrays) = self.encode();
        for (a, bytes) in manifest.arrays.iter().zip(&arrays) {
            std::fs::write(dir.join(&a.file), bytes).map_err(|e| io(&a.file, e))?;
        }
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        std::fs::write(dir.join(MANIFEST), json).map_err(|e| io(MANIFEST, e))
    }

    /// Reads and validates the directory form.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let io = |file: &str, e: std::io::Error| Error::Bundle {
            file: file.into(),
            msg: e.to_string(),
        };
        let json = std::fs::read(dir.join(MANIFEST)).map_err(|e| io(MANIFEST, e))?;
        let manifest = parse_manifest(&json)?;
        let mut arrays = Vec::with_capacity(manifest.arrays.len());
        for a in &manifest.arrays {
            let bytes = std::fs::read(dir.join(&a.file)).map_err(|e| io(&a.file, e))?;
            if bytes.len() != a.byte_len() {
                return Err(Error::Bundle {
                    file: a.file.clone(),
                    msg: format!(
                        "expected {} bytes ({} {:?}), found {}",
                        a.byte_len(),
                        a.dtype.name(),
                        a.shape,
                        bytes.len()
                    ),
                });
            }
            arrays.push(bytes);
        }
        Self::decode(manifest, arrays)
    }

    /// Rebuilds the bundle from a parsed manifest and its arrays' bytes, validating them.
    fn decode(manifest: Manifest, arrays: Vec<Vec<u8>>) -> Result<Self> {
        let bad = |file: &str, msg: String| Error::Bundle {
            file: file.into(),
            msg,
        };
        let dims = Dims {
            roles: manifest.roles.len(),
            layers: manifest.model.n_layers,
            hidden: manifest.model.hidden,
            pcs: manifest.pca_components,
            rollouts: manifest.n_rollouts,
            version: manifest.version,
        };
        if dims.roles == 0
            || dims.layers == 0
            || dims.hidden == 0
            || dims.pcs == 0
            || dims.rollouts == 0
        {
            return Err(bad(MANIFEST, format!("empty dimension in {dims:?}")));
        }
        if manifest.analysis_layer >= dims.layers {
            return Err(bad(
                MANIFEST,
                format!(
                    "analysis layer {} >= n_layers {}",
                    manifest.analysis_layer, dims.layers
                ),
            ));
        }
        let mut found: std::collections::BTreeMap<String, Payload> =
            std::collections::BTreeMap::new();
        for (a, bytes) in manifest.arrays.iter().zip(arrays) {
            let Some((dtype, shape)) = expected(&a.name, &dims) else {
                return Err(bad(MANIFEST, format!("unknown array \"{}\"", a.name)));
            };
            if a.dtype != dtype || a.shape != shape {
                return Err(bad(
                    &a.file,
                    format!(
                        "array {} is {} {:?}, expected {} {:?}",
                        a.name,
                        a.dtype.name(),
                        a.shape,
                        dtype.name(),
                        shape
                    ),
                ));
            }
            if bytes.len() != a.byte_len() {
                return Err(bad(
                    &a.file,
                    format!("expected {} bytes, found {}", a.byte_len(), bytes.len()),
                ));
            }
            let payload = Payload::from_le_bytes(dtype, &bytes);
            if !payload.is_finite() {
                return Err(bad(&a.file, "contains a non-finite value".into()));
            }
            if found.insert(a.name.clone(), payload).is_some() {
                return Err(bad(MANIFEST, format!("array \"{}\" listed twice", a.name)));
            }
        }
        let file_of =
            |name: &str| format!("{name}.{}", expected(name, &dims).expect("known").0.name());
        let mut take = |name: &str| -> Result<Payload> {
            found
                .remove(name)
                .ok_or_else(|| bad(MANIFEST, format!("array \"{name}\" missing")))
        };
        let offsets = take("role_offsets")?.f32();
        let default_vector = take("default_vector")?.f32();
        let mu_roles = take("mu_roles")?.f32();
        let axis = take("axis")?.f32();
        let unit = take("unit_axis")?.f32();
        let mean_token_norm = take("mean_token_norm")?.f32();
        let percentiles = take("projection_percentiles")?.f32();
        let raw_percentiles = take("raw_projection_percentiles")?.f32();
        let components = take("pca_components")?.f32();
        let singular_values = take("pca_singular_values")?.f32();
        let explained_variance = take("pca_explained_variance")?.f32();
        let explained_variance_ratio = take("pca_explained_variance_ratio")?.f32();
        let scores = take("pca_role_coords")?.f32();
        let default_pc = take("pca_default_coords")?.f32();
        let projections = take("rollout_projections")?.f32();
        let meta = take("rollout_meta")?.u32();

        for (l, u) in unit.chunks_exact(dims.hidden).enumerate() {
            let n = super::stats::norm(u);
            if (n - 1.0).abs() > 1e-3 {
                return Err(bad(
                    &file_of("unit_axis"),
                    format!("layer {l} has norm {n:.6}, not 1"),
                ));
            }
        }
        let mut counts = vec![0u32; dims.roles + 1];
        let rollouts: Vec<RolloutMeta> = meta
            .chunks_exact(4)
            .enumerate()
            .map(|(i, m)| {
                let r = m[0] as usize;
                if r > dims.roles {
                    return Err(bad(
                        &file_of("rollout_meta"),
                        format!("rollout {i} has role index {r} > {}", dims.roles),
                    ));
                }
                counts[r] += 1;
                Ok(RolloutMeta {
                    role: (r < dims.roles).then_some(m[0]),
                    prompt_index: m[1],
                    question_id: m[2],
                    n_tokens: m[3],
                })
            })
            .collect::<Result<_>>()?;
        let listed: Vec<u32> = manifest
            .roles
            .iter()
            .map(|r| r.n_rollouts)
            .chain([manifest.default_rollouts])
            .collect();
        if counts != listed {
            return Err(bad(
                &file_of("rollout_meta"),
                "rollouts per role disagree with the manifest's role counts".into(),
            ));
        }

        let vectors = PersonaVectors {
            n_layers: dims.layers,
            hidden: dims.hidden,
            roles: manifest.roles.iter().map(|r| r.name.clone()).collect(),
            role_rollouts: manifest.roles.iter().map(|r| r.n_rollouts).collect(),
            default_rollouts: manifest.default_rollouts,
            role_vectors: role_vectors_from_offsets(&offsets, &mu_roles),
            default_vector,
            mu_roles,
            axis,
            unit,
            mean_token_norm,
        };
        let stats = ProjectionStats {
            n_layers: dims.layers,
            rollouts,
            projections,
            percentiles,
            raw_percentiles,
        };
        let l = manifest.analysis_layer;
        let (k, h) = (dims.pcs, dims.hidden);
        let stored = |at: usize, i: usize| Pca {
            n_rows: dims.roles,
            dim: h,
            mean: vectors.mu_roles[at * h..(at + 1) * h].to_vec(),
            components: components[i * k * h..(i + 1) * k * h].to_vec(),
            singular_values: singular_values[i * k..(i + 1) * k].to_vec(),
            explained_variance: explained_variance[i * k..(i + 1) * k].to_vec(),
            explained_variance_ratio: explained_variance_ratio[i * k..(i + 1) * k].to_vec(),
            scores: scores[i * dims.roles * k..(i + 1) * dims.roles * k].to_vec(),
        };
        let (layer_pcas, layer_default_pcs) = if dims.version >= 2 {
            (
                (0..dims.layers).map(|at| stored(at, at)).collect(),
                default_pc.chunks_exact(k).map(<[f32]>::to_vec).collect(),
            )
        } else {
            // Version 1 stored the analysis layer's PCA only: the others come from the role
            // vectors, which every version stores at every layer.
            let (mut pcas, mut defaults) = layer_pcas(&vectors, k)?;
            pcas[l] = stored(l, 0);
            defaults[l] = default_pc;
            (pcas, defaults)
        };
        Ok(Self {
            model: manifest.model,
            analysis_layer: l,
            categories: manifest.roles.into_iter().map(|r| r.category).collect(),
            settings: manifest.settings,
            fidelity: manifest.fidelity,
            vectors,
            stats,
            layer_pcas,
            layer_default_pcs,
            role_offsets: offsets,
        })
    }

    /// Total bytes of the arrays (what the bundle costs to download, before the manifest).
    pub fn array_bytes(&self) -> usize {
        self.encode().1.iter().map(Vec::len).sum()
    }
}

fn pad8(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(8), 0);
}

fn parse_manifest(json: &[u8]) -> Result<Manifest> {
    let bad = |msg: String| Error::Bundle {
        file: MANIFEST.into(),
        msg,
    };
    let m: Manifest = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if m.format != FORMAT || !(OLDEST_VERSION..=VERSION).contains(&m.version) {
        return Err(bad(format!(
            "format \"{}\" version {}, expected \"{FORMAT}\" version {OLDEST_VERSION} to {VERSION}",
            m.format, m.version
        )));
    }
    for a in &m.arrays {
        // Only plain names: a manifest must not make us read outside the bundle directory.
        let plain = !a.file.is_empty()
            && a.file != "."
            && a.file != ".."
            && a.file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(bad(format!(
                "array file name {:?} is not a plain file name",
                a.file
            )));
        }
        if a.shape
            .iter()
            .try_fold(a.dtype.size(), |acc, &d| acc.checked_mul(d))
            .is_none_or(|n| n > 1 << 31)
        {
            return Err(bad(format!(
                "array {} has an absurd shape {:?}",
                a.name, a.shape
            )));
        }
    }
    Ok(m)
}

#[derive(Debug)]
struct Dims {
    roles: usize,
    layers: usize,
    hidden: usize,
    pcs: usize,
    rollouts: usize,
    version: u32,
}

/// The PCA (`n_pcs` components, PC1 toward the default) and the default's coordinates at
/// every layer. Each PCA's mean is the stored `mu_roles` row (the mean of the role vectors)
/// so that a bundle read back rebuilds the identical value.
/// Every layer keeps the same number of components (the fewest any layer has), so the
/// arrays stay rectangular.
fn layer_pcas(vectors: &PersonaVectors, n_pcs: usize) -> Result<(Vec<Pca>, Vec<Vec<f32>>)> {
    let h = vectors.hidden;
    let fit = |k: usize| -> Result<Vec<(Pca, Vec<f32>)>> {
        (0..vectors.n_layers)
            .map(|l| {
                let (mut pca, default_pc) = persona_pca(vectors, l, k)?;
                pca.mean = vectors.mu_roles[l * h..(l + 1) * h].to_vec();
                Ok((pca, default_pc))
            })
            .collect()
    };
    let mut all = fit(n_pcs)?;
    let k = all.iter().map(|(p, _)| p.n_components()).min().unwrap_or(0);
    if all.iter().any(|(p, _)| p.n_components() != k) {
        all = fit(k)?;
    }
    Ok(all.into_iter().unzip())
}

/// The dtype and shape each known array must have.
fn expected(name: &str, d: &Dims) -> Option<(Dtype, Vec<usize>)> {
    use Dtype::*;
    Some(match name {
        "role_offsets" => (F16, vec![d.roles, d.layers, d.hidden]),
        "default_vector" | "mu_roles" | "axis" | "unit_axis" => (F32, vec![d.layers, d.hidden]),
        "mean_token_norm" => (F32, vec![d.layers]),
        "projection_percentiles" | "raw_projection_percentiles" => {
            (F32, vec![d.layers, PERCENTILE_STEPS])
        }
        // Version 1: the analysis layer only.
        "pca_components" if d.version < 2 => (F32, vec![d.pcs, d.hidden]),
        "pca_singular_values"
        | "pca_explained_variance"
        | "pca_explained_variance_ratio"
        | "pca_default_coords"
            if d.version < 2 =>
        {
            (F32, vec![d.pcs])
        }
        "pca_role_coords" if d.version < 2 => (F32, vec![d.roles, d.pcs]),
        "pca_components" => (F32, vec![d.layers, d.pcs, d.hidden]),
        "pca_singular_values"
        | "pca_explained_variance"
        | "pca_explained_variance_ratio"
        | "pca_default_coords" => (F32, vec![d.layers, d.pcs]),
        "pca_role_coords" => (F32, vec![d.layers, d.roles, d.pcs]),
        "rollout_projections" => (F16, vec![d.rollouts, d.layers]),
        "rollout_meta" => (U32, vec![d.rollouts, 4]),
        _ => return None,
    })
}

/// An array's values; f16 arrays are held as f32 in memory.
enum Payload {
    F32(Vec<f32>),
    F16(Vec<f32>),
    U32(Vec<u32>),
}

impl Payload {
    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Payload::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Payload::F16(v) => v
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            Payload::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn from_le_bytes(dtype: Dtype, b: &[u8]) -> Self {
        match dtype {
            Dtype::F32 => Payload::F32(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
            ),
            Dtype::F16 => Payload::F16(
                b.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes(c.try_into().expect("2")).to_f32())
                    .collect(),
            ),
            Dtype::U32 => Payload::U32(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
            ),
        }
    }

    fn is_finite(&self) -> bool {
        match self {
            Payload::F32(v) | Payload::F16(v) => v.iter().all(|x| x.is_finite()),
            Payload::U32(_) => true,
        }
    }

    /// The float values; the caller knows the dtype from [`expected`].
    fn f32(self) -> Vec<f32> {
        match self {
            Payload::F32(v) | Payload::F16(v) => v,
            Payload::U32(_) => unreachable!("float array expected"),
        }
    }

    fn u32(self) -> Vec<u32> {
        match self {
            Payload::U32(v) => v,
            _ => unreachable!("u32 array expected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::report::tests::planted;
    use crate::science::vectors::RolloutActivation;

    fn sample(n_roles: usize, n_layers: usize, hidden: usize) -> (Bundle, Vec<RolloutActivation>) {
        let (rollouts, _, names) = planted(n_roles, 4, n_layers, hidden, 3);
        let pv = PersonaVectors::from_rollouts(&rollouts, n_layers, hidden).unwrap();
        let st = ProjectionStats::compute(&pv, &rollouts).unwrap();
        let rep = FidelityReport::compute(&pv, n_layers / 2, Some(&rollouts)).unwrap();
        let model = ModelInfo {
            name: "test-model".into(),
            sha256: "ab".repeat(32),
            n_layers,
            hidden,
        };
        let mut settings = BuildSettings {
            questions: 4,
            prompts_per_role: 2,
            seed: 9,
            ..Default::default()
        };
        settings
            .extra
            .insert("judge".into(), serde_json::json!("none"));
        let cats = names
            .iter()
            .map(|n| {
                if n.ends_with('0') {
                    "fantastical"
                } else {
                    "human"
                }
                .to_string()
            })
            .collect();
        (
            Bundle::new(model, n_layers / 2, cats, settings, Some(rep), pv, st, 4).unwrap(),
            rollouts,
        )
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("axiscope-science-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn blob_and_directory_round_trip_exactly() {
        let (b, rollouts) = sample(6, 3, 16);
        let blob = b.to_blob();
        assert_eq!(blob.len() % 8, 0);
        assert_eq!(Bundle::from_blob(&blob).unwrap(), b);
        let dir = tmpdir("roundtrip");
        b.write_dir(&dir).unwrap();
        let back = Bundle::read_dir(&dir).unwrap();
        assert_eq!(back, b);
        // The directory's files are the blob's arrays byte for byte.
        let f = std::fs::read(dir.join("rollout_meta.u32")).unwrap();
        assert!(blob.windows(f.len()).any(|w| w == f.as_slice()));
        std::fs::remove_dir_all(&dir).unwrap();
        // f16 storage of role vectors (as offsets from mu_roles) costs little precision.
        let pv = PersonaVectors::from_rollouts(&rollouts, 3, 16).unwrap();
        let worst = pv
            .role_vectors
            .iter()
            .zip(&b.vectors.role_vectors)
            .map(|(a, c)| (a - c).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "{worst}");
        // The stored PCA at every layer is the PCA of the stored role vectors, close to that
        // of the unrounded ones.
        for l in 0..3 {
            let (pca, d) = persona_pca(&b.vectors, l, 4).unwrap();
            assert_eq!(b.layer_pcas[l].components, pca.components);
            assert_eq!(b.layer_default_pcs[l], d);
            let (exact, _) = persona_pca(&pv, l, 4).unwrap();
            assert!((b.layer_pcas[l].singular_values[0] - exact.singular_values[0]).abs() < 1e-2);
        }
        assert_eq!(b.pca(), &b.layer_pcas[1]);
    }

    #[test]
    fn corruption_gives_errors_naming_the_file() {
        let (b, _) = sample(4, 2, 8);
        let blob = b.to_blob();
        let msg = |r: Result<Bundle>| r.unwrap_err().to_string();
        // Truncated at various points: never a panic, always an error.
        for cut in [
            0,
            7,
            15,
            16,
            40,
            blob.len() / 2,
            blob.len() - 8,
            blob.len() - 1,
        ] {
            assert!(Bundle::from_blob(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(msg(Bundle::from_blob(&blob[..blob.len() - 8])).contains("rollout_meta.u32"));
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert!(msg(Bundle::from_blob(&bad)).contains("magic"));
        let mut long = blob.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(msg(Bundle::from_blob(&long)).contains("trailing"));

        let dir = tmpdir("corrupt");
        b.write_dir(&dir).unwrap();
        let file = dir.join("axis.f32");
        let full = std::fs::read(&file).unwrap();
        std::fs::write(&file, &full[..full.len() - 4]).unwrap();
        let e = msg(Bundle::read_dir(&dir));
        assert!(e.contains("axis.f32") && e.contains("expected"), "{e}");
        std::fs::write(&file, &full).unwrap();
        // A NaN in an array.
        let file = dir.join("mean_token_norm.f32");
        let mut v = std::fs::read(&file).unwrap();
        v[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&file, &v).unwrap();
        assert!(msg(Bundle::read_dir(&dir)).contains("mean_token_norm.f32"));
        b.write_dir(&dir).unwrap();
        // A unit axis that is not unit.
        let file = dir.join("unit_axis.f32");
        let mut v = std::fs::read(&file).unwrap();
        v[..4].copy_from_slice(&5.0f32.to_le_bytes());
        std::fs::write(&file, &v).unwrap();
        assert!(msg(Bundle::read_dir(&dir)).contains("unit_axis.f32"));
        b.write_dir(&dir).unwrap();
        // Missing file.
        std::fs::remove_file(dir.join("pca_components.f32")).unwrap();
        assert!(msg(Bundle::read_dir(&dir)).contains("pca_components.f32"));
        b.write_dir(&dir).unwrap();
        // Inconsistent manifests.
        let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
            f(&mut m);
            std::fs::write(dir.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
            msg(Bundle::read_dir(&dir))
        };
        assert!(edit(&|m| m["model"]["hidden"] = 9.into()).contains("role_offsets.f16"));
        assert!(edit(&|m| m["analysis_layer"] = 2.into()).contains("analysis layer"));
        assert!(edit(&|m| m["roles"][0]["n_rollouts"] = 1.into()).contains("rollout_meta.u32"));
        assert!(
            edit(&|m| m["arrays"][0]["file"] = "../etc/passwd".into()).contains("plain file name")
        );
        assert!(edit(&|m| m["arrays"][1] = m["arrays"][0].clone()).contains("listed twice"));
        assert!(
            edit(&|m| m["arrays"][1]["name"] = "role_offsets".into())
                .contains("default_vector.f32")
        );
        assert!(edit(&|m| m["version"] = 3.into()).contains("version"));
        // A version 1 manifest over version 2 arrays: the PCA shapes disagree.
        assert!(edit(&|m| m["version"] = 1.into()).contains("pca_components.f32"));
        assert!(
            edit(&|m| {
                m["arrays"].as_array_mut().unwrap().pop();
            })
            .contains("\"rollout_meta\" missing")
        );
        std::fs::write(dir.join(MANIFEST), "{").unwrap();
        assert!(msg(Bundle::read_dir(&dir)).contains("manifest.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_model_size_fits_the_budget() {
        // SmolLM2-135M: 30 layers x 576, 8 PCs at every layer, the default plan's 66 roles x
        // 80 questions plus a 5 x 80 x 4 default = 6880 rollouts.
        // Sizes follow from the dtypes/shapes alone: about 2 R L H + 16 L H + 4 L K H +
        // N (2 L + 16) bytes, so each 1000 rollouts add 76 KB.
        let dims = Dims {
            roles: 66,
            layers: 30,
            hidden: 576,
            pcs: 8,
            rollouts: 6880,
            version: VERSION,
        };
        let names = [
            "role_offsets",
            "default_vector",
            "mu_roles",
            "axis",
            "unit_axis",
            "mean_token_norm",
            "projection_percentiles",
            "raw_projection_percentiles",
            "pca_components",
            "pca_singular_values",
            "pca_explained_variance",
            "pca_explained_variance_ratio",
            "pca_role_coords",
            "pca_default_coords",
            "rollout_projections",
            "rollout_meta",
        ];
        let total: usize = names
            .iter()
            .map(|n| {
                let (dtype, shape) = expected(n, &dims).unwrap();
                shape.iter().product::<usize>() * dtype.size()
            })
            .sum();
        assert!(total < 4_000_000, "{total} bytes");
        // And a real (small) bundle's array bytes match the same arithmetic.
        let (b, _) = sample(4, 2, 8);
        let d = b.dims();
        let want: usize = names
            .iter()
            .map(|n| {
                let (dtype, shape) = expected(n, &d).unwrap();
                shape.iter().product::<usize>() * dtype.size()
            })
            .sum();
        assert_eq!(b.array_bytes(), want);
    }

    #[test]
    fn version_1_bundles_still_read() {
        // A version 1 bundle is this one with the analysis layer's PCA only.
        let (b, _) = sample(5, 3, 16);
        let dir = tmpdir("v1");
        b.write_dir(&dir).unwrap();
        let path = dir.join(MANIFEST);
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        m["version"] = 1.into();
        let l = b.analysis_layer;
        for a in m["arrays"].as_array_mut().unwrap() {
            if !a["name"].as_str().unwrap().starts_with("pca_") {
                continue;
            }
            let file = dir.join(a["file"].as_str().unwrap());
            let bytes = std::fs::read(&file).unwrap();
            let per = bytes.len() / 3;
            std::fs::write(&file, &bytes[l * per..(l + 1) * per]).unwrap();
            let shape = a["shape"].as_array().unwrap()[1..].to_vec();
            a["shape"] = serde_json::Value::Array(shape);
        }
        std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(Bundle::read_dir(&dir).unwrap(), b);
        // A version 1 blob: the same, behind the blob header.
        let json = std::fs::read(&path).unwrap();
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&1u32.to_le_bytes());
        blob.extend_from_slice(&(json.len() as u32).to_le_bytes());
        blob.extend_from_slice(&json);
        pad8(&mut blob);
        for a in m["arrays"].as_array().unwrap() {
            blob.extend_from_slice(&std::fs::read(dir.join(a["file"].as_str().unwrap())).unwrap());
            pad8(&mut blob);
        }
        assert_eq!(Bundle::from_blob(&blob).unwrap(), b);
        blob[8] = 3;
        let e = Bundle::from_blob(&blob).unwrap_err().to_string();
        assert!(e.contains("version 3") && e.contains("newer"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn values_beyond_f16_are_refused() {
        let (b, _) = sample(3, 2, 8);
        let mut pv = b.vectors.clone();
        pv.role_vectors[0] = 1e6;
        let e = Bundle::new(
            b.model.clone(),
            1,
            b.categories.clone(),
            b.settings.clone(),
            None,
            pv,
            b.stats.clone(),
            2,
        );
        assert!(e.unwrap_err().to_string().contains("f16"));
    }

    #[test]
    fn a_bundle_fits_by_shape_then_by_file() {
        let info = ModelInfo {
            name: "m".into(),
            sha256: "AB12".into(),
            n_layers: 30,
            hidden: 576,
        };
        assert_eq!(info.fit(30, 576, Some("ab12")), ModelFit::SameFile);
        assert_eq!(info.fit(30, 576, Some("cd34")), ModelFit::OtherFile);
        assert_eq!(info.fit(30, 576, None), ModelFit::SameShape);
        assert_eq!(info.fit(24, 576, Some("ab12")), ModelFit::Other);
        assert_eq!(info.fit(30, 896, None), ModelFit::Other);
        let unknown = ModelInfo {
            sha256: String::new(),
            ..info
        };
        assert_eq!(unknown.fit(30, 576, Some("ab12")), ModelFit::SameShape);
    }
}
