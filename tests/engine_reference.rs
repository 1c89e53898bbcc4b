//! The CPU engine against llama.cpp, recorded as fixtures by scripts/make_fixtures.py:
//! tokenization id for id, the chat template text and ids, logits, and greedy decoding.

mod common;
use axiscope::engine::chat::{Message, Role};
use axiscope::engine::sampler::argmax;
use axiscope::engine::{Backend, GenerateOptions, Hooks, SamplerConfig, Session};
use common::*;

/// Our logits may differ from llama.cpp's by summation order and transcendental functions
/// only; measured max |diff| over the top-10 logits is ~1e-3 (logits are ~20 in size).
const LOGIT_TOL: f32 = 0.02;

fn messages(v: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn tokenization_matches_llama_cpp() {
    let m = default_model();
    let fx = fixture_json("smollm2_tokenize.json");
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
    let m = default_model();
    let fx = fixture_json("smollm2_chat.json");
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
/// llama.cpp's top-10 tokens and our argmax (which must agree before the first near-tie).
#[test]
fn forced_decoding_logits_match_llama_cpp() {
    let m = default_model();
    let fx = fixture_json("smollm2_greedy.json");
    let mut backend = m.cpu_backend(2).unwrap();
    let mut worst = 0f32;
    let (mut agree, mut total) = (0, 0);
    for case in fx["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let near_tie = case["first_near_tie_step"].as_u64().map(|s| s as usize);
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
                    d < LOGIT_TOL,
                    "case {} step {step} token {id}: {} vs llama.cpp {want}",
                    case["name"],
                    logits[id]
                );
            }
            let token = s["token"].as_u64().unwrap() as u32;
            total += 1;
            if argmax(&logits) == token {
                agree += 1;
            } else {
                assert!(
                    near_tie.is_some_and(|t| step >= t),
                    "case {} step {step}: argmax differs before the first near-tie",
                    case["name"]
                );
            }
            let pos = prompt.len() + step;
            logits = backend
                .forward(&[token], pos, &mut Hooks::none(), false)
                .unwrap();
        }
    }
    eprintln!(
        "forced decoding: max |logit diff| {worst:.5} over top-10, argmax agreement {agree}/{total}"
    );
    assert!(agree as f64 >= 0.98 * total as f64);
}

#[test]
fn full_vocabulary_logits_match_llama_cpp() {
    let m = default_model();
    let fx = fixture_json("smollm2_greedy.json");
    let all = fixture_f32("smollm2_first_logits.f32");
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
        let mean = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / vocab as f64;
        eprintln!("case {}: max |diff| {max:.5}, mean {mean:.6}", case["name"]);
        assert!(
            max < LOGIT_TOL,
            "case {}: max |logit diff| {max}",
            case["name"]
        );
    }
}

/// Free-running greedy generation through the same `Session` the CLI and the app use.
#[test]
fn greedy_generation_matches_llama_cpp_until_first_near_tie() {
    let m = default_model();
    let fx = fixture_json("smollm2_greedy.json");
    let mut session = Session::new(Box::new(m.cpu_backend(2).unwrap()));
    let opts = GenerateOptions {
        max_tokens: 48,
        sampler: SamplerConfig::greedy(),
        stop: m.stop_tokens(),
    };
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
        let want: Vec<u32> = case["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["token"].as_u64().unwrap() as u32)
            .collect();
        let upto = case["first_near_tie_step"]
            .as_u64()
            .map_or(want.len(), |s| s as usize);
        assert_eq!(
            g.tokens[..upto.min(g.tokens.len())],
            want[..upto.min(want.len())],
            "case {}",
            case["name"]
        );
        assert!(
            g.tokens.len() >= upto.min(want.len()),
            "case {}: stopped early",
            case["name"]
        );
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
