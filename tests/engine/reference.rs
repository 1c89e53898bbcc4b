//! The CPU engine against llama.cpp, recorded as fixtures by scripts/make_fixtures.py:
//! tokenization id for id, the chat template text and ids, logits, and greedy decoding.

use crate::common;
use axiscope::engine::chat::{Message, Role};
use axiscope::engine::sampler::argmax;
use axiscope::engine::{Backend, GenerateOptions, Hooks, Model, SamplerConfig, Session};
use common::*;

/// How far llama.cpp's own logits move under a one-ulp change of its input embeddings
/// (`noise_floor` in smollm2_residuals.json, max over the recorded runs): activations are
/// quantized to 8 bits before every matmul, and a last-bit change that crosses a rounding
/// boundary changes a whole block. No engine can be held closer to llama.cpp than this.
fn noise_floor() -> (f32, f32) {
    let r = fixture_json("smollm2_residuals.json");
    let runs = r["noise_floor"]["runs"].as_array().unwrap();
    let max = |k: &str| {
        runs.iter()
            .map(|x| x[k].as_f64().unwrap())
            .fold(0.0, f64::max) as f32
    };
    (max("logits_max_abs_diff"), max("logits_mean_abs_diff"))
}

fn messages(v: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn tokenization_matches_llama_cpp() {
    check_tokenization(default_model(), "smollm2");
}

fn check_tokenization(m: &Model, prefix: &str) {
    let fx = fixture_json(&format!("{prefix}_tokenize.json"));
    let mut failures = Vec::new();
    let cases = fx["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = m.tokenizer.encode(text).unwrap();
        if got != ids(&case["ids"]) {
            failures.push(format!(
                "{text:?}: got {got:?}, llama.cpp {:?}",
                ids(&case["ids"])
            ));
        }
        // Decoding what we encoded gives the text back (byte-level BPE is lossless).
        assert_eq!(m.tokenizer.decode(&got), text);
    }
    assert!(
        failures.is_empty(),
        "{} of {} strings differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn chat_template_matches_the_gguf_jinja_template() {
    check_chat_template(default_model(), "smollm2");
}

fn check_chat_template(m: &Model, prefix: &str) {
    let fx = fixture_json(&format!("{prefix}_chat.json"));
    for case in fx["cases"].as_array().unwrap() {
        let msgs = messages(&case["messages"]);
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let r = m.render(&msgs, add).unwrap();
        assert_eq!(
            r.text,
            case["text"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
        assert_eq!(r.ids, ids(&case["ids"]), "case {}", case["name"]);
    }
}

/// Teacher-forces llama.cpp's greedy tokens and compares, at every step, our logits for
/// llama.cpp's top-10 tokens (within the noise floor) and our argmax, which must agree wherever
/// llama.cpp's own top-2 gap is wider than that noise.
#[test]
fn forced_decoding_logits_match_llama_cpp() {
    let m = default_model();
    let fx = fixture_json("smollm2_greedy.json");
    let mut backend = m.cpu_backend(2).unwrap();
    let (tol, _) = noise_floor();
    let mut worst = 0f32;
    let (mut agree, mut total) = (0, 0);
    for case in fx["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        backend.truncate(0);
        let mut logits = backend
            .forward(&prompt, 0, &mut Hooks::none(), false)
            .unwrap();
        for (step, s) in case["steps"].as_array().unwrap().iter().enumerate() {
            for pair in s["top"].as_array().unwrap() {
                let (id, want) = (
                    pair[0].as_u64().unwrap() as usize,
                    pair[1].as_f64().unwrap() as f32,
                );
                let d = (logits[id] - want).abs();
                worst = worst.max(d);
                assert!(
                    d <= tol,
                    "case {} step {step} token {id}: {} vs llama.cpp {want} (noise floor {tol})",
                    case["name"],
                    logits[id]
                );
            }
            let token = s["token"].as_u64().unwrap() as u32;
            total += 1;
            if argmax(&logits) == token {
                agree += 1;
            } else {
                let gap = s["gap"].as_f64().unwrap() as f32;
                assert!(
                    gap < tol,
                    "case {} step {step}: argmax differs although llama.cpp's gap {gap} exceeds its noise {tol}",
                    case["name"]
                );
            }
            logits = backend
                .forward(&[token], prompt.len() + step, &mut Hooks::none(), false)
                .unwrap();
        }
    }
    eprintln!(
        "forced decoding: max |logit diff| {worst:.4} over llama.cpp's top-10 (noise floor {tol:.4}), top-1 agreement {agree}/{total}"
    );
    assert!(
        agree as f64 >= 0.9 * total as f64,
        "top-1 agreement {agree}/{total}"
    );
}

#[test]
fn full_vocabulary_logits_match_llama_cpp() {
    let (tol_max, tol_mean) = noise_floor();
    check_first_logits(default_model(), "smollm2", tol_max, tol_mean);
}

fn check_first_logits(m: &Model, prefix: &str, tol_max: f32, tol_mean: f32) {
    let fx = fixture_json(&format!("{prefix}_greedy.json"));
    let all = fixture_f32(&format!("{prefix}_first_logits.f32"));
    let vocab = m.config.vocab;
    let mut backend = m.cpu_backend(2).unwrap();
    let n_cases = fx["settings"]["first_logits_cases"].as_u64().unwrap() as usize;
    for (case, want) in fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(all.chunks_exact(vocab))
        .take(n_cases)
    {
        backend.truncate(0);
        let got = backend
            .forward(&ids(&case["prompt_ids"]), 0, &mut Hooks::none(), false)
            .unwrap();
        let max = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let mean = (got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / vocab as f64) as f32;
        eprintln!(
            "case {}: max |diff| {max:.4} (noise {tol_max:.4}), mean {mean:.4} (noise {tol_mean:.4})",
            case["name"]
        );
        assert!(
            max <= tol_max && mean <= tol_mean,
            "case {}: max {max}, mean {mean}",
            case["name"]
        );
    }
}

/// Free-running greedy generation through the same `Session` the CLI and the app use, equal to
/// llama.cpp's up to the first step whose top-2 gap is within llama.cpp's own noise floor (the
/// 0.02 of issue 3 is below that floor for this model: see tests/fixtures/README.md).
#[test]
fn greedy_generation_matches_llama_cpp_until_first_near_tie() {
    check_greedy(default_model(), "smollm2", noise_floor().0);
}

/// Greedy tokens equal to llama.cpp's before the first step whose top-2 gap is below `tol`.
fn check_greedy(m: &Model, prefix: &str, tol: f32) {
    let fx = fixture_json(&format!("{prefix}_greedy.json"));
    let mut session = Session::new(Box::new(m.cpu_backend(2).unwrap()));
    let opts = GenerateOptions {
        max_tokens: 48,
        sampler: SamplerConfig::greedy(),
        stop: m.stop_tokens(),
    };
    let (mut compared, mut first_diffs) = (0, Vec::new());
    for case in fx["cases"].as_array().unwrap() {
        let msgs = messages(&case["messages"]);
        let prompt = m.render(&msgs, true).unwrap().ids;
        assert_eq!(prompt, ids(&case["prompt_ids"]));
        session.reset();
        let g = session
            .generate(
                &m.tokenizer,
                &prompt,
                &opts,
                &mut Hooks::none(),
                &mut |_, _| true,
            )
            .unwrap();
        let steps = case["steps"].as_array().unwrap();
        let want: Vec<u32> = steps
            .iter()
            .map(|s| s["token"].as_u64().unwrap() as u32)
            .collect();
        let upto = steps
            .iter()
            .position(|s| s["gap"].as_f64().unwrap() < tol as f64)
            .unwrap_or(want.len());
        assert_eq!(
            g.tokens[..upto.min(g.tokens.len())],
            want[..upto],
            "case {}",
            case["name"]
        );
        compared += upto;
        first_diffs.push(g.tokens.iter().zip(&want).position(|(a, b)| a != b));
    }
    eprintln!(
        "greedy: {compared} tokens compared before llama.cpp's first noise-level tie; first differing step per case {first_diffs:?}"
    );
}

/// Each stage against llama.cpp's own tensors for one prompt (smollm2_residuals.*), started
/// from llama.cpp's input to that stage, so a rounding flip upstream cannot hide a bug here.
mod per_layer {
    use super::*;
    use axiscope::engine::CpuModel;

    struct Residuals {
        manifest: serde_json::Value,
        /// Each data file's values, by file name.
        data: std::collections::HashMap<String, Vec<f32>>,
    }

    impl Residuals {
        fn load() -> Self {
            let manifest = fixture_json("smollm2_residuals.json");
            let data = manifest["data_files"].as_array().unwrap().iter().map(|f| {
                let f = f.as_str().unwrap();
                (f.to_string(), fixture_f32(f))
            });
            Self {
                data: data.collect(),
                manifest,
            }
        }

        /// The tensor `key` as stored (`[tokens][features]`), with the token positions it covers.
        fn get(&self, key: &str) -> (&[f32], Vec<usize>) {
            let t = self.manifest["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == key)
                .unwrap_or_else(|| panic!("no tensor {key}"));
            let (off, count) = (
                t["offset"].as_u64().unwrap() as usize / 4,
                t["count"].as_u64().unwrap() as usize,
            );
            let n_prompt = ids(&self.manifest["prompt"]["prompt_ids"]).len();
            let tokens = match &t["tokens"] {
                serde_json::Value::Array(a) => {
                    a.iter().map(|v| v.as_u64().unwrap() as usize).collect()
                }
                _ => (0..n_prompt).collect(),
            };
            (
                &self.data[t["file"].as_str().unwrap()][off..off + count],
                tokens,
            )
        }
    }

    fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
        let num: f64 = got
            .iter()
            .zip(want)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    fn fresh() -> CpuModel {
        default_model().cpu_backend(1).unwrap()
    }

    #[test]
    fn embeddings_equal_llama_cpp() {
        let r = Residuals::load();
        let prompt = ids(&r.manifest["prompt"]["prompt_ids"]);
        assert_eq!(fresh().embed(&prompt), r.get("embd").0);
    }

    /// One decoder block from llama.cpp's residual before it. The bound is the change one ulp of
    /// input noise causes in llama.cpp's own layer-0 output (noise_floor, ~2.5e-3): any real
    /// error in a block (a wrong rotation, scale or mask) is orders of magnitude larger.
    #[test]
    fn each_block_from_llama_cpp_input_matches_its_output() {
        let r = Residuals::load();
        let d = default_model().config.hidden;
        let runs = r.manifest["noise_floor"]["runs"].as_array().unwrap();
        let tol = runs
            .iter()
            .map(|x| x["l_out_rel_l2_last_token"][0].as_f64().unwrap())
            .fold(0.0, f64::max);
        for (block, input) in [
            (0usize, "embd"),
            (1, "l_out-0"),
            (15, "l_out-14"),
            (29, "l_out-28"),
        ] {
            let (x_in, toks) = r.get(input);
            assert_eq!(toks.len(), x_in.len() / d, "{input} must cover every token");
            let mut x = x_in.to_vec();
            let mut model = fresh();
            model.run_blocks(&mut x, 0, block..block + 1, &mut Hooks::none());
            let (want, want_toks) = r.get(&format!("l_out-{block}"));
            let got: Vec<f32> = want_toks
                .iter()
                .flat_map(|&t| x[t * d..(t + 1) * d].to_vec())
                .collect();
            let err = rel_l2(&got, want);
            eprintln!("block {block}: relative L2 error {err:.2e} (bound {tol:.2e})");
            assert!(err <= tol, "block {block}: {err}");
        }
    }

    #[test]
    fn output_head_matches_llama_cpp() {
        let r = Residuals::load();
        let d = default_model().config.hidden;
        let (l29, _) = r.get("l_out-29");
        let last = &l29[l29.len() - d..];
        let got = fresh().head(last);
        let err = rel_l2(&got, r.get("result_output").0);
        eprintln!("output head: relative L2 error {err:.2e}");
        assert!(err < 1e-5, "head: {err}");
    }
}

#[test]
fn session_reuses_the_cache_for_a_growing_chat() {
    let m = default_model();
    let mut session = Session::new(Box::new(m.cpu_backend(1).unwrap()));
    let mut msgs = vec![Message::new(Role::User, "Hi!")];
    let first = m.render(&msgs, true).unwrap().ids;
    let (l1, ran1) = session.prefill(&first, &mut Hooks::none()).unwrap();
    assert_eq!(ran1, first.len());
    msgs.push(Message::new(Role::Assistant, "Hello! How can I help?"));
    msgs.push(Message::new(Role::User, "Tell me a joke."));
    let second = m.render(&msgs, true).unwrap().ids;
    let (l2, ran2) = session.prefill(&second, &mut Hooks::none()).unwrap();
    assert_eq!(ran2, second.len() - first.len(), "only the new turn runs");
    // The same prompt from scratch gives the same logits as the incremental run.
    let mut fresh = m.cpu_backend(1).unwrap();
    let l2_fresh = fresh
        .forward(&second, 0, &mut Hooks::none(), false)
        .unwrap();
    let max = l2
        .iter()
        .zip(&l2_fresh)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-3, "incremental vs fresh logits differ by {max}");
    assert_ne!(l1, l2);
}

/// A real model too large to commit, held to its committed `PREFIX_*` fixtures. Opt-in: without
/// the file (its fetch script gets it) each test prints why it skipped and passes.
macro_rules! opt_in_model {
    ($name:ident, $file:literal, $fetch:literal, $prefix:literal, $tol:expr) => {
        mod $name {
            use super::*;
            use std::sync::OnceLock;

            fn model() -> Option<&'static Model> {
                static M: OnceLock<Option<Model>> = OnceLock::new();
                let path = root().join($file);
                let m = M.get_or_init(|| {
                    let bytes = std::fs::read(&path).ok()?;
                    Some(Model::from_bytes(bytes).expect(concat!($file, " loads")))
                });
                if m.is_none() {
                    eprintln!(
                        "skipped: {} is absent ({} fetches it)",
                        path.display(),
                        $fetch
                    );
                }
                m.as_ref()
            }

            #[test]
            fn tokenization_matches_llama_cpp() {
                if let Some(m) = model() {
                    check_tokenization(m, $prefix);
                }
            }

            #[test]
            fn chat_template_matches_the_reference_rendering() {
                if let Some(m) = model() {
                    check_chat_template(m, $prefix);
                }
            }

            #[test]
            fn full_vocabulary_logits_match_llama_cpp() {
                if let Some(m) = model() {
                    let (max, mean) = $tol;
                    check_first_logits(m, $prefix, max, mean);
                }
            }

            #[test]
            fn greedy_generation_matches_llama_cpp_until_first_near_tie() {
                if let Some(m) = model() {
                    check_greedy(m, $prefix, $tol.0);
                }
            }
        }
    };
}

// Qwen2.5-Coder-0.5B-Instruct (qwen2, K-quants, q/k/v biases). llama.cpp's own noise floor is
// not recorded for this model (for SmolLM2 it is 1.48 max, 0.64 mean); measured here: max 0.35,
// mean 0.054 (case "capital"). A wrong rotation, bias or scale moves logits by units.
opt_in_model!(
    qwen25,
    "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "scripts/fetch_qwen.sh",
    "qwen25",
    (0.5, 0.1)
);

// Gemma 3 270M (gemma3, SentencePiece vocabulary of 262,144 pieces, a base model without a chat
// template: the fixtures render with llama.cpp's built-in Gemma template). Its 18 layers with
// 8-bit activations make llama.cpp itself move by up to 1.42 (mean 0.63) between evaluating a
// prompt at once and token by token (gemma3_270m_variation.json, six prompts, 0.88 to 1.42 by
// prompt); the tolerance is 1.25 times that, as one more draw of the same rounding noise may
// exceed the largest of six. Measured: max 1.46, mean 0.63 on case "capital"; top-10 logits at
// the first step of each case within 0.22 to 1.33.
opt_in_model!(
    gemma3_270m,
    "models/gemma-3-270m-q4_k_m.gguf",
    "scripts/fetch_gemma.sh",
    "gemma3_270m",
    variation_tolerance("gemma3_270m", 1.25)
);

/// `factor` times the largest of llama.cpp's own batched-versus-sequential logit differences
/// (max and mean) recorded by scripts/measure_llamacpp_variation.py.
fn variation_tolerance(prefix: &str, factor: f32) -> (f32, f32) {
    let v = fixture_json(&format!("{prefix}_variation.json"));
    let worst = |k: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[k].as_f64().unwrap() as f32)
            .fold(0.0, f32::max)
    };
    (
        factor * worst("max_abs_diff"),
        factor * worst("mean_abs_diff"),
    )
}
