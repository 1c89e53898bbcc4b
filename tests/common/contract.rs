//! The backend contract: what every [`Backend`] must do alike, whatever runs the arithmetic.
//! Each backend's test crate calls [`keeps_the_contract`] with a way to make fresh sequences
//! and its stated tolerance (the CPU engine bit for bit; the GPU within its summation-order
//! noise). Each clause compares a backend with itself, run another way, so a clause that fails
//! names a broken promise of that backend, not a difference between engines (those have their
//! own tests against llama.cpp and the CPU).
//!
//! Clauses, on the default model and a short chat prompt of `n` tokens:
//! 1. all logits: `all_logits` gives `n` rows, the last equal to the plain call's;
//! 2. decoding: a prefix then the rest one token at a time gives the whole prompt's logits,
//!    recordings and cache length;
//! 3. truncation: after the whole prompt, `truncate(k)` then the rest gives them again;
//! 4. edits then records: an `Add` at a hook layer shows in that layer's recording as exactly
//!    the added vector and changes the layers after it; a `Clamp` floor holds every token's
//!    projection at the floor where it was below;
//! 5. batching: two sequences through `forward_batch` get what each gets alone;
//! 6. refusals: a bad call (past the context, a token outside the vocabulary, no tokens, a
//!    position past the cache, a layer not in the model, layers out of order, a vector of the
//!    wrong width, an empty clamp) is an error, moves no cache, and the sequence goes on.

use super::{default_model, rel_err};
use axiscope::engine::backend::{BatchStep, forward_batch};
use axiscope::engine::chat::{Message, Role};
use axiscope::engine::{Backend, Edit, EditOp, Error, Hooks};

/// How close two runs of one backend must be.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Largest |a - b| over the logits, as a fraction of the largest |logit|.
    pub logits: f32,
    /// Largest |a - b| / |b| over recorded residual vectors.
    pub residuals: f64,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance {
        logits: 0.0,
        residuals: 0.0,
    };
}

/// Layers recorded throughout; the first also takes the edits.
const LAYERS: [usize; 3] = [4, 9, 20];

/// Runs every clause on `make`'s sequences (each call: a fresh sequence, empty cache, on the
/// same weights) and panics naming the backend and the clause that fails. Prints the largest
/// difference each clause saw, so a tolerance can be read against what was measured.
pub fn keeps_the_contract(name: &str, make: &mut dyn FnMut() -> Box<dyn Backend>, tol: Tolerance) {
    let m = default_model();
    let prompt = m
        .render(&[Message::new(Role::User, "Who are you, really?")], true)
        .unwrap()
        .ids;
    let n = prompt.len();
    let k = n - 4;
    let vocab = m.config.vocab;
    let c = Check { name, tol };

    // The reference: the whole prompt in one call.
    let mut whole = make();
    let mut h_whole = Hooks::recording(LAYERS.to_vec());
    let all = whole.forward(&prompt, 0, &mut h_whole, true).unwrap();
    assert_eq!(whole.cached(), n, "{name}: cache after the prompt");
    let last = all[(n - 1) * vocab..].to_vec();
    assert_eq!(all.len(), n * vocab, "{name}: all_logits rows");
    assert_eq!(h_whole.recording.n_tokens(), n, "{name}: tokens recorded");

    // 1. All logits.
    let mut b = make();
    let plain = b.forward(&prompt, 0, &mut Hooks::none(), false).unwrap();
    c.logits("all logits: last row vs the plain call", &last, &plain);

    // 2. A prefix, then one token at a time.
    let mut b = make();
    let mut h = Hooks::recording(LAYERS.to_vec());
    let mut got = b.forward(&prompt[..k], 0, &mut h, false).unwrap();
    for t in k..n {
        got = b.forward(&prompt[t..t + 1], t, &mut h, false).unwrap();
    }
    assert_eq!(b.cached(), n, "{name}: cache after decoding");
    c.logits("decoding: last logits vs the whole prompt", &got, &last);
    c.recordings("decoding: recordings vs the whole prompt", &h, &h_whole, n);

    // 3. Truncation.
    whole.truncate(k);
    assert_eq!(whole.cached(), k, "{name}: cache after truncate");
    let mut h = Hooks::recording(LAYERS.to_vec());
    let resumed = whole.forward(&prompt[k..], k, &mut h, false).unwrap();
    assert_eq!(whole.cached(), n, "{name}: cache after resuming");
    c.logits(
        "truncation: resumed logits vs the whole prompt",
        &resumed,
        &last,
    );
    let tail = |r: &Hooks| r.recording.data[k * LAYERS.len() * m.config.hidden..].to_vec();
    c.residual_rows(
        "truncation: resumed recordings",
        &h.recording.data,
        &tail(&h_whole),
    );

    // 4. Edits, then records.
    let hidden = m.config.hidden;
    let vector: Vec<f32> = (0..hidden).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
    let mut h = Hooks::recording(LAYERS.to_vec());
    h.edits = vec![Edit {
        layer: LAYERS[0],
        op: EditOp::Add {
            vector: vector.clone(),
        },
    }];
    make().forward(&prompt, 0, &mut h, false).unwrap();
    let mut want = Vec::new();
    let mut moved = 0f64;
    for t in 0..n {
        let plain = h_whole.recording.get(t, LAYERS[0]).unwrap();
        want.extend(plain.iter().zip(&vector).map(|(p, v)| p + v));
        moved = moved.max(rel_err(
            h.recording.get(t, LAYERS[2]).unwrap(),
            h_whole.recording.get(t, LAYERS[2]).unwrap(),
        ));
    }
    let edited: Vec<f32> = (0..n)
        .flat_map(|t| h.recording.get(t, LAYERS[0]).unwrap().to_vec())
        .collect();
    c.residual_rows(
        "edits: the recording at the edited layer is plain + vector",
        &edited,
        &want,
    );
    assert!(
        moved > 1e-3,
        "{name}: an edit at layer {} left layer {} unchanged",
        LAYERS[0],
        LAYERS[2]
    );

    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    let unit: Vec<f32> = vector.iter().map(|x| x / norm).collect();
    let proj = |v: &[f32]| v.iter().zip(&unit).map(|(a, b)| a * b).sum::<f32>();
    let plain_proj: Vec<f32> = (0..n)
        .map(|t| proj(h_whole.recording.get(t, LAYERS[0]).unwrap()))
        .collect();
    let floor = plain_proj.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
    let mut h = Hooks::recording(vec![LAYERS[0]]);
    h.edits = vec![Edit {
        layer: LAYERS[0],
        op: EditOp::Clamp {
            unit: unit.clone(),
            min: Some(floor),
            max: None,
        },
    }];
    make().forward(&prompt, 0, &mut h, false).unwrap();
    let worst = (0..n)
        .map(|t| (proj(h.recording.get(t, LAYERS[0]).unwrap()) - floor).abs())
        .fold(0f32, f32::max);
    eprintln!("{name}: clamp: largest |projection - floor| {worst:.2e} (floor {floor:.3})");
    assert!(
        worst <= 1e-3 * floor.abs().max(1.0),
        "{name}: clamp: a projection is {worst} from the floor {floor}"
    );

    // 5. Batching: a second prompt and the first, together.
    let other = m.tokenizer.encode("The weather today is").unwrap();
    let mut a = make();
    let mut b = a.fork_sequence().unwrap_or_else(|| make());
    let (mut ha, mut hb) = (Hooks::recording(LAYERS.to_vec()), Hooks::none());
    let together = forward_batch(&mut [
        BatchStep {
            backend: &mut *a,
            tokens: &prompt,
            pos: 0,
            hooks: &mut ha,
            all_logits: false,
        },
        BatchStep {
            backend: &mut *b,
            tokens: &other,
            pos: 0,
            hooks: &mut hb,
            all_logits: false,
        },
    ])
    .unwrap();
    c.logits("batching: the first sequence vs alone", &together[0], &last);
    c.recordings(
        "batching: the first sequence's recordings",
        &ha,
        &h_whole,
        n,
    );
    let alone = make()
        .forward(&other, 0, &mut Hooks::none(), false)
        .unwrap();
    c.logits(
        "batching: the second sequence vs alone",
        &together[1],
        &alone,
    );

    // 6. Refusals leave the sequence as it was.
    let mut b = make();
    let before = b.forward(&prompt, 0, &mut Hooks::none(), false).unwrap();
    let ctx = b.config().context;
    let with_edit = |op: EditOp| {
        let mut h = Hooks::none();
        h.edits = vec![Edit { layer: 3, op }];
        h
    };
    let bad: Vec<(&str, Vec<u32>, usize, Hooks)> = vec![
        ("past the context", vec![17; ctx - n + 1], n, Hooks::none()),
        (
            "a token outside the vocabulary",
            vec![vocab as u32],
            n,
            Hooks::none(),
        ),
        ("no tokens", vec![], n, Hooks::none()),
        ("a position past the cache", vec![17], n + 1, Hooks::none()),
        (
            "a layer not in the model",
            vec![17],
            n,
            Hooks::recording(vec![m.config.n_layers]),
        ),
        (
            "layers out of order",
            vec![17],
            n,
            Hooks::recording(vec![5, 2]),
        ),
        (
            "a vector of the wrong width",
            vec![17],
            n,
            with_edit(EditOp::Add {
                vector: vec![1.0; 7],
            }),
        ),
        (
            "an empty clamp",
            vec![17],
            n,
            with_edit(EditOp::Clamp {
                unit: vec![0.0; hidden],
                min: Some(2.0),
                max: Some(1.0),
            }),
        ),
    ];
    for (what, tokens, pos, mut hooks) in bad {
        let r = b.forward(&tokens, pos, &mut hooks, false);
        assert!(r.is_err(), "{name}: {what} was not refused");
        if what == "past the context" {
            assert!(
                matches!(r, Err(Error::ContextOverflow { .. })),
                "{name}: {what}: {r:?}"
            );
        }
        assert_eq!(b.cached(), n, "{name}: refusing {what} moved the cache");
        assert!(
            hooks.recording.data.is_empty(),
            "{name}: refusing {what} recorded"
        );
    }
    let again = b
        .forward(&prompt[n - 1..], n - 1, &mut Hooks::none(), false)
        .unwrap();
    c.logits("refusals: the sequence goes on as before", &again, &before);
}

struct Check<'a> {
    name: &'a str,
    tol: Tolerance,
}

impl Check<'_> {
    fn logits(&self, what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{}: {what}: lengths", self.name);
        let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{}: {what}: largest difference {:.2e} of the logit range",
            self.name,
            worst / scale
        );
        assert!(
            worst <= self.tol.logits * scale,
            "{}: {what}: logits differ by {worst} ({:.2e} of the range; tolerance {:.0e})",
            self.name,
            worst / scale,
            self.tol.logits
        );
    }

    fn recordings(&self, what: &str, got: &Hooks, want: &Hooks, n: usize) {
        assert_eq!(
            got.recording.n_tokens(),
            n,
            "{}: {what}: tokens recorded",
            self.name
        );
        self.residual_rows(what, &got.recording.data, &want.recording.data);
    }

    /// Rows of `hidden` floats, compared vector by vector.
    fn residual_rows(&self, what: &str, got: &[f32], want: &[f32]) {
        let hidden = default_model().config.hidden;
        assert_eq!(got.len(), want.len(), "{}: {what}: lengths", self.name);
        let worst = got
            .chunks_exact(hidden)
            .zip(want.chunks_exact(hidden))
            .map(|(a, b)| rel_err(a, b))
            .fold(0f64, f64::max);
        eprintln!(
            "{}: {what}: largest relative difference {worst:.2e}",
            self.name
        );
        assert!(
            worst <= self.tol.residuals,
            "{}: {what}: residuals differ by {worst:.2e} (tolerance {:.0e})",
            self.name,
            self.tol.residuals
        );
    }
}
