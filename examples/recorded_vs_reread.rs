//! Could a build record rollouts while generating them, instead of reading each reply back in a
//! second, teacher-forced pass? Measures the difference on the real model:
//! `cargo run --release --example recorded_vs_reread [-- --roles N --max-tokens T]`.
//!
//! For each rollout of a quick plan over the first N roles (default 8) and the default, the
//! reply is generated with every layer recorded (the last token run once more when the reply
//! hit the length limit), and the activation averaged over the generated content tokens; then
//! the build's own reading (`pipeline::reply_activation`: the chat re-rendered from the reply's
//! text, teacher-forced) gives the other. Prints how many replies re-tokenize to the same
//! tokens, the largest per-rollout difference, and per layer the cosine of role vectors and
//! of the axis built from each.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run() {
        eprintln!("recorded_vs_reread: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use anyhow::{Context, Result};
    use axiscope::engine::chat::{Message, Role};
    use axiscope::engine::{GenerateOptions, Hooks, Model, Session, StopReason};
    use axiscope::science::data;
    use axiscope::science::pipeline::{self, BuildOptions, content_mask};
    use axiscope::science::vectors::{PersonaVectors, RolloutActivation, TokenActivations};

    fn cos(a: &[f32], b: &[f32]) -> f64 {
        let dot = |x: &[f32], y: &[f32]| -> f64 {
            x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum()
        };
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
    }

    pub fn run() -> Result<()> {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut n_roles = 8;
        let mut opts = BuildOptions::quick();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let v = it.next().context("every option takes a value")?;
            match a.as_str() {
                "--roles" => n_roles = v.parse()?,
                "--max-tokens" => opts.max_tokens = v.parse()?,
                _ => anyhow::bail!("unknown option {a}"),
            }
        }
        let path = format!("{root}/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let model = Model::from_bytes(std::fs::read(&path).context(path)?)?;
        let set = data::read_role_dir(
            std::path::Path::new(&format!("{root}/data/roles")),
            "SmolLM2-135M-Instruct",
        )?;
        let roles = &set.roles[..n_roles.min(set.roles.len())];
        let questions = data::read_questions(std::path::Path::new(&format!(
            "{root}/data/questions.jsonl"
        )))?;
        let questions = pipeline::choose_questions(&questions, opts.questions_per_role, 0)?;
        let plans = pipeline::plan_rollouts(roles, set.default.as_ref(), &questions, &opts)?;
        let (n_layers, hidden) = (model.config.n_layers, model.config.hidden);
        let all: Vec<usize> = (0..n_layers).collect();
        let mut session = Session::new(Box::new(model.cpu_backend(1)?));
        let (mut recorded, mut reread) = (Vec::new(), Vec::new());
        let (mut same_tokens, mut worst) = (0, 0f32);
        for p in &plans {
            let mut messages = pipeline::chat_messages(&p.system, &p.question);
            let prompt = model.render(&messages, true)?;
            let gen_opts = GenerateOptions {
                max_tokens: opts.max_tokens,
                sampler: opts.sampler(p.seed),
                stop: model.stop_tokens(),
            };
            let mut hooks = Hooks::recording(all.clone());
            let g = session.generate(
                &model.tokenizer,
                &prompt.ids,
                &gen_opts,
                &mut hooks,
                &mut |_, _| true,
            )?;
            if g.text.trim().is_empty() {
                continue;
            }
            let content = g.tokens.len() - usize::from(g.stop == StopReason::EndOfTurn);
            if g.stop == StopReason::MaxTokens {
                // The last token was sampled but never run: run it to record it.
                session.step(g.tokens[content - 1], &mut hooks)?;
            }
            let data = &hooks.recording.data;
            let tail = &data[data.len() - content * n_layers * hidden..];
            let acts = TokenActivations::new(tail, n_layers, hidden)?;
            let rec = RolloutActivation::from_tokens(
                &p.role,
                p.prompt_index,
                p.question_id,
                &acts,
                &vec![true; content],
            )?;
            messages.push(Message::new(Role::Assistant, g.text.clone()));
            let chat = model.render(&messages, false)?;
            let mask = content_mask(&chat, messages.len() - 1);
            let retok: Vec<u32> = chat
                .ids
                .iter()
                .zip(&mask)
                .filter(|(_, m)| **m)
                .map(|(t, _)| *t)
                .collect();
            same_tokens += usize::from(retok == g.tokens[..content]);
            let read = pipeline::reply_activation(
                &model,
                &mut session,
                &messages,
                &p.role,
                p.prompt_index,
                p.question_id,
            )?;
            let d = rec
                .per_layer
                .iter()
                .zip(&read.per_layer)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(d);
            recorded.push(rec);
            reread.push(read);
        }
        let bit_identical = recorded
            .iter()
            .zip(&reread)
            .filter(|(a, b)| a.per_layer == b.per_layer)
            .count();
        println!(
            "{} rollouts ({} roles + default, {} tokens max): {} re-tokenize to the generated tokens, {} bit-identical activations, max |recorded - re-read| {worst:.4}",
            recorded.len(),
            roles.len(),
            opts.max_tokens,
            same_tokens,
            bit_identical
        );
        let a = PersonaVectors::from_rollouts(&recorded, n_layers, hidden)?;
        let b = PersonaVectors::from_rollouts(&reread, n_layers, hidden)?;
        println!("layer  min cos(role vectors)  cos(axis)");
        for l in 0..n_layers {
            let role_min = (0..a.n_roles())
                .map(|r| cos(a.role_vector(r, l), b.role_vector(r, l)))
                .fold(f64::INFINITY, f64::min);
            println!(
                "{l:>5}  {role_min:>20.6}  {:>9.6}",
                cos(a.axis_raw_at(l), b.axis_raw_at(l))
            );
        }
        Ok(())
    }
}
