//! The method on the real model (SmolLM2-135M): which tokens a rollout averages, an
//! end-to-end build through the CLI on a tiny role set, and capping and steering as they act
//! on the residual stream.

use crate::common;
use axiscope::engine::chat::{Message, Role, TokenKind};
use axiscope::engine::{Backend, GenerateOptions, Hooks, SamplerConfig, Session};
use axiscope::science::pipeline::{self, content_mask, engine_edits};
use axiscope::science::{Bundle, EditKind, capping_edits, steering_edits};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PIRATE: &str = "You are a rough pirate captain. You say 'arr' and 'matey', love gold and rum, and talk about the sea and plunder.";

fn chat_with_reply(reply: &str) -> Vec<Message> {
    vec![
        Message::new(Role::System, PIRATE),
        Message::new(Role::User, "What do you value most in life?"),
        Message::new(Role::Assistant, reply),
    ]
}

fn session() -> Session {
    Session::new(Box::new(default_model().cpu_backend(1).unwrap()))
}

/// Every layer's residual for every token of `ids`, from one fresh forward pass.
fn record_all(ids: &[u32], edits: Vec<axiscope::engine::Edit>) -> Hooks {
    let m = default_model();
    let mut backend = m.cpu_backend(1).unwrap();
    let mut hooks = Hooks::recording((0..m.config.n_layers).collect());
    hooks.edits = edits;
    backend.forward(ids, 0, &mut hooks, false).unwrap();
    hooks
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn only_the_replys_content_tokens_are_averaged() {
    let m = default_model();
    let reply = "Arr, matey! Gold, rum and the open sea.";
    let msgs = chat_with_reply(reply);
    let chat = m.render(&msgs, false).unwrap();
    let mask = content_mask(&chat, 2);
    // The masked tokens are exactly the reply's text, all of kind AssistantContent, and
    // contiguous: the header before them and the end of turn after them are left out.
    let picked: Vec<u32> = chat
        .ids
        .iter()
        .zip(&mask)
        .filter(|(_, k)| **k)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(m.tokenizer.decode(&picked), reply);
    let first = mask.iter().position(|&k| k).unwrap();
    let last = mask.iter().rposition(|&k| k).unwrap();
    assert!(mask[first..=last].iter().all(|&k| k));
    assert!((first..=last).all(|t| chat.kinds[t] == TokenKind::AssistantContent));
    assert_eq!(chat.kinds[first - 1], TokenKind::Header);
    assert_eq!(chat.kinds[last + 1], TokenKind::EndOfTurn);
    // Independently of the kinds: the reply lies between "<|im_start|>assistant\n" and the
    // last "<|im_end|>".
    let im_start = m.tokenizer.token_id("<|im_start|>").unwrap();
    let im_end = m.tokenizer.token_id("<|im_end|>").unwrap();
    let s = chat.ids.iter().rposition(|&t| t == im_start).unwrap();
    let body = (s + 1..chat.ids.len())
        .find(|&k| m.tokenizer.decode(&chat.ids[s..k]) == "<|im_start|>assistant\n")
        .unwrap();
    let end = chat.ids.iter().rposition(|&t| t == im_end).unwrap();
    assert_eq!((body, end), (first, last + 1));

    // The rollout activation, read on a session whose cache already holds the prompt (as
    // after generating the reply), equals the hand average of those positions in a fresh
    // forward over the whole chat.
    let mut sess = session();
    let prompt = m.render(&msgs[..2], true).unwrap();
    let opts = GenerateOptions {
        max_tokens: 4,
        sampler: SamplerConfig::greedy(),
        stop: m.stop_tokens(),
    };
    sess.generate(
        &m.tokenizer,
        &prompt.ids,
        &opts,
        &mut Hooks::none(),
        &mut |_, _| true,
    )
    .unwrap();
    let act = pipeline::reply_activation(m, &mut sess, &msgs, "pirate", 0, 7).unwrap();
    assert_eq!(act.n_tokens as usize, end - body);
    let full = record_all(&chat.ids, Vec::new());
    let (n_layers, hidden) = (m.config.n_layers, m.config.hidden);
    let mut worst = 0f32;
    let mut moved_by_header = 0f32;
    for l in 0..n_layers {
        let mut hand = vec![0f64; hidden];
        let mut with_header = vec![0f64; hidden];
        let mut norm = 0f64;
        for t in body..end {
            let h = full.recording.get(t, l).unwrap();
            hand.iter_mut().zip(h).for_each(|(a, &b)| *a += b as f64);
            norm += dot(h, h).sqrt();
        }
        for t in body - 1..=end {
            let h = full.recording.get(t, l).unwrap();
            with_header
                .iter_mut()
                .zip(h)
                .for_each(|(a, &b)| *a += b as f64);
        }
        let n = (end - body) as f64;
        let got = &act.per_layer[l * hidden..(l + 1) * hidden];
        let scale = (hand.iter().map(|v| v * v).sum::<f64>().sqrt() / n) as f32;
        for (g, h) in got.iter().zip(&hand) {
            worst = worst.max((g - (h / n) as f32).abs() / scale);
        }
        for (w, h) in with_header.iter().zip(&hand) {
            moved_by_header = moved_by_header.max(((w / (n + 2.0)) - h / n).abs() as f32 / scale);
        }
        assert!((act.mean_token_norm[l] - (norm / n) as f32).abs() / ((norm / n) as f32) < 1e-4);
    }
    // Rows are computed independently, so reusing the cached prompt changes nothing but
    // rounding (measured: 0); adding the header and end-of-turn tokens would move the mean by
    // far more.
    assert!(worst < 1e-4, "cached vs fresh: relative difference {worst}");
    assert!(
        moved_by_header > 0.05,
        "header tokens barely move the mean ({moved_by_header}): the check is blind"
    );
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_axiscope")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "axiscope {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `axiscope project --json` on `bundle` with `what` (`--roles DIR` or `--transcript FILE`).
fn project(bundle: &std::path::Path, what: &str, path: &std::path::Path) -> serde_json::Value {
    let model = default_model_path();
    let out = run(&[
        "project",
        "--model",
        model.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        what,
        path.to_str().unwrap(),
        "--json",
    ]);
    serde_json::from_str(&out).unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("axiscope-pipeline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three roles (one per category) and a two-prompt default, in a temp folder.
fn tiny_roles() -> PathBuf {
    let dir = temp_dir("roles");
    for r in ["tutor", "pirate", "ghost"] {
        std::fs::copy(
            root().join(format!("data/roles/{r}.json")),
            dir.join(format!("{r}.json")),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("default.json"),
        r#"{"instruction": [{"pos": ""}, {"pos": "You are {model_name}."}]}"#,
    )
    .unwrap();
    dir
}

struct Tiny {
    roles: PathBuf,
    path: PathBuf,
    replies: PathBuf,
    cache: PathBuf,
    bundle: Bundle,
}

/// `axiscope build` of the tiny role set (seed 5, quick) with `extra` options.
fn build_tiny(roles: &std::path::Path, extra: &[&str]) -> String {
    let model = default_model_path();
    let mut a = vec![
        "build",
        "--model",
        model.to_str().unwrap(),
        "--roles",
        roles.to_str().unwrap(),
        "--quick",
        "--jobs",
        "2",
        "--seed",
        "5",
    ];
    a.extend_from_slice(extra);
    run(&a)
}

/// The tiny bundle, built once per test binary through the CLI (two jobs: the placing test
/// below reruns the rollouts on one session, in another order).
fn tiny() -> &'static Tiny {
    static T: OnceLock<Tiny> = OnceLock::new();
    T.get_or_init(|| {
        let roles = tiny_roles();
        let out = temp_dir("bundle");
        let path = out.join("tiny.axb");
        let replies = out.join("replies.jsonl");
        let cache = out.join("rollouts.bin");
        build_tiny(
            &roles,
            &[
                "--out",
                path.to_str().unwrap(),
                "--replies",
                replies.to_str().unwrap(),
                "--rollouts-cache",
                cache.to_str().unwrap(),
            ],
        );
        let bundle = Bundle::from_blob(&std::fs::read(&path).unwrap()).unwrap();
        Tiny {
            roles,
            path,
            replies,
            cache,
            bundle,
        }
    })
}

#[test]
fn tiny_build_gives_a_sane_bundle_and_report() {
    let t = tiny();
    let b = &t.bundle;
    let m = default_model();
    assert_eq!(
        (b.model.n_layers, b.model.hidden),
        (m.config.n_layers, m.config.hidden)
    );
    assert_eq!(b.model.sha256.len(), 64);
    assert_eq!(b.analysis_layer, m.config.n_layers / 2);
    // Roles in file-name order, 1 prompt x 2 questions each; the default 2 prompts x 2
    // questions x 2 seeds.
    assert_eq!(b.vectors.roles, vec!["ghost", "pirate", "tutor"]);
    assert_eq!(b.categories, vec!["fantastical", "human", "assistant-like"]);
    assert_eq!(b.vectors.role_rollouts, vec![2, 2, 2]);
    assert_eq!(b.vectors.default_rollouts, 8);
    assert_eq!(b.stats.rollouts.len(), 14);
    assert_eq!(b.settings.default_seeds, 2);
    let mut qs: Vec<u32> = b.stats.rollouts.iter().map(|r| r.question_id).collect();
    qs.sort_unstable();
    qs.dedup();
    assert_eq!(qs.len(), 2, "every role answers the same two questions");
    assert_eq!(b.settings.extra["model_name"], "SmolLM2-135M-Instruct");
    assert_eq!(
        (
            b.settings.max_new_tokens,
            b.settings.prompts_per_role,
            b.settings.seed
        ),
        (16, 1, 5)
    );
    for l in 0..b.vectors.n_layers {
        let u = b.vectors.unit_at(l);
        assert!((dot(u, u) - 1.0).abs() < 1e-4);
        // The default sits at +|axis| and the roles average 0 by construction.
        let mean_role: f32 = (0..3).map(|r| b.vectors.role_projection(r, l)).sum::<f32>() / 3.0;
        assert!(
            mean_role.abs() < 1e-2 * b.vectors.default_projection(l),
            "layer {l}"
        );
        assert!(b.vectors.mean_token_norm[l] > 0.0);
    }
    let fid = b.fidelity.as_ref().unwrap();
    assert!(fid.split_half.is_some());
    assert_eq!(fid.cos_pc1_axis_per_layer.len(), m.config.n_layers);
    // Two questions are too few to choose a layer on held-out ones: the middle layer.
    assert!(fid.layer_choice.is_none() && fid.held_out.is_none());
    // The default cap's reach, over the default's own reply tokens at 21..27.
    let cap = fid.default_cap.as_ref().unwrap();
    assert_eq!(
        (cap.band, cap.percentile, cap.edited_fraction.len()),
        ([21, 27], 75, 6)
    );
    assert!(cap.tokens >= 8 && cap.edited_fraction.iter().all(|f| (0.0..=1.0).contains(f)));
    // Every layer has its PCA, the analysis layer's is the map's.
    assert_eq!(b.layer_pcas.len(), 30);
    assert_eq!(b.pca(), &b.layer_pcas[15]);
    let replies = std::fs::read_to_string(&t.replies).unwrap();
    assert_eq!(replies.lines().count(), 14);
    for line in replies.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["tokens"].as_u64().unwrap() <= 16 && !v["reply"].as_str().unwrap().is_empty());
    }

    let rep: serde_json::Value = serde_json::from_str(&run(&[
        "report",
        "--bundle",
        t.path.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(rep["layer"], 15);
    assert!(rep["cos_pc1_axis"].as_f64().unwrap().abs() <= 1.0);
    assert_eq!(
        rep["explained_variance"].as_array().unwrap().len(),
        2,
        "3 roles span 2 dimensions"
    );
    assert_eq!(rep["nearest"].as_array().unwrap().len(), 3);
    assert_eq!(rep["farthest"][0], rep["nearest"][2]);
    assert_eq!(rep["cos_pc1_axis_per_layer"].as_array().unwrap().len(), 30);
    assert!(rep["split_half_cos"].is_number());
    assert_eq!(rep["capping_default"]["band"], serde_json::json!([21, 27]));
    let text = run(&["report", "--bundle", t.path.to_str().unwrap()]);
    assert!(text.contains("cos(PC1, axis)"), "{text}");
    assert!(
        text.contains("default cap (layers 21:27, percentile 75)"),
        "{text}"
    );
}

/// The rollout cache gives back exactly the build it was written by, serves a smaller plan
/// with the same seed, and refuses a plan it does not hold.
#[test]
fn a_build_from_the_rollout_cache_is_the_same_bundle() {
    let t = tiny();
    let dir = temp_dir("from-cache");
    let (path, replies) = (dir.join("again.axb"), dir.join("replies.jsonl"));
    build_tiny(
        &t.roles,
        &[
            "--out",
            path.to_str().unwrap(),
            "--replies",
            replies.to_str().unwrap(),
            "--rollouts-cache",
            t.cache.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&t.path).unwrap());
    assert_eq!(
        std::fs::read_to_string(&replies).unwrap(),
        std::fs::read_to_string(&t.replies).unwrap()
    );
    build_tiny(
        &t.roles,
        &[
            "--default-seeds",
            "1",
            "--out",
            path.to_str().unwrap(),
            "--rollouts-cache",
            t.cache.to_str().unwrap(),
        ],
    );
    let smaller = Bundle::from_blob(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(smaller.vectors.default_rollouts, 4);
    assert_eq!(smaller.vectors.role_vectors, t.bundle.vectors.role_vectors);
    let model = default_model_path();
    let other = Command::new(bin())
        .args([
            "build",
            "--model",
            model.to_str().unwrap(),
            "--roles",
            t.roles.to_str().unwrap(),
            "--quick",
            "--default-seeds",
            "3",
            "--seed",
            "5",
            "--out",
            path.to_str().unwrap(),
            "--rollouts-cache",
            t.cache.to_str().unwrap(),
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!other.status.success());
    let e = String::from_utf8_lossy(&other.stderr);
    assert!(e.contains("another plan"), "{e}");
}

#[test]
fn placing_a_built_role_again_lands_where_the_bundle_has_it() {
    let t = tiny();
    let b = &t.bundle;
    let dir = temp_dir("place");
    std::fs::copy(t.roles.join("pirate.json"), dir.join("pirate.json")).unwrap();
    std::fs::write(
        dir.join("caveman.json"),
        r#"{"instruction": [{"pos": "You are a caveman. Speak in grunts and short words."}]}"#,
    )
    .unwrap();
    let v = project(&t.path, "--roles", &dir);
    let roles = v["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 2);
    let pirate = roles.iter().find(|r| r["role"] == "pirate").unwrap();
    let r = b.vectors.roles.iter().position(|n| n == "pirate").unwrap();
    // Same seeds, same questions: the same rollouts (on one session instead of two jobs),
    // so the same role vector up to the bundle's f16 storage of role vectors.
    let want = b.vectors.role_projection(r, b.analysis_layer);
    let got = pirate["projection"].as_f64().unwrap() as f32;
    assert!(
        (got - want).abs() < 0.02 + 1e-3 * want.abs(),
        "projection {got} vs bundle {want}"
    );
    let pc: Vec<f32> = pirate["pc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    for (g, w) in pc.iter().zip(b.pca().row_scores(r)) {
        assert!((g - w).abs() < 0.05, "PC {g} vs {w}");
    }
    assert_eq!(pirate["nearest"][0], "pirate");
    let caveman = roles.iter().find(|r| r["role"] == "caveman").unwrap();
    assert!(caveman["projection"].as_f64().unwrap().is_finite());
}

#[test]
fn transcripts_with_assistant_turns_are_projected_per_turn() {
    let t = tiny();
    let dir = temp_dir("transcript");
    let file = dir.join("t.json");
    std::fs::write(
        &file,
        r#"{"conversation": [
            {"role": "user", "content": "Can you help me sort a list in Python?"},
            {"role": "assistant", "content": "Sure. Use sorted(my_list), or my_list.sort() to sort in place."},
            {"role": "user", "content": "Arr, talk like a pirate now!"},
            {"role": "assistant", "content": "Arr matey, me gold be buried where no landlubber will find it!"}
        ]}"#,
    )
    .unwrap();
    let v = project(&t.path, "--transcript", &file);
    assert_eq!(v["layer"], 15);
    assert_eq!(v["generated"], false);
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(
        (turns[0]["turn"].clone(), turns[1]["turn"].clone()),
        (0.into(), 1.into())
    );
    assert!(
        turns
            .iter()
            .all(|t| t["projection"].as_f64().unwrap().is_finite()
                && t["user_projection"].is_number())
    );

    // The same numbers from the library, on a fresh session.
    let tr = axiscope::science::data::read_transcript(&file).unwrap();
    let m = default_model();
    let lib = pipeline::project_conversation(
        m,
        &mut session(),
        &tr.messages,
        &t.bundle.vectors,
        15,
        Some(&t.bundle.layer_pcas[15]),
        false,
    )
    .unwrap();
    for (j, l) in turns.iter().zip(&lib) {
        assert!((j["projection"].as_f64().unwrap() as f32 - l.projection).abs() < 1e-4);
        // The map's coordinates: the reply's mean on the layer's PCs, whose PC1 points
        // along the default's side, as the CLI reports them.
        assert_eq!(l.pc.len(), t.bundle.layer_pcas[15].n_components());
        let cli_pc: Vec<f32> = j["pc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert!(cli_pc.iter().zip(&l.pc).all(|(a, b)| (a - b).abs() < 1e-3));
    }
}

fn pirate_chat_ids() -> Vec<u32> {
    let m = default_model();
    let msgs = vec![
        Message::new(Role::System, PIRATE),
        Message::new(Role::User, "Who are you?"),
        Message::new(
            Role::Assistant,
            "Arr, I be Captain Blackbeard, terror of the seven seas!",
        ),
    ];
    m.render(&msgs, false).unwrap().ids
}

#[test]
fn capping_floors_every_token_in_the_band_and_leaves_earlier_layers_alone() {
    let b = &tiny().bundle;
    let ids = pirate_chat_ids();
    let (lo, hi) = (10usize, 14usize);
    // A high percentile, so that most tokens start below the floor and the cap must act.
    let q = 90;
    let edits = capping_edits(&b.vectors, &b.stats, lo..hi, q).unwrap();
    let plain = record_all(&ids, Vec::new());
    let capped = record_all(&ids, engine_edits(&edits));
    let n = ids.len();
    for l in 0..lo {
        for t in 0..n {
            assert_eq!(
                plain.recording.get(t, l),
                capped.recording.get(t, l),
                "layer {l} token {t} changed below the band"
            );
        }
    }
    let mut lifted = 0;
    for (e, l) in edits.iter().zip(lo..hi) {
        let tau = b.stats.tau(l, q).unwrap();
        let u = b.vectors.unit_at(l);
        for t in 0..n {
            let p = dot(capped.recording.get(t, l).unwrap(), u);
            assert!(
                p >= tau as f64 - 1e-3 * (1.0 + tau.abs() as f64),
                "layer {l} token {t}: projection {p} below tau {tau}"
            );
            if dot(plain.recording.get(t, l).unwrap(), u) < tau as f64 {
                lifted += 1;
            }
        }
        // At the band's first layer the block's input is unchanged, so the engine's result is
        // the science's reference arithmetic applied to the uncapped residual.
        if l == lo {
            for t in 0..n {
                let mut want = plain.recording.get(t, l).unwrap().to_vec();
                e.kind.apply(&mut want);
                let got = capped.recording.get(t, l).unwrap();
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-3, "token {t}: engine vs reference {err}");
            }
        }
    }
    assert!(
        lifted > n,
        "the cap lifted only {lifted} token-layers: the test is blind"
    );
    assert!(
        (hi..b.vectors.n_layers)
            .any(|l| plain.recording.get(n - 1, l) != capped.recording.get(n - 1, l))
    );
}

#[test]
fn steering_adds_alpha_norm_u_and_changes_the_reply() {
    let b = &tiny().bundle;
    let m = default_model();
    let l = b.analysis_layer;
    let alpha = -2.0;
    let edits = engine_edits(&steering_edits(&b.vectors, l..l + 1, alpha).unwrap());
    let ids = pirate_chat_ids();
    let plain = record_all(&ids, Vec::new());
    let steered = record_all(&ids, edits.clone());
    let shift = alpha as f64 * b.vectors.mean_token_norm[l] as f64;
    let u = b.vectors.unit_at(l);
    for t in 0..ids.len() {
        let (p, s) = (
            plain.recording.get(t, l).unwrap(),
            steered.recording.get(t, l).unwrap(),
        );
        for ((a, b), &ui) in s.iter().zip(p).zip(u) {
            assert!(
                ((a - b) as f64 - shift * ui as f64).abs() < 1e-3,
                "token {t}"
            );
        }
    }
    // The greedy reply changes.
    let prompt = m
        .render(&[Message::new(Role::User, "Who are you?")], true)
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 12,
        sampler: SamplerConfig::greedy(),
        stop: m.stop_tokens(),
    };
    let reply = |edits: Vec<axiscope::engine::Edit>| {
        let mut hooks = Hooks::none();
        hooks.edits = edits;
        session()
            .generate(&m.tokenizer, &prompt.ids, &opts, &mut hooks, &mut |_, _| {
                true
            })
            .unwrap()
            .tokens
    };
    assert_ne!(reply(Vec::new()), reply(edits));
    if let EditKind::Add { vector } = &steering_edits(&b.vectors, l..l + 1, alpha).unwrap()[0].kind
    {
        assert!((dot(vector, vector).sqrt() - shift.abs()).abs() < 1e-3 * shift.abs());
    }
}

#[test]
fn generate_with_a_cap_reports_the_unsteered_projection() {
    let t = tiny();
    let model = default_model_path();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--system",
            PIRATE,
            "--prompt",
            "Who are you?",
            "--max-tokens",
            "8",
            "--seed",
            "3",
            "--json",
            "--bundle",
            t.path.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&run(&a)).unwrap();
        v
    };
    let plain = args(&[]);
    let capped = args(&["--cap-percentile", "90", "--cap-layers", "8:20"]);
    assert!(
        plain["projection_unsteered"].is_number() && capped["projection_unsteered"].is_number()
    );
    assert_eq!(capped["edits"].as_array().unwrap().len(), 12);
    assert_ne!(
        plain["tokens"], capped["tokens"],
        "a 90th-percentile cap over 12 layers changes the reply"
    );
    // A percentile alone caps the default band.
    let default_band = args(&["--cap-percentile", "75"]);
    let layers: Vec<u64> = default_band["edits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["layer"].as_u64().unwrap())
        .collect();
    assert_eq!(layers, (21..27).collect::<Vec<u64>>());
    let bad = Command::new(bin())
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Hi",
            "--cap-percentile",
            "75",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bundle"));
}

/// The committed default bundle (bundles/) must be what today's engine builds: a role
/// rebuilt with the bundle's own settings (same prompts, questions and seeds) lands where the
/// bundle has it. Catches an engine change that silently invalidates the shipped map.
#[test]
fn the_committed_bundle_is_what_the_engine_builds() {
    let path = root().join("bundles/smollm2-135m-instruct.axb");
    let b = Bundle::from_blob(&std::fs::read(&path).unwrap()).unwrap();
    let want_sha = fixture_json("smollm2_greedy.json")["settings"]["model_sha256"].clone();
    assert_eq!(
        serde_json::json!(b.model.sha256),
        want_sha,
        "bundle built on another model file"
    );
    let dir = temp_dir("committed");
    std::fs::copy(
        root().join("data/roles/pirate.json"),
        dir.join("pirate.json"),
    )
    .unwrap();
    let v = project(&path, "--roles", &dir);
    let r = b.vectors.roles.iter().position(|n| n == "pirate").unwrap();
    let want = b.vectors.role_projection(r, b.analysis_layer);
    let got = v["roles"][0]["projection"].as_f64().unwrap() as f32;
    // Same tolerance as a fresh tiny build placed again (f16 storage of role vectors).
    assert!(
        (got - want).abs() < 0.02 + 1e-3 * want.abs(),
        "pirate rebuilt: projection {got}, committed bundle {want}"
    );
    assert_eq!(v["roles"][0]["nearest"][0], "pirate");
}

/// Rollouts run together on three sessions of one load (prompts reused from whatever each
/// session held, retries, sequences finishing at different times), their activations kept
/// from what was recorded while generating, give every rollout the reply and the activation
/// it gets alone on a fresh session with the reply read back in a second, teacher-forced
/// pass, bit for bit.
#[test]
fn batched_rollouts_equal_rollouts_run_alone() {
    let m = default_model();
    let opts = pipeline::BuildOptions {
        max_tokens: 24,
        ..pipeline::BuildOptions::quick()
    };
    let systems = [PIRATE, "", "You are a careful accountant.", PIRATE];
    let questions = [
        "What do you value most in life?",
        "Describe your morning.",
        "Answer with one word only: is water wet?",
    ];
    let plans: Vec<pipeline::RolloutPlan> = systems
        .iter()
        .enumerate()
        .flat_map(|(p, s)| {
            questions
                .iter()
                .enumerate()
                .map(move |(q, text)| pipeline::RolloutPlan {
                    role: format!("r{p}"),
                    prompt_index: p as u32,
                    system: s.to_string(),
                    question_id: q as u32,
                    question: text.to_string(),
                    sample: 0,
                    seed: pipeline::rollout_seed(3, "r", p as u32, q as u32, 0),
                })
        })
        .collect();
    let first = m.cpu_backend(1).unwrap();
    let mut sessions: Vec<Session> = (0..2)
        .map(|_| Session::new(Box::new(first.fork())))
        .collect();
    sessions.insert(0, Session::new(Box::new(first)));
    let batched = pipeline::run_rollouts(m, &mut sessions, &plans, &opts).unwrap();
    let reread = pipeline::BuildOptions {
        always_reread: true,
        ..opts.clone()
    };
    let mut lengths = Vec::new();
    let mut recorded = 0;
    for (p, got) in plans.iter().zip(&batched) {
        let want = pipeline::run_rollout(m, &mut session(), p, &reread).unwrap();
        let (got, want) = (got.as_ref().unwrap(), want.as_ref().unwrap());
        assert_eq!(
            (&got.reply, got.generated, got.stop, got.attempts),
            (&want.reply, want.generated, want.stop, want.attempts)
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&got.activation.per_layer) == bits(&want.activation.per_layer),
            "{}/{}: activation differs",
            p.role,
            p.question_id
        );
        assert!(want.reread);
        recorded += usize::from(!got.reread);
        lengths.push(got.generated);
    }
    assert!(
        recorded * 2 > plans.len(),
        "only {recorded} of {} rollouts kept what was recorded while generating",
        plans.len()
    );
    lengths.sort_unstable();
    lengths.dedup();
    assert!(
        lengths.len() > 1,
        "every reply as long: no sequence finished early"
    );
}

/// `axiscope build` writes the same bundle, byte for byte, whatever `--batch` and `--jobs`;
/// and with every reply read back in a second pass (`--always-reread`) the same bundle but for
/// the manifest's count of how the activations were read.
#[test]
fn the_bundle_does_not_depend_on_batch_jobs_or_rereading() {
    let t = tiny();
    let model = default_model_path();
    let out = temp_dir("reread").join("b.axb");
    run(&[
        "build",
        "--model",
        model.to_str().unwrap(),
        "--roles",
        t.roles.to_str().unwrap(),
        "--quick",
        "--always-reread",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    let read = |p: &Path| Bundle::from_blob(&std::fs::read(p).unwrap()).unwrap();
    let (mut reread, mut recorded) = (read(&out), read(&t.path));
    let counts = |b: &mut Bundle| b.settings.extra.remove("activations").unwrap();
    let (n_reread, n_recorded) = (counts(&mut reread), counts(&mut recorded));
    assert_eq!(n_reread["recorded_while_generated"], 0);
    assert!(n_recorded["recorded_while_generated"].as_u64().unwrap() > 0);
    assert!(
        reread.to_blob() == recorded.to_blob(),
        "rereading every reply changed the bundle"
    );
    for (batch, jobs) in [("1", "1"), ("3", "1")] {
        let out = temp_dir(&format!("batch{batch}")).join("b.axb");
        run(&[
            "build",
            "--model",
            model.to_str().unwrap(),
            "--roles",
            t.roles.to_str().unwrap(),
            "--quick",
            "--jobs",
            jobs,
            "--batch",
            batch,
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&t.path).unwrap(),
            "--batch {batch} --jobs {jobs} differs from the default batch on 2 jobs"
        );
    }
}

/// One capping default everywhere: the CLI's report and its `--cap-percentile` without a
/// band, the reproduce script and the page's initial band all use the science's
/// `default_cap_band` and `DEFAULT_CAP_PERCENTILE` (docs/method.md, "Capping").
#[test]
fn the_cli_the_page_and_the_reproduce_script_share_one_capping_default() {
    let path = root().join("bundles/smollm2-135m-instruct.axb");
    let report: serde_json::Value = serde_json::from_str(&run(&[
        "report",
        "--bundle",
        path.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let band = axiscope::science::default_cap_band(30);
    assert_eq!(band, 21..27, "the paper's 70-90% of 30 layers");
    let want = serde_json::json!({
        "band": [band.start, band.end],
        "percentile": axiscope::science::DEFAULT_CAP_PERCENTILE,
    });
    let cli = &report["capping_default"];
    assert_eq!(
        serde_json::json!({"band": cli["band"], "percentile": cli["percentile"]}),
        want
    );
    // The reproduce script asks the CLI rather than holding its own numbers.
    let out = Command::new("python3")
        .args([
            "bundles/reproduce.py",
            "--parts",
            "defaults",
            "--bin",
            bin(),
            "--bundle",
            path.to_str().unwrap(),
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(script["capping"], want);
    assert_eq!(script["layer"], report["layer"]);
    // The page: a bundle of any depth gets the default band where the shown one does not fit
    // (its state machine is native), and the initial band (wasm-only, so read its source)
    // comes from the same function, no literal band left.
    use axiscope::web::page::reducer::fit_band;
    for n in [30, 40] {
        let b = axiscope::science::default_cap_band(n);
        assert_eq!(fit_band((25, 45), n), (b.start, b.end), "{n} layers");
    }
    let state = std::fs::read_to_string(root().join("src/web/page/state.rs")).unwrap();
    assert_eq!(state.matches("science::default_cap_band(").count(), 1);
    assert!(
        !state.contains("cap_band: RwSignal::new(("),
        "a literal initial band"
    );
    let app = std::fs::read_to_string(root().join("src/web/page/app.rs")).unwrap();
    assert!(app.contains(".set(crate::science::DEFAULT_CAP_PERCENTILE)"));
    assert!(!app.contains("cap_percentile.set(75)"));
}
