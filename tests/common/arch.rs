//! The small random-weight model of each architecture (tests/fixtures/arch/NAME.gguf, written
//! with gguf-py by scripts/make_arch_fixtures.py, which also recorded llama.cpp's outputs in
//! NAME.json) and the checks every backend runs against them: tokenization id for id, the full
//! last-token logits of each prompt, llama.cpp's top-10 logits while teacher-forcing its greedy
//! tokens, and free-running greedy generation up to the first near tie. The CPU engine
//! (tests/engine/arch_reference.rs) and the GPU backend (tests/gpu/arch.rs) state their own
//! tolerances.

use super::ids;
use axiscope::engine::sampler::argmax;
use axiscope::engine::{Backend, GenerateOptions, Hooks, Model, SamplerConfig, Session};

pub struct Fixture {
    pub model: Model,
    pub json: serde_json::Value,
}

/// Each fixture's model and llama.cpp record, compiled in (a wasm test has no file system).
pub fn fixture(name: &str) -> Fixture {
    macro_rules! files {
        ($($n:literal),*) => {
            match name {
                $($n => (
                    &include_bytes!(concat!("../fixtures/arch/", $n, ".gguf"))[..],
                    include_str!(concat!("../fixtures/arch/", $n, ".json")),
                ),)*
                _ => panic!("no fixture {name}"),
            }
        };
    }
    let (bytes, json) = files!("llama3", "qwen2", "qwen3", "gemma3");
    Fixture {
        model: Model::from_bytes(bytes.to_vec()).unwrap(),
        json: serde_json::from_str(json).unwrap(),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check_tokenization(f: &Fixture) {
    for case in f.json["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = f.model.tokenizer.encode(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
        assert_eq!(f.model.tokenizer.decode(&got), text);
    }
}

/// The prompt's last-token logits in full, then llama.cpp's greedy tokens fed back one at a
/// time with its top-10 logits compared at each step. Returns the worst difference.
fn check_logits(f: &Fixture, backend: &mut dyn Backend, tol: f32) -> (f32, usize, usize) {
    let (mut worst, mut exact, mut total) = (0f32, 0, 0);
    for case in f.json["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        backend.truncate(0);
        let mut logits = backend
            .forward(&prompt, 0, &mut Hooks::none(), false)
            .unwrap();
        let d = max_abs_diff(&logits, &floats(&case["last_logits"]));
        assert!(
            d <= tol,
            "{:?}: last-token logits differ by {d}",
            case["prompt"]
        );
        worst = worst.max(d);
        for (step, s) in case["steps"].as_array().unwrap().iter().enumerate() {
            let mut step_worst = 0f32;
            for pair in s["top"].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let d = (logits[id] - pair[1].as_f64().unwrap() as f32).abs();
                assert!(d <= tol, "{:?} step {step} token {id}: {d}", case["prompt"]);
                step_worst = step_worst.max(d);
            }
            worst = worst.max(step_worst);
            total += 1;
            exact += usize::from(step_worst == 0.0);
            let token = s["token"].as_u64().unwrap() as u32;
            if s["gap"].as_f64().unwrap() as f32 >= tol {
                assert_eq!(argmax(&logits), token, "{:?} step {step}", case["prompt"]);
            }
            logits = backend
                .forward(&[token], prompt.len() + step, &mut Hooks::none(), false)
                .unwrap();
        }
    }
    (worst, exact, total)
}

/// Free-running greedy decoding through `Session`, equal to llama.cpp's tokens up to the first
/// step whose top-2 gap is below `near_tie` (at least `settings.near_tie`, 0.02, llama.cpp's
/// recorded rule; a backend whose logits sit further from llama.cpp's states a wider one: a correct
/// engine may take either token there).
/// Returns the number of tokens compared.
fn check_greedy(f: &Fixture, backend: Box<dyn Backend>, near_tie: f32) -> usize {
    let near_tie = f.json["settings"]["near_tie"]
        .as_f64()
        .unwrap()
        .max(near_tie as f64);
    let mut session = Session::new(backend);
    let mut compared = 0;
    for case in f.json["cases"].as_array().unwrap() {
        let steps = case["steps"].as_array().unwrap();
        let opts = GenerateOptions {
            max_tokens: steps.len(),
            sampler: SamplerConfig::greedy(),
            stop: Vec::new(),
        };
        session.reset();
        let g = session
            .generate(
                &f.model.tokenizer,
                &ids(&case["prompt_ids"]),
                &opts,
                &mut Hooks::none(),
                &mut |_, _| true,
            )
            .unwrap();
        let want: Vec<u32> = steps
            .iter()
            .map(|s| s["token"].as_u64().unwrap() as u32)
            .collect();
        let upto = steps
            .iter()
            .position(|s| s["gap"].as_f64().unwrap() < near_tie)
            .unwrap_or(want.len());
        assert_eq!(g.tokens[..upto], want[..upto], "{:?}", case["prompt"]);
        compared += upto;
    }
    compared
}

/// How far a backend's logits may sit from llama.cpp's, and the top-2 gap below which either
/// token may be its greedy pick.
#[derive(Clone, Copy)]
pub struct Tolerance {
    pub logits: f32,
    pub near_tie: f32,
}

/// Tokenization, logits within `tol` of llama.cpp's and greedy tokens up to the first near
/// tie, on backends `make` builds from the fixture's model (`who` names them in the report).
pub fn check_architecture(
    name: &str,
    arch: &str,
    who: &str,
    make: &mut dyn FnMut(&Model) -> Box<dyn Backend>,
    tol: Tolerance,
) {
    let f = fixture(name);
    assert_eq!(f.json["settings"]["architecture"], arch);
    check_tokenization(&f);
    let (worst, exact, steps) = check_logits(&f, make(&f.model).as_mut(), tol.logits);
    let compared = check_greedy(&f, make(&f.model), tol.near_tie);
    eprintln!(
        "{name} on {who}: max |logit diff| {worst:.3} (tolerance {}), top-10 logits bit-exact at {exact}/{steps} forced steps, {compared} greedy tokens equal to llama.cpp's",
        tol.logits
    );
}

/// The llama3 fixture's model with its rope factors overwritten by 1.0 (the bug of issue 16:
/// the tensor was ignored), and the largest |difference| of its last-token logits from
/// llama.cpp's over the prompts, on a backend `make` builds: a check must see this.
pub fn llama3_without_rope_factors(make: &mut dyn FnMut(&Model) -> Box<dyn Backend>) -> f32 {
    let f = fixture("llama3");
    let t = f.model.gguf.tensor("rope_freqs.weight").unwrap().clone();
    let mut bytes = f.model.gguf.bytes().to_vec();
    for c in bytes[t.offset..t.offset + t.len].chunks_exact_mut(4) {
        c.copy_from_slice(&1f32.to_le_bytes());
    }
    let plain = Model::from_bytes(bytes).unwrap();
    let mut backend = make(&plain);
    let mut worst = 0f32;
    for case in f.json["cases"].as_array().unwrap() {
        backend.truncate(0);
        let logits = backend
            .forward(&ids(&case["prompt_ids"]), 0, &mut Hooks::none(), false)
            .unwrap();
        worst = worst.max(max_abs_diff(&logits, &floats(&case["last_logits"])));
    }
    worst
}
