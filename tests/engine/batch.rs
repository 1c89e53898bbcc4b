//! Batched decoding on the real model (SmolLM2-135M): several sequences, each with its own KV
//! cache, position and hooks, advance in one forward pass, and each gets exactly (bit for bit)
//! what it gets alone: the matmuls read every weight row once for all rows, but a row's
//! arithmetic never depends on the other rows. Bad steps refuse the batch before any work.

use crate::common;
use axiscope::engine::backend::{BatchStep, forward_batch};
use axiscope::engine::{Backend, CpuModel, Edit, EditOp, Error, Hooks, ModelConfig, OnToken};
use common::*;
use std::time::Duration;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0 as u32
}

fn prompt(text: &str) -> Vec<u32> {
    default_model().tokenizer.encode(text).unwrap()
}

/// Edits on every layer from 10 on: a clamp that bites and an add (a capped, steered sequence).
fn edits(cfg: &ModelConfig) -> Vec<Edit> {
    let d = cfg.hidden;
    let unit: Vec<f32> = (0..d).map(|i| if i % 7 == 0 { 0.3 } else { 0.0 }).collect();
    let norm = unit.iter().map(|u| u * u).sum::<f32>().sqrt();
    let unit: Vec<f32> = unit.iter().map(|u| u / norm).collect();
    let add: Vec<f32> = (0..d).map(|i| ((i % 13) as f32 - 6.0) * 0.05).collect();
    (10..cfg.n_layers)
        .flat_map(|l| {
            [
                Edit {
                    layer: l,
                    op: EditOp::Clamp {
                        unit: unit.clone(),
                        min: Some(2.0),
                        max: None,
                    },
                },
                Edit {
                    layer: l,
                    op: EditOp::Add {
                        vector: add.clone(),
                    },
                },
            ]
        })
        .collect()
}

/// A sequence under test: its history (already cached before the batch), what it runs in
/// the batch, and its hooks.
struct Case {
    history: Vec<u32>,
    run: Vec<u32>,
    hooks: Hooks,
    all_logits: bool,
}

/// Sequences at different positions, running different numbers of tokens (a prefill, a
/// one-token step, a chunk on top of a cache), one recording with edits, one with every
/// row's logits.
fn cases() -> Vec<Case> {
    let m = default_model();
    let a = prompt("The capital of France is");
    let b = prompt("Once upon a time, in a land far away, there lived a dragon who");
    let c = prompt("fn main() { println!(\"hello\"); }");
    let mut edited = Hooks::recording(vec![0, 11, 29]);
    edited.edits = edits(&m.config);
    vec![
        Case {
            history: vec![],
            run: a,
            hooks: Hooks::recording(vec![3, 29]),
            all_logits: false,
        },
        Case {
            history: b[..b.len() - 1].to_vec(),
            run: b[b.len() - 1..].to_vec(),
            hooks: edited,
            all_logits: false,
        },
        Case {
            history: c[..4].to_vec(),
            run: c[4..].to_vec(),
            hooks: Hooks::none(),
            all_logits: true,
        },
    ]
}

/// Each case's history, prefilled on its own sequence (from `first`'s load).
fn sequences(first: CpuModel, cases: &[Case]) -> Vec<CpuModel> {
    let mut seqs: Vec<CpuModel> = cases.iter().skip(1).map(|_| first.fork()).collect();
    seqs.insert(0, first);
    for (s, c) in seqs.iter_mut().zip(cases) {
        if !c.history.is_empty() {
            s.forward(&c.history, 0, &mut Hooks::none(), false).unwrap();
        }
    }
    seqs
}

fn run_batched(seqs: &mut [CpuModel], cases: &mut [Case]) -> Result<Vec<Vec<f32>>, Error> {
    let mut steps: Vec<BatchStep> = seqs
        .iter_mut()
        .zip(cases.iter_mut())
        .map(|(s, c)| BatchStep {
            pos: c.history.len(),
            backend: s,
            tokens: &c.run,
            hooks: &mut c.hooks,
            all_logits: c.all_logits,
        })
        .collect();
    forward_batch(&mut steps)
}

#[test]
fn each_sequence_of_a_batch_gets_its_own_logits_and_recordings_bit_for_bit() {
    let m = default_model();
    let mut batched = cases();
    let mut seqs = sequences(m.cpu_backend(1).unwrap(), &batched);
    let got = run_batched(&mut seqs, &mut batched).unwrap();
    let mut alone = cases();
    for (i, c) in alone.iter_mut().enumerate() {
        let mut b = m.cpu_backend(1).unwrap();
        if !c.history.is_empty() {
            b.forward(&c.history, 0, &mut Hooks::none(), false).unwrap();
        }
        let want = b
            .forward(&c.run, c.history.len(), &mut c.hooks, c.all_logits)
            .unwrap();
        assert_eq!(got[i].len(), want.len(), "sequence {i}");
        assert!(bits(&got[i]) == bits(&want), "sequence {i}: logits differ");
        let (r, w) = (&batched[i].hooks.recording, &c.hooks.recording);
        assert_eq!((&r.layers, r.n_tokens()), (&w.layers, w.n_tokens()));
        assert!(
            bits(&r.data) == bits(&w.data),
            "sequence {i}: recording differs"
        );
        assert_eq!(seqs[i].cached(), c.history.len() + c.run.len());
    }
    // The check can fail: the edits change the edited sequence's logits.
    let plain = {
        let mut b = m.cpu_backend(1).unwrap();
        b.forward(&alone[1].history, 0, &mut Hooks::none(), false)
            .unwrap();
        b.forward(
            &alone[1].run,
            alone[1].history.len(),
            &mut Hooks::none(),
            false,
        )
        .unwrap()
    };
    let moved = plain
        .iter()
        .zip(&got[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 0.1, "edits moved the logits by only {moved}");
    assert_eq!(got[2].len(), batched[2].run.len() * m.config.vocab);
}

/// The CPU engine's threads (a spinning pool: the matmuls' rows and attention's heads split
/// among them) change no bit: a batch with a prefill, a one-token step with edits and a chunk
/// with every row's logits, on 1, 2 and 3 threads (more threads than this machine's cores too).
#[test]
fn threads_split_the_work_without_changing_a_bit() {
    let m = default_model();
    let run = |threads: usize| {
        let mut cs = cases();
        let mut seqs = sequences(m.cpu_backend(threads).unwrap(), &cs);
        let logits = run_batched(&mut seqs, &mut cs).unwrap();
        let recorded: Vec<Vec<u32>> = cs.iter().map(|c| bits(&c.hooks.recording.data)).collect();
        (logits.iter().map(|l| bits(l)).collect::<Vec<_>>(), recorded)
    };
    let one = run(1);
    assert!(one.1.iter().any(|r| !r.is_empty()), "nothing was recorded");
    for threads in [2, 3] {
        let got = run(threads);
        assert!(got.0 == one.0, "{threads} threads: logits differ");
        assert!(got.1 == one.1, "{threads} threads: recordings differ");
    }
}

/// Greedy decoding of three sequences together, one finishing after three tokens: every
/// sequence's tokens and logits are those it decodes alone, and the batch shrinks cleanly.
#[test]
fn greedy_batch_decodes_each_sequence_as_alone_one_finishing_early() {
    let m = default_model();
    let prompts = [
        prompt("The best thing about the sea is"),
        prompt("List three colours:"),
        prompt("Question: what is two plus two? Answer:"),
    ];
    let lengths = [10usize, 3, 10];
    // Two threads: the batched matmul splits its rows across them, with the same bits.
    let first = m.cpu_backend(2).unwrap();
    let mut seqs: Vec<CpuModel> = vec![first.fork(), first.fork()];
    seqs.insert(0, first);
    let mut tokens: Vec<Vec<u32>> = prompts.to_vec();
    let mut logits: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
    let mut hooks: Vec<Hooks> = (0..3).map(|_| Hooks::none()).collect();
    let mut pos = [0usize; 3];
    for step in 0..10 {
        let live: Vec<usize> = (0..3).filter(|&i| step < lengths[i]).collect();
        let inputs: Vec<Vec<u32>> = live
            .iter()
            .map(|&i| {
                if step == 0 {
                    tokens[i].clone()
                } else {
                    vec![*tokens[i].last().unwrap()]
                }
            })
            .collect();
        let mut steps: Vec<BatchStep> = Vec::new();
        for ((i, s), h) in seqs.iter_mut().enumerate().zip(hooks.iter_mut()) {
            if let Some(k) = live.iter().position(|&l| l == i) {
                steps.push(BatchStep {
                    backend: s,
                    tokens: &inputs[k],
                    pos: pos[i],
                    hooks: h,
                    all_logits: false,
                });
            }
        }
        let out = forward_batch(&mut steps).unwrap();
        for (k, &i) in live.iter().enumerate() {
            pos[i] += inputs[k].len();
            tokens[i].push(argmax(&out[k]));
            logits[i].push(out[k].clone());
        }
    }
    assert_eq!(seqs[1].cached(), prompts[1].len() + 2);
    for i in 0..3 {
        let mut b = m.cpu_backend(1).unwrap();
        let mut ids = prompts[i].clone();
        let mut l = b.forward(&ids, 0, &mut Hooks::none(), false).unwrap();
        for step in 0..lengths[i] {
            assert!(
                bits(&l) == bits(&logits[i][step]),
                "sequence {i} step {step}"
            );
            ids.push(argmax(&l));
            if step + 1 < lengths[i] {
                l = b
                    .forward(
                        &ids[ids.len() - 1..],
                        ids.len() - 1,
                        &mut Hooks::none(),
                        false,
                    )
                    .unwrap();
            }
        }
        assert_eq!(ids, tokens[i], "sequence {i}");
    }
}

/// A step past the context or with a token outside the vocabulary refuses the whole batch,
/// naming the sequence, before anything runs: no cache moves, and the same batch without the
/// bad step then gives what each sequence gives alone.
#[test]
fn a_bad_step_refuses_the_batch_before_any_work() {
    let m = default_model();
    let ctx = m.config.context;
    for bad in ["context", "token", "position"] {
        let mut cs = cases();
        let mut seqs = sequences(m.cpu_backend(1).unwrap(), &cs);
        let before: Vec<usize> = seqs.iter().map(|s| s.cached()).collect();
        let mut broken = Case {
            history: vec![],
            run: vec![1; 4],
            hooks: Hooks::recording(vec![0]),
            all_logits: false,
        };
        match bad {
            "context" => broken.run = vec![1; ctx + 1],
            "token" => broken.run[2] = m.config.vocab as u32,
            _ => {}
        }
        let extra = m.cpu_backend(1).unwrap();
        if bad == "position" {
            broken.history = vec![1; 3]; // claims 3 cached tokens; the sequence has none
        }
        // The bad sequence goes in the middle: the first must not have run either.
        seqs.insert(1, extra);
        cs.insert(1, broken);
        let err = run_batched(&mut seqs, &mut cs).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::InBatch { seq: 1, .. })
                && msg.starts_with("sequence 1 of the batch"),
            "{bad}: {msg}"
        );
        let expect = match bad {
            "context" => "context holds",
            "token" => "outside the vocabulary",
            _ => "past the 0 cached tokens",
        };
        assert!(msg.contains(expect), "{bad}: {msg}");
        let after: Vec<usize> = seqs.iter().map(|s| s.cached()).collect();
        assert_eq!(after[0], before[0]);
        assert_eq!(after[2..], before[1..]);
        assert!(cs.iter().all(|c| c.hooks.recording.data.is_empty()));
        seqs.remove(1);
        cs.remove(1);
        let got = run_batched(&mut seqs, &mut cs).unwrap();
        for (i, c) in cases().iter_mut().enumerate() {
            let mut b = m.cpu_backend(1).unwrap();
            if !c.history.is_empty() {
                b.forward(&c.history, 0, &mut Hooks::none(), false).unwrap();
            }
            let want = b
                .forward(&c.run, c.history.len(), &mut c.hooks, c.all_logits)
                .unwrap();
            assert!(
                bits(&got[i]) == bits(&want),
                "{bad}: sequence {i} after the refusal"
            );
        }
    }
}

/// A CPU sequence seen only through the `Backend` trait, so it does not batch (as the GPU
/// backend): it runs its own calls only, each after a wait of `.1` (none: `Duration::ZERO`;
/// `speed.rs` uses it as a slow backend).
pub(crate) struct Unbatched(pub(crate) CpuModel, pub(crate) Duration);

impl Backend for Unbatched {
    fn config(&self) -> &ModelConfig {
        self.0.config()
    }
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> axiscope::engine::Result<Vec<f32>> {
        std::thread::sleep(self.1);
        self.0.forward(tokens, pos, hooks, all_logits)
    }
    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
    fn cached(&self) -> usize {
        self.0.cached()
    }
    fn describe(&self) -> String {
        "unbatched".into()
    }
}

/// Backends that do not batch, and CPU sequences of different loads, run one after another
/// with the same results as batched.
#[test]
fn mixed_or_unbatched_sequences_run_one_after_another_with_the_same_results() {
    let m = default_model();
    let mut batched = cases();
    let mut seqs = sequences(m.cpu_backend(1).unwrap(), &batched);
    let want = run_batched(&mut seqs, &mut batched).unwrap();
    let mut cs = cases();
    let mut a = Unbatched(m.cpu_backend(1).unwrap(), Duration::ZERO);
    let mut b = m.cpu_backend(1).unwrap();
    let mut c = m.cpu_backend(1).unwrap();
    let backends: [&mut dyn Backend; 3] = [&mut a, &mut b, &mut c];
    let mut steps = Vec::new();
    for (be, case) in backends.into_iter().zip(cs.iter_mut()) {
        if !case.history.is_empty() {
            be.forward(&case.history, 0, &mut Hooks::none(), false)
                .unwrap();
        }
        steps.push(BatchStep {
            pos: case.history.len(),
            backend: be,
            tokens: &case.run,
            hooks: &mut case.hooks,
            all_logits: case.all_logits,
        });
    }
    let got = forward_batch(&mut steps).unwrap();
    drop(steps);
    for i in 0..3 {
        assert!(bits(&got[i]) == bits(&want[i]), "sequence {i}");
        assert!(bits(&cs[i].hooks.recording.data) == bits(&batched[i].hooks.recording.data));
    }
}

/// Replies generated together (`generate_batch_async`: the page's default and capped branches)
/// are the replies `Session::generate` gives each alone, with sampling, edits on one of them
/// and a recording on both: same tokens, same streamed pieces, same residuals, bit for bit;
/// the sequence that stops early (Stop after 5 tokens) stops alone.
#[test]
fn sequences_generated_together_reply_as_alone() {
    use axiscope::engine::backend::now_or_err;
    use axiscope::engine::generate::{GenerateStep, generate_batch_async};
    use axiscope::engine::{GenerateOptions, SamplerConfig, Session};
    let m = default_model();
    let opts = GenerateOptions {
        max_tokens: 24,
        sampler: SamplerConfig {
            temperature: 0.7,
            top_p: 0.9,
            repeat_penalty: 1.1,
            seed: 11,
            ..SamplerConfig::default()
        },
        stop: m.stop_tokens(),
    };
    let prompts = [
        prompt("Tell me about yourself."),
        prompt("Tell me about yourself."),
        prompt("Once upon a time, in a small village by the sea,"),
    ];
    let limits = [usize::MAX, usize::MAX, 5];
    let hooks_for = |k: usize| {
        let mut h = Hooks::recording(vec![3, 20]);
        if k == 1 {
            h.edits = edits(&m.config);
        }
        h
    };
    let alone: Vec<(Vec<u32>, Vec<String>, Vec<u32>)> = (0..3)
        .map(|k| {
            let mut s = Session::new(Box::new(m.cpu_backend(1).unwrap()));
            let mut h = hooks_for(k);
            let mut pieces = Vec::new();
            let g = s
                .generate(&m.tokenizer, &prompts[k], &opts, &mut h, &mut |_, p| {
                    pieces.push(p.to_string());
                    pieces.len() < limits[k]
                })
                .unwrap();
            (g.tokens, pieces, bits(&h.recording.data))
        })
        .collect();
    let first = m.cpu_backend(1).unwrap();
    let mut sessions: Vec<Session> = (0..2)
        .map(|_| Session::new(Box::new(first.fork())))
        .collect();
    sessions.insert(0, Session::new(Box::new(first)));
    let mut hooks: Vec<Hooks> = (0..3).map(hooks_for).collect();
    let mut pieces: Vec<Vec<String>> = vec![Vec::new(); 3];
    let gens = {
        let mut streams: Vec<Box<OnToken<'_>>> = pieces
            .iter_mut()
            .zip(limits)
            .map(|(p, limit)| {
                Box::new(move |_: u32, piece: &str| {
                    p.push(piece.to_string());
                    p.len() < limit
                }) as Box<OnToken>
            })
            .collect();
        let mut seqs: Vec<GenerateStep<'_>> = sessions
            .iter_mut()
            .zip(&prompts)
            .zip(&mut hooks)
            .zip(streams.iter_mut())
            .map(|(((session, prompt), hooks), on_token)| GenerateStep {
                session,
                prompt,
                opts: &opts,
                hooks,
                on_token: &mut **on_token,
            })
            .collect();
        now_or_err(generate_batch_async(&m.tokenizer, &mut seqs)).unwrap()
    };
    for k in 0..3 {
        assert_eq!(gens[k].tokens, alone[k].0, "sequence {k}: tokens");
        assert_eq!(pieces[k], alone[k].1, "sequence {k}: streamed pieces");
        assert!(
            bits(&hooks[k].recording.data) == alone[k].2,
            "sequence {k}: residuals"
        );
    }
    assert_ne!(gens[0].tokens, gens[1].tokens, "the edits changed nothing");
    assert_eq!(gens[2].tokens.len(), 5, "Stop after 5 tokens");
    assert!(gens[0].tokens.len() > 5);
}
