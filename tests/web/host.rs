//! The web worker's logic (`axiscope::web::worker::host`) natively, on the default model with a
//! synthetic persona bundle: streamed replies, KV-cache reuse across turns, capped replies
//! read back by the unsteered model, undo, restore. Every projection the host reports is
//! checked against an independent route: one uncached forward pass over the whole rendered
//! conversation, recording the analysis layer, averaged over the reply's content tokens.

use crate::common;
use axiscope::engine::chat::{Message, Role, TokenKind};
use axiscope::engine::{Backend, Hooks, Model};
use axiscope::science::{
    BuildSettings, Bundle, ModelInfo, PersonaVectors, ProjectionStats, RolloutActivation,
};
use axiscope::web::protocol::{
    Branch, CapSettings, Event, Fault, GenSettings, SharedTurn, TurnSettings,
};
use axiscope::web::worker::host::Host;
use common::*;
use pollster::block_on;

const LAYER: usize = 15;

/// Projections are sums of ~576 products of residuals of size ~1-10; the cached and uncached
/// routes differ only in summation order, measured well below this.
const TOL: f32 = 2e-3;

fn model() -> Model {
    Model::from_bytes(model_bytes(&default_model_path())).expect("default model loads")
}

fn factory() -> axiscope::engine::backend::BackendFactory {
    Box::new(|m: &Model| Ok(Box::new(m.cpu_backend(2)?) as Box<dyn Backend>))
}

/// A bundle with the model's shape whose axis points along hidden dimension 7 at every layer,
/// with rollouts spread around it. The default rollouts sit at +100 along it, so a cap at a
/// high percentile is a floor far above anything the model produces: it must change the text.
fn synthetic_bundle(m: &Model) -> Bundle {
    let (nl, h) = (m.config.n_layers, m.config.hidden);
    let mut seed = 12345u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
    };
    let mut rollouts = Vec::new();
    for (role, shift) in [
        ("ghost", -5.0f32),
        ("bard", -2.0),
        ("tutor", 3.0),
        ("default", 100.0),
    ] {
        for q in 0..4 {
            let per_layer: Vec<f32> = (0..nl * h)
                .map(|i| rnd() + if i % h == 7 { shift + rnd() * 4.0 } else { 0.0 })
                .collect();
            rollouts.push(RolloutActivation {
                role: role.into(),
                prompt_index: 0,
                question_id: q,
                n_tokens: 10,
                per_layer,
                mean_token_norm: vec![20.0; nl],
            });
        }
    }
    let pv = PersonaVectors::from_rollouts(&rollouts, nl, h).unwrap();
    let stats = ProjectionStats::compute(&pv, &rollouts).unwrap();
    let info = ModelInfo {
        name: m.config.name.clone(),
        sha256: String::new(),
        n_layers: nl,
        hidden: h,
    };
    let cats = vec![
        "fantastical".into(),
        "fantastical".into(),
        "assistant-like".into(),
    ];
    Bundle::new(
        info,
        LAYER,
        cats,
        BuildSettings::default(),
        None,
        pv,
        stats,
        2,
    )
    .unwrap()
}

fn settings(max_tokens: usize, cap: Option<CapSettings>) -> TurnSettings {
    TurnSettings {
        system: "You are a helpful assistant.".into(),
        sampling: GenSettings {
            max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            repeat_penalty: 1.1,
            seed: 3,
        },
        cap,
        steer: 0.0,
    }
}

/// Reference: the reply's projection from one uncached forward over the whole conversation.
fn reference_projection(
    m: &Model,
    bundle: &Bundle,
    system: &str,
    turns: &[(String, String)],
    turn: usize,
) -> f32 {
    let mut msgs = vec![Message::new(Role::System, system)];
    for (u, a) in turns {
        msgs.push(Message::new(Role::User, u.clone()));
        msgs.push(Message::new(Role::Assistant, a.clone()));
    }
    let r = m.render(&msgs, false).unwrap();
    let mut backend = m.cpu_backend(2).unwrap();
    let mut hooks = Hooks::recording(vec![LAYER]);
    backend.forward(&r.ids, 0, &mut hooks, false).unwrap();
    let msg = 1 + 2 * turn + 1;
    let pos: Vec<usize> = (0..r.ids.len())
        .filter(|&t| r.messages[t] == Some(msg) && r.kinds[t] == TokenKind::AssistantContent)
        .collect();
    assert!(!pos.is_empty());
    let h = m.config.hidden;
    let mut mean = vec![0f64; h];
    for &p in &pos {
        mean.iter_mut()
            .zip(hooks.recording.get(p, LAYER).unwrap())
            .for_each(|(s, &x)| *s += x as f64);
    }
    let mean: Vec<f32> = mean.iter().map(|s| (s / pos.len() as f64) as f32).collect();
    bundle.vectors.at(LAYER).project(&mean)
}

#[derive(Default)]
struct Log {
    tokens: [String; 2],
    done: [Vec<String>; 2],
    /// `(prompt tokens, tokens run)` per reply.
    prefill: [Vec<(usize, usize)>; 2],
    points: [Vec<(usize, f32, bool, f32)>; 2],
}

impl Log {
    fn take(&mut self, e: Event) {
        match e {
            Event::Token { branch, text, .. } => self.tokens[branch.index()].push_str(&text),
            Event::ReplyDone {
                branch,
                text,
                prompt_tokens,
                prefilled,
                ..
            } => {
                self.done[branch.index()].push(text);
                self.prefill[branch.index()].push((prompt_tokens, prefilled));
            }
            Event::Measured {
                branch,
                turn,
                point: Some(p),
                ..
            } => {
                // The per-token projections average to the turn's (the projection is affine).
                let mean_tok =
                    p.tokens.iter().map(|t| t.projection).sum::<f32>() / p.tokens.len() as f32;
                self.points[branch.index()].push((turn, p.projection, p.read_back, mean_tok));
            }
            _ => {}
        }
    }
}

#[test]
fn replies_stream_and_land_where_an_uncached_pass_puts_them() {
    let m = model();
    let bundle = synthetic_bundle(&m);
    let mut host = Host::new();
    host.set_bundle(bundle.clone());
    let describe = host.set_model(m, factory(), None).unwrap();
    assert!(describe.starts_with("cpu"), "{describe}");
    let view = host.bundle_view().unwrap();
    assert_eq!(view.matches_model, Some(true));
    assert_eq!(view.roles.len(), 3);
    assert!(view.default_band[0] < view.default_band[1]);
    let m = model();
    let s = settings(8, None);
    let mut log = Log::default();
    let users = ["What is the capital of France?", "And of Italy?"];
    for u in users {
        block_on(host.chat(1, u, &s, &|| false, &mut |e| log.take(e))).unwrap();
    }
    assert_eq!(host.turns(), 2);
    let replies = log.done[0].clone();
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|r| !r.is_empty()), "{replies:?}");
    // The streamed pieces are exactly the replies.
    assert_eq!(log.tokens[0], replies.concat());
    let turns: Vec<(String, String)> = users
        .iter()
        .map(|u| u.to_string())
        .zip(replies.clone())
        .collect();
    // The KV cache carries the conversation: turn 2 runs only its own user message and header,
    // i.e. everything after the rendered turn 1 (which measuring turn 1 brought into the cache).
    let mut first = vec![
        Message::new(Role::System, s.system.clone()),
        Message::new(Role::User, users[0]),
    ];
    first.push(Message::new(Role::Assistant, replies[0].clone()));
    let rendered_turn1 = m.render(&first, false).unwrap().ids.len();
    let (prompt2, ran2) = log.prefill[0][1];
    assert_eq!(
        ran2,
        prompt2 - rendered_turn1,
        "turn 2 ran {ran2} of {prompt2} prompt tokens"
    );
    assert_eq!(
        log.prefill[0][0].0, log.prefill[0][0].1,
        "the first turn runs its whole prompt"
    );
    assert_eq!(log.points[0].len(), 2);
    for &(turn, p, read_back, mean_tok) in &log.points[0] {
        let want = reference_projection(&m, &bundle, &s.system, &turns, turn);
        assert!(
            (p - want).abs() < TOL * (1.0 + want.abs()),
            "turn {turn}: host {p}, reference {want}"
        );
        assert!(
            (p - mean_tok).abs() < TOL * (1.0 + p.abs()),
            "turn {turn}: tokens average {mean_tok}, turn {p}"
        );
        assert!(!read_back);
    }

    // Restoring the same conversation measures the same points without generating.
    let shared: Vec<SharedTurn> = turns
        .iter()
        .map(|(u, a)| SharedTurn {
            user: u.clone(),
            assistant: a.clone(),
            capped: None,
        })
        .collect();
    let mut again = Log::default();
    block_on(host.restore(2, &shared, &s, &mut |e| again.take(e))).unwrap();
    assert!(again.done[0].is_empty(), "restore must not generate");
    for (a, b) in log.points[0].iter().zip(&again.points[0]) {
        assert!(
            (a.1 - b.1).abs() < TOL * (1.0 + a.1.abs()),
            "{a:?} vs {b:?}"
        );
    }

    // Undo drops the last turn; the next turn is turn 1 again and still measured right.
    host.undo();
    assert_eq!(host.turns(), 1);
    let mut log2 = Log::default();
    block_on(host.chat(3, "And of Spain?", &s, &|| false, &mut |e| log2.take(e))).unwrap();
    let turns2 = vec![
        turns[0].clone(),
        ("And of Spain?".to_string(), log2.done[0][0].clone()),
    ];
    let (turn, p, ..) = log2.points[0][0];
    assert_eq!(turn, 1);
    let want = reference_projection(&m, &bundle, &s.system, &turns2, 1);
    assert!(
        (p - want).abs() < TOL * (1.0 + want.abs()),
        "after undo: host {p}, reference {want}"
    );
}

#[test]
fn capping_gives_a_second_reply_read_back_by_the_unsteered_model() {
    let m = model();
    let bundle = synthetic_bundle(&m);
    let mut host = Host::new();
    host.set_bundle(bundle.clone());
    host.set_model(m, factory(), None).unwrap();
    let m = model();
    let cap = CapSettings {
        percentile: 90,
        start: 10,
        end: 20,
    };
    let s = settings(10, Some(cap));
    let mut log = Log::default();
    let user = "Tell me about yourself.";
    block_on(host.chat(1, user, &s, &|| false, &mut |e| log.take(e))).unwrap();
    let (d, c) = (log.done[0][0].clone(), log.done[1][0].clone());
    assert!(!d.is_empty() && !c.is_empty());
    // Same seed and prompt: only the cap (a floor far above the model's range) differs.
    assert_ne!(d, c, "the cap changed nothing");
    let (_, p_default, rb_default, _) = log.points[0][0];
    let (_, p_capped, rb_capped, _) = log.points[1][0];
    assert!(!rb_default && rb_capped);
    let want_d = reference_projection(&m, &bundle, &s.system, &[(user.into(), d)], 0);
    let want_c = reference_projection(&m, &bundle, &s.system, &[(user.into(), c)], 0);
    assert!(
        (p_default - want_d).abs() < TOL * (1.0 + want_d.abs()),
        "default {p_default} vs {want_d}"
    );
    // Read back unsteered: far below the +100 the cap forced inside the model.
    assert!(
        (p_capped - want_c).abs() < TOL * (1.0 + want_c.abs()),
        "capped {p_capped} vs {want_c}"
    );
    assert!(
        p_capped < 50.0,
        "capped reply measured inside the capped model: {p_capped}"
    );
}

#[test]
fn stop_ends_the_turn_and_bad_requests_are_errors() {
    let m = model();
    let context = m.config.context;
    let mut host = Host::new();
    // Without a model: an error, not a panic.
    assert!(block_on(host.chat(1, "hi", &settings(4, None), &|| false, &mut |_| {})).is_err());
    host.set_model(m, factory(), None).unwrap();
    // Capping without a bundle is refused and leaves no half turn behind.
    let capped = settings(
        4,
        Some(CapSettings {
            percentile: 75,
            start: 10,
            end: 20,
        }),
    );
    let err = block_on(host.chat(1, "hi", &capped, &|| false, &mut |_| {})).unwrap_err();
    assert_eq!(err.fault(), Fault::Other);
    assert!(err.to_string().contains("bundle"), "{err}");
    assert_eq!(host.turns(), 0);
    assert!(block_on(host.chat(1, "   ", &settings(4, None), &|| false, &mut |_| {})).is_err());
    // Cancelled after the first token: one token, finish "stopped", the turn is kept.
    let mut n = 0;
    let mut finish = None;
    block_on(host.chat(
        2,
        "Count to twenty.",
        &settings(30, None),
        &|| true,
        &mut |e| match e {
            Event::Token { .. } => n += 1,
            Event::ReplyDone {
                finish: f,
                branch: Branch::Default,
                ..
            } => finish = Some(f),
            _ => {}
        },
    ))
    .unwrap();
    assert!(n <= 1, "{n} tokens after stop");
    assert_eq!(finish, Some(axiscope::web::protocol::Finish::Stopped));
    assert_eq!(host.turns(), 1);
    // A message longer than the context: the page is told by its fault (it offers to trim),
    // and the conversation so far stays.
    let long = "word ".repeat(context + 10);
    let err =
        block_on(host.chat(3, &long, &settings(4, None), &|| false, &mut |_| {})).unwrap_err();
    assert_eq!(err.fault(), Fault::ContextFull, "{err}");
    assert_eq!(host.turns(), 1);
}

#[test]
fn a_visitors_role_lands_where_its_replies_average() {
    let m = model();
    let bundle = synthetic_bundle(&m);
    let mut host = Host::new();
    host.set_bundle(bundle.clone());
    host.set_model(m, factory(), None).unwrap();
    let m = model();
    let system = "You are a pirate. Answer like one.";
    let mut replies = Vec::new();
    let mut placed = None;
    block_on(
        host.place_role(9, "pirate-ish", system, 2, &|| false, &mut |e| match e {
            Event::BuildProgress { reply, .. } => replies.push(reply),
            Event::RolePlaced { role, nearest, .. } => placed = Some((role, nearest)),
            _ => {}
        }),
    )
    .unwrap();
    let (role, nearest) = placed.expect("placed");
    assert_eq!(replies.len(), 2);
    assert_eq!(nearest.len(), 3, "{nearest:?}");
    // The synthetic bundle names no questions: a seeded choice of ours, the bundle's seed.
    let questions = axiscope::science::pipeline::choose_questions(
        &axiscope::web::catalog::questions(),
        2,
        bundle.settings.seed,
    )
    .unwrap();
    // Reference: each reply's content mean from an uncached pass, averaged over questions.
    let h = m.config.hidden;
    let mut sum = vec![0f64; h];
    for (q, a) in questions.iter().zip(&replies) {
        assert!(!a.is_empty(), "empty reply");
        let msgs = vec![
            Message::new(Role::System, system),
            Message::new(Role::User, q.text.clone()),
            Message::new(Role::Assistant, a.clone()),
        ];
        let r = m.render(&msgs, false).unwrap();
        let mut backend = m.cpu_backend(2).unwrap();
        let mut hooks = Hooks::recording(vec![LAYER]);
        backend.forward(&r.ids, 0, &mut hooks, false).unwrap();
        let pos: Vec<usize> = (0..r.ids.len())
            .filter(|&t| r.messages[t] == Some(2) && r.kinds[t] == TokenKind::AssistantContent)
            .collect();
        let mut mean = vec![0f64; h];
        for &p in &pos {
            mean.iter_mut()
                .zip(hooks.recording.get(p, LAYER).unwrap())
                .for_each(|(s, &x)| *s += x as f64);
        }
        sum.iter_mut()
            .zip(&mean)
            .for_each(|(s, x)| *s += x / pos.len() as f64);
    }
    let v: Vec<f32> = sum.iter().map(|s| (s / 2.0) as f32).collect();
    let want = bundle.vectors.at(LAYER).project(&v);
    assert!(
        (role.projection - want).abs() < TOL * (1.0 + want.abs()),
        "{} vs {want}",
        role.projection
    );
    let want_pcs = bundle.pca().project(&v);
    for (a, b) in role.pcs.iter().zip(&want_pcs) {
        assert!(
            (a - b).abs() < TOL * (1.0 + b.abs()),
            "{:?} vs {want_pcs:?}",
            role.pcs
        );
    }
    // The conversation is untouched.
    assert_eq!(host.turns(), 0);
}

#[test]
fn a_map_built_in_the_worker_is_a_valid_bundle_of_real_rollouts() {
    use axiscope::web::protocol::BuildSize;
    let m = model();
    let mut host = Host::new();
    host.set_model(m, factory(), Some("ab".repeat(32))).unwrap();
    let m = model();
    let mut replies = Vec::new();
    let bundle = block_on(host.build_bundle(5, BuildSize::Tiny, &|| false, &mut |e| {
        if let Event::BuildProgress { reply, role, .. } = e {
            replies.push((role, reply));
        }
    }))
    .unwrap();
    // 8 roles once, and the default's 5 prompts x 2 seeds (the quick plan's), on one question.
    assert_eq!(replies.len(), 18);
    let empty = replies.iter().filter(|(_, r)| r.is_empty()).count();
    assert_eq!(bundle.stats.rollouts.len(), 18 - empty);
    assert_eq!(bundle.vectors.n_roles(), 8);
    assert_eq!(bundle.analysis_layer, 15);
    assert_eq!(bundle.model.sha256, "ab".repeat(32));
    assert!(bundle.fidelity.is_some());
    // The blob reads back equal (the format's own validation passes).
    assert_eq!(Bundle::from_blob(&bundle.to_blob()).unwrap(), bundle);
    // The bundle is in use: the map view describes it.
    let view = host.bundle_view().unwrap();
    assert_eq!((view.roles.len(), view.matches_model), (8, Some(true)));

    // The default's first prompt (no system prompt) on the build's question: its stored
    // projections at a few layers equal an uncached pass over the same text (f16 storage).
    // Plans run the roles first, then the default's 5 prompts.
    let (role, reply) = &replies[8];
    assert_eq!(role, "default");
    assert!(!reply.is_empty());
    let q =
        axiscope::science::pipeline::choose_questions(&axiscope::web::catalog::questions(), 1, 0)
            .unwrap()[0]
            .text
            .clone();
    let index = bundle
        .stats
        .rollouts
        .iter()
        .position(|m| m.role.is_none() && m.prompt_index == 0)
        .unwrap();
    let msgs = vec![
        Message::new(Role::User, q),
        Message::new(Role::Assistant, reply.clone()),
    ];
    let r = m.render(&msgs, false).unwrap();
    let layers = vec![0, 15, 29];
    let mut backend = m.cpu_backend(2).unwrap();
    let mut hooks = Hooks::recording(layers.clone());
    backend.forward(&r.ids, 0, &mut hooks, false).unwrap();
    let pos: Vec<usize> = (0..r.ids.len())
        .filter(|&t| r.messages[t] == Some(1) && r.kinds[t] == TokenKind::AssistantContent)
        .collect();
    for &l in &layers {
        let mut mean = vec![0f64; m.config.hidden];
        for &p in &pos {
            mean.iter_mut()
                .zip(hooks.recording.get(p, l).unwrap())
                .for_each(|(s, &x)| *s += x as f64);
        }
        let mean: Vec<f32> = mean.iter().map(|s| (s / pos.len() as f64) as f32).collect();
        let want = bundle.vectors.at(l).project(&mean);
        let got = bundle.stats.projection(index, l);
        assert!(
            (got - want).abs() < 5e-3 * (1.0 + want.abs()),
            "layer {l}: bundle {got}, reference {want}"
        );
    }
}

/// The web worker's fallback after a lost GPU: `switch_backend` gives the host a new backend
/// with empty caches; the conversation's text stays and the next turn runs all of it again,
/// giving the reply (greedy) that a host which never switched gives.
#[test]
fn switching_backend_keeps_the_conversation_and_replays_it() {
    let s = settings(6, None);
    let mut plain = Host::new();
    plain.set_model(model(), factory(), None).unwrap();
    let mut moved = Host::new();
    moved.set_model(model(), factory(), None).unwrap();
    let (mut lp, mut lm) = (Log::default(), Log::default());
    for (host, log) in [(&mut plain, &mut lp), (&mut moved, &mut lm)] {
        block_on(host.chat(1, "Hello!", &s, &|| false, &mut |e| log.take(e))).unwrap();
    }
    // The same engine again (its arithmetic is identical): only the caches are lost.
    assert_eq!(
        moved.switch_backend(factory()).unwrap(),
        format!("cpu (2 threads, {})", axiscope::engine::quant::kernels())
    );
    assert_eq!(moved.turns(), 1);
    for (host, log) in [(&mut plain, &mut lp), (&mut moved, &mut lm)] {
        block_on(host.chat(2, "And then?", &s, &|| false, &mut |e| log.take(e))).unwrap();
    }
    assert_eq!(lp.done[0], lm.done[0]);
    // The host that never switched reuses its cache; the moved one runs every prompt token.
    let (prompt, ran) = lm.prefill[0][1];
    assert_eq!(ran, prompt);
    assert!(lp.prefill[0][1].1 < prompt);
    let t = moved.traces();
    assert_eq!(t.len(), 2);
    // The trace: the best raw logits per generated token, in order (the repetition penalty
    // may still pick another).
    assert_eq!(t[1].top.len(), t[1].tokens.len());
    assert!(
        t[1].top
            .iter()
            .all(|p| p.logits.windows(2).all(|w| w[0] >= w[1]))
    );
}

#[test]
fn the_map_view_of_the_committed_bundle_has_every_layer_and_its_intervals() {
    let blob = std::fs::read(root().join("bundles/smollm2-135m-instruct.axb")).unwrap();
    let bundle = Bundle::from_blob(&blob).unwrap();
    let report = bundle
        .fidelity
        .clone()
        .expect("the committed bundle has its report");
    let mut host = Host::new();
    host.set_bundle(bundle.clone());
    let view = host.bundle_view().unwrap();
    let a = view.analysis_layer;
    assert_eq!(view.layers.len(), bundle.model.n_layers);

    // The shown layer's view is the map's own.
    let at = &view.layers[a];
    assert_eq!(at.default_pcs, view.default_pcs);
    assert_eq!(at.explained_variance_ratio, view.explained_variance_ratio);
    assert_eq!(at.cos_pc_axis, view.cos_pc_axis);
    for (r, role) in view.roles.iter().enumerate() {
        assert_eq!(
            (&at.role_pcs[r], at.role_projections[r]),
            (&role.pcs, role.projection)
        );
    }
    // Per-layer figures agree with the report's own computation of them.
    let split = report.split_half.as_ref().unwrap();
    let held = report.held_out.as_ref().unwrap();
    for (l, lv) in view.layers.iter().enumerate() {
        assert!(
            (lv.cos_pc_axis[0] - report.cos_pc1_axis_per_layer[l]).abs() < 1e-4,
            "layer {l}"
        );
        assert_eq!(lv.split_half_cos, Some(split.cos_per_layer[l]));
        assert_eq!(lv.held_out_cos, Some(held.halves_cos_pc1_axis[l]));
        assert_eq!(lv.role_pcs.len(), view.roles.len());
    }
    assert_eq!(view.split_half_cos, view.layers[a].split_half_cos);

    // Intervals bracket their figures.
    let iv = view.intervals.as_ref().expect("held-out intervals");
    assert!(iv.level > 0.5 && iv.level < 1.0);
    for (name, i) in [
        ("cos", iv.cos_pc1_axis),
        ("rank", iv.default_pc1_rank),
        ("split-half", iv.split_half_cos),
        ("held-out", iv.held_out_cos),
    ] {
        assert!(i.lo <= i.hi, "{name}: {i:?}");
    }
    assert!((iv.cos_pc1_axis.value - view.cos_pc_axis[0]).abs() < 1e-4);
    assert!(
        view.layer_rule
            .as_deref()
            .is_some_and(|r| r.contains("held-out"))
    );

    // Spreads: every role has several rollouts; one reply strays far more than a role mean.
    let reply_sd = view.reply_sd.expect("pooled spread");
    for role in &view.roles {
        let sd = role
            .spread
            .expect("a role of several rollouts has a spread");
        assert!(
            sd > 0.0 && sd < 4.0 * reply_sd,
            "{}: {sd} vs {reply_sd}",
            role.name
        );
    }
    assert_eq!(view.reply_sd, bundle.stats.reply_sd(a));
}

#[test]
fn the_map_at_another_layer_is_that_layers_pca() {
    let blob = std::fs::read(root().join("bundles/smollm2-135m-instruct.axb")).unwrap();
    let bundle = Bundle::from_blob(&blob).unwrap();
    let mut host = Host::new();
    host.set_bundle(bundle.clone());
    let view = host.bundle_view().unwrap();
    assert_eq!(view.at_layer(view.analysis_layer).as_ref(), Some(&view));
    assert_eq!(view.at_layer(view.n_layers), None);
    let l = 3;
    let at = view.at_layer(l).unwrap();
    assert_eq!(
        at.analysis_layer, view.analysis_layer,
        "the chosen layer stays marked"
    );
    let pca = &bundle.layer_pcas[l];
    for (r, role) in at.roles.iter().enumerate() {
        assert_eq!(role.pcs, pca.row_scores(r));
        assert_eq!(role.projection, bundle.vectors.role_projection(r, l));
        assert_eq!(role.name, view.roles[r].name);
    }
    assert_eq!(at.default_pcs, bundle.layer_default_pcs[l]);
    assert_eq!(at.default_projection, bundle.vectors.default_projection(l));
    assert_ne!(at.default_pcs, view.default_pcs);
}

#[test]
fn the_axis_exported_for_llama_cpp_is_one_mean_token_norm_along_it_at_every_layer() {
    let blob = std::fs::read(root().join("bundles/smollm2-135m-instruct.axb")).unwrap();
    let bundle = Bundle::from_blob(&blob).unwrap();
    let mut host = Host::new();
    assert!(
        host.control_vector().is_err(),
        "no bundle, no control vector"
    );
    host.set_bundle(bundle.clone());
    let bytes = host.control_vector().unwrap();
    let f = axiscope::engine::GgufFile::from_bytes(bytes).unwrap();
    let pv = &bundle.vectors;
    assert_eq!(
        f.get_u64("controlvector.layer_count").unwrap() as usize,
        pv.n_layers - 1
    );
    for l in 1..pv.n_layers {
        let t = f.tensor(&format!("direction.{l}")).unwrap();
        let got: Vec<f32> = f
            .tensor_bytes(t)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let norm = got.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let n = pv.mean_token_norm[l] as f64;
        assert!(
            (norm - n).abs() < 1e-4 * n,
            "layer {l}: |direction| {norm}, n_L {n}"
        );
        let cos = axiscope::science::stats::cosine(&got, pv.unit_at(l));
        assert!(cos > 0.99999, "layer {l}: cos with the axis {cos}");
    }
}

/// The page is told how a model's template places the conversation where it departs from
/// plain turns: nothing for the default model, the system prompt's place for Gemma.
#[test]
fn the_model_view_says_how_the_template_places_the_conversation() {
    let view = |m: Model| {
        let mut host = Host::new();
        host.set_model(m, factory(), None).unwrap();
        host.model_view(1, "cpu".into(), String::new(), false, 1.0)
            .unwrap()
            .template_note
    };
    assert_eq!(view(model()), None);
    let gemma = std::fs::read(root().join("tests/fixtures/arch/gemma3.gguf")).unwrap();
    let note = view(Model::from_bytes(gemma).unwrap()).unwrap();
    assert!(note.contains("no system role"), "{note}");
}
