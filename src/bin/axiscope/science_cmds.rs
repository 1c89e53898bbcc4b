//! Subcommands of the method: build a bundle, project transcripts and roles, report the
//! fidelity numbers.
//!
//! Over 600 lines: the three commands share their argument types, the rollout runner and
//! the report's output; each is one section, build first.

use anyhow::{Context, Result, bail};
use axiscope::engine::backend::now_or_err;
use axiscope::engine::chat::{Message, Role};
use axiscope::engine::{Model, Session, StopReason};
use axiscope::science::data::{self, Question};
use axiscope::science::pipeline::{self, BuildOptions, RolloutOutput, RolloutPlan};
use axiscope::science::{
    Bundle, DEFAULT_CAP_PERCENTILE, FidelityReport, ModelInfo, default_cap_band,
};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::common::{fmt_secs, load, model_name, read_bundle, sha256_hex, write_bundle};
use crate::edits::EditArgs;
use crate::rollout_cache::{read_rollouts, write_rollouts};

#[derive(Args)]
pub struct BuildArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Folder of role files (`<role>.json`, `default.json` for the Assistant).
    #[arg(long, default_value = "data/roles")]
    pub roles: PathBuf,
    /// Questions, JSON Lines `{"question": "...", "id": N}`.
    #[arg(long, default_value = "data/questions.jsonl")]
    pub questions: PathBuf,
    /// System prompts per role (the first K of its file; the default uses all of its own).
    /// Default 1: more prompts per role barely steady the axis (see --default-seeds).
    #[arg(long)]
    pub prompts_per_role: Option<usize>,
    /// Questions per prompt, a seeded choice shared by every role (default 80: all of ours).
    #[arg(long)]
    pub questions_per_role: Option<usize>,
    /// Sampled replies per default prompt x question (default 4). Most of the axis's noise
    /// comes from the default's rollouts and from how the default answers each question,
    /// little from the roles' prompts, so the default plan spends rollouts on distinct
    /// questions and on the default: 80 questions x 1 prompt per role, the default's 5
    /// prompts x 80 questions x 4 seeds, 6880 rollouts, about 11 minutes on 2 cores
    /// (docs/method.md, "Build plan").
    #[arg(long)]
    pub default_seeds: Option<usize>,
    /// Reply length in tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Small preset for tests and trials: 1 prompt x 2 questions, the default 2 seeds,
    /// 16-token replies (explicit options still win).
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads per job.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Rollouts run in parallel, each on its own copy of the KV cache (the weights are
    /// shared). The result does not depend on it.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Rollouts each job decodes together, one batched forward pass per token for all of
    /// them (each has its own KV cache; the weights are read once per pass). The result does
    /// not depend on it.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// Read every reply back in a second, teacher-forced pass instead of keeping the residuals
    /// recorded while it was generated. Same bundle (the values are identical); slower. For
    /// checking and timing.
    #[arg(long)]
    pub always_reread: bool,
    /// Analysis layer for the map and the report. Default: chosen on half of the questions
    /// (the layer where PC1 of one quarter of them best matches the axis of another, the
    /// last 3 layers left out) and reported on the other half; the middle layer with fewer
    /// than 4 questions (docs/method.md, "Choosing the layer").
    #[arg(long)]
    pub layer: Option<usize>,
    /// Name substituted for `{model_name}` in the default prompts (default: the model file's
    /// name without its quantization suffix).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Also write every rollout's reply as JSON Lines (to judge the role-play by eye).
    #[arg(long)]
    pub replies: Option<PathBuf>,
    /// Rollout cache: when the file exists, this plan's rollouts are read from it instead of
    /// run (re-assembling a bundle after a change of the analysis, or a smaller plan with
    /// the same seed, takes seconds, not an hour); otherwise the rollouts are run and
    /// written to it.
    #[arg(long)]
    pub rollouts_cache: Option<PathBuf>,
    /// Bundle path: a directory, or one file when it ends in `.axb`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ProjectArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Conversation (JSON `{"conversation": [...]}`). With user turns only, the replies are
    /// generated turn by turn first (the drift experiment).
    #[arg(long, conflicts_with = "roles", required_unless_present = "roles")]
    pub transcript: Option<PathBuf>,
    /// Folder of new role files to place on the bundle's map (rollouts with the bundle's
    /// settings and questions).
    #[arg(long)]
    pub roles: Option<PathBuf>,
    /// Question texts for `--roles` (the bundle stores only their ids).
    #[arg(long, default_value = "data/questions.jsonl")]
    pub questions: PathBuf,
    /// Layer to project at (default: the bundle's analysis layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// System prompt put before a generated conversation (none: the template's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Reply length when generating a conversation's replies.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Name for `{model_name}` in role prompts (as in `build`).
    #[arg(long)]
    pub model_name: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Capping/steering while generating a conversation; the replies are then read back by
    /// the unedited model.
    #[command(flatten)]
    pub edits: EditArgs,
}

#[derive(Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// Rollouts a build job decodes together by default (`--batch`).
const DEFAULT_BATCH: usize = 8;

/// Runs the rollouts on `jobs` threads in parallel, each advancing `batch` sessions together,
/// printing progress on stderr. Results are in plan order; `None` marks a rollout whose
/// replies were all empty.
fn run_rollouts(
    model: &Model,
    plans: &[RolloutPlan],
    opts: &BuildOptions,
    jobs: usize,
    threads: usize,
    batch: usize,
) -> Result<Vec<Option<RolloutOutput>>> {
    let jobs = jobs.clamp(1, plans.len().max(1));
    let batch = batch.clamp(1, plans.len().div_ceil(jobs).max(1));
    let queue = pipeline::PlanQueue::new(plans);
    struct Shared {
        results: Vec<Option<RolloutOutput>>,
        done: usize,
        tokens: usize,
        error: Option<anyhow::Error>,
    }
    let shared = Mutex::new(Shared {
        results: vec![None; plans.len()],
        done: 0,
        tokens: 0,
        error: None,
    });
    let t0 = Instant::now();
    let total = plans.len();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let backend = match model.cpu_backend(threads) {
                    Ok(b) => b,
                    Err(e) => {
                        shared.lock().unwrap().error.get_or_insert(e.into());
                        return;
                    }
                };
                // One load per job (its own threads); the batch's sessions share its weights.
                let mut sessions: Vec<Session> = (1..batch)
                    .map(|_| Session::new(Box::new(backend.fork())))
                    .collect();
                sessions.insert(0, Session::new(Box::new(backend)));
                let ran = now_or_err(pipeline::run_rollouts_async(
                    model,
                    &mut sessions,
                    plans,
                    opts,
                    &mut |prev| {
                        if shared.lock().unwrap().error.is_some() {
                            return None;
                        }
                        queue.take(prev)
                    },
                    &mut |i, out| {
                        let p = &plans[i];
                        let mut s = shared.lock().unwrap();
                        s.done += 1;
                        let what = match &out {
                            Some(o) => {
                                s.tokens += o.generated;
                                let stop = if o.stop == StopReason::EndOfTurn { "end" } else { "max" };
                                format!("{} tok ({stop})", o.generated)
                            }
                            None => "EMPTY reply, left out".to_string(),
                        };
                        s.results[i] = out;
                        let el = t0.elapsed().as_secs_f64();
                        let eta = el / s.done as f64 * (total - s.done) as f64;
                        eprintln!(
                            "[{:>4}/{total}] {} p{} q{}: {what} | {:.1} gen tok/s | {} elapsed, ETA {}",
                            s.done,
                            p.role,
                            p.prompt_index,
                            p.question_id,
                            s.tokens as f64 / el,
                            fmt_secs(el),
                            fmt_secs(eta)
                        );
                    },
                ));
                if let Err(e) = ran {
                    shared.lock().unwrap().error.get_or_insert(e.into());
                }
            });
        }
    });
    let s = shared.into_inner().unwrap();
    if let Some(e) = s.error {
        return Err(e);
    }
    Ok(s.results)
}

pub fn build(a: BuildArgs) -> Result<()> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let sha256 = sha256_hex(&bytes);
    let model =
        Model::from_bytes(bytes).with_context(|| format!("cannot load {}", a.model.display()))?;
    let model_name = a
        .model_name
        .clone()
        .unwrap_or_else(|| model_name(&a.model, &model));
    let base = if a.quick {
        BuildOptions::quick()
    } else {
        BuildOptions::full()
    };
    let mut opts = BuildOptions {
        prompts_per_role: a.prompts_per_role.unwrap_or(base.prompts_per_role),
        questions_per_role: a.questions_per_role.unwrap_or(base.questions_per_role),
        default_seeds: a.default_seeds.unwrap_or(base.default_seeds),
        max_tokens: a.max_tokens.unwrap_or(base.max_tokens),
        seed: a.seed,
        always_reread: a.always_reread,
        ..base
    };
    if let Some(layer) = a.layer.filter(|&l| l >= model.config.n_layers) {
        bail!(
            "--layer {layer}: the model has layers 0..{}",
            model.config.n_layers - 1
        );
    }
    let set = data::read_role_dir(&a.roles, &model_name)?;
    let default = set.default.as_ref().with_context(|| {
        format!(
            "{}: no default.json (the Assistant's prompts)",
            a.roles.display()
        )
    })?;
    if set.roles.is_empty() {
        bail!("{}: no role files besides default.json", a.roles.display());
    }
    let all_questions = data::read_questions(&a.questions)?;
    if a.questions_per_role.is_none() {
        // A question file smaller than the preset: the preset means all of it.
        opts.questions_per_role = opts.questions_per_role.min(all_questions.len());
    }
    let questions = pipeline::choose_questions(&all_questions, opts.questions_per_role, opts.seed)?;
    let plans = pipeline::plan_rollouts(&set.roles, Some(default), &questions, &opts)?;
    eprintln!(
        "building: {} roles x {} prompts + default x {} prompts x {} seeds, {} questions each, {} tokens per reply: {} rollouts on {} job(s) x {} thread(s), {} at a time per job",
        set.roles.len(),
        opts.prompts_per_role,
        default.prompts.len(),
        opts.default_seeds,
        questions.len(),
        opts.max_tokens,
        plans.len(),
        a.jobs,
        a.threads,
        a.batch
    );
    let t0 = Instant::now();
    let cached = match &a.rollouts_cache {
        Some(path) if path.exists() => Some(read_rollouts(path, &plans)?),
        _ => None,
    };
    let results = match cached {
        Some(r) => {
            eprintln!("read {} rollouts from the cache", r.len());
            r
        }
        None => {
            let r = run_rollouts(&model, &plans, &opts, a.jobs, a.threads, a.batch)?;
            if let Some(path) = &a.rollouts_cache {
                write_rollouts(path, &plans, &r)?;
            }
            r
        }
    };
    let skipped = results.iter().filter(|r| r.is_none()).count();
    let reread = results.iter().flatten().filter(|o| o.reread).count();
    let results_n = results.len();
    if let Some(path) = &a.replies {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        for (p, r) in plans.iter().zip(&results) {
            let line = json!({
                "role": p.role, "prompt_index": p.prompt_index, "question_id": p.question_id,
                "sample": p.sample, "question": p.question, "reply": r.as_ref().map(|o| o.reply.as_str()),
                "tokens": r.as_ref().map(|o| o.generated), "stop": r.as_ref().map(|o| o.stop),
            });
            writeln!(f, "{line}")?;
        }
        f.flush()?;
    }
    let band_tokens: Vec<f32> = results
        .iter()
        .flatten()
        .flat_map(|o| o.band_tokens.iter().copied())
        .collect();
    let rollouts: Vec<_> = results
        .into_iter()
        .flatten()
        .map(|o| o.activation)
        .collect();
    let provenance = pipeline::Provenance {
        model_name: &model_name,
        chat_template: model.template.name(),
        default_prompts: default.prompts.len(),
        skipped_empty_rollouts: skipped,
        recorded_rollouts: results_n - skipped - reread,
        reread_rollouts: reread,
        tool: format!("axiscope {}", env!("CARGO_PKG_VERSION")),
    };
    let info = ModelInfo {
        name: model.config.name.clone(),
        sha256,
        n_layers: model.config.n_layers,
        hidden: model.config.hidden,
    };
    let bundle = pipeline::assemble_bundle(
        info,
        a.layer,
        &set.roles,
        opts.settings(&questions, &provenance),
        &rollouts,
        &band_tokens,
    )?;
    write_bundle(&bundle, &a.out)?;
    eprintln!(
        "wrote {} ({} rollouts, {skipped} left out as empty) in {}",
        a.out.display(),
        rollouts.len(),
        fmt_secs(t0.elapsed().as_secs_f64())
    );
    if let Some(rep) = &bundle.fidelity {
        eprint!("{rep}");
    }
    Ok(())
}

pub fn project(a: ProjectArgs) -> Result<()> {
    let model = load(&a.model)?;
    let (bundle, edits, about) = a.edits.resolve(&model)?;
    let b = bundle.context("project needs --bundle")?;
    let layer = a.layer.unwrap_or(b.analysis_layer);
    if layer >= b.vectors.n_layers {
        bail!(
            "--layer {layer}: the bundle has layers 0..{}",
            b.vectors.n_layers - 1
        );
    }
    let mut session = Session::new(Box::new(model.cpu_backend(a.threads)?));
    if let Some(dir) = &a.roles {
        if !edits.is_empty() {
            bail!("--roles places roles with the plain model: capping and steering do not apply");
        }
        return place_roles(&model, &mut session, &b, dir, &a, layer);
    }
    let path = a
        .transcript
        .as_ref()
        .expect("clap requires --transcript or --roles");
    let t = data::read_transcript(path)?;
    let generated = t.user_only();
    let messages = if generated {
        let mut msgs = t.messages.clone();
        if let Some(sys) = &a.system {
            if msgs.first().is_some_and(|m| m.role == Role::System) {
                bail!(
                    "{}: the transcript has its own system turn; drop --system",
                    path.display()
                );
            }
            msgs.insert(0, Message::new(Role::System, sys.clone()));
        }
        let opts = BuildOptions {
            max_tokens: a.max_tokens,
            seed: a.seed,
            ..BuildOptions::standard()
        };
        let quiet = a.json;
        pipeline::generate_conversation(
            &model,
            &mut session,
            &msgs,
            &opts,
            &edits,
            &mut |k, text| {
                if !quiet {
                    eprintln!("[turn {k}] {}", text.replace('\n', " "));
                }
            },
        )?
    } else {
        if !edits.is_empty() || a.system.is_some() {
            bail!(
                "{}: the transcript has assistant turns; --system, capping and steering only apply when generating the replies",
                path.display()
            );
        }
        t.messages.clone()
    };
    // Generated with edits: the cache holds edited activations, so read back from scratch.
    let turns = pipeline::project_conversation(
        &model,
        &mut session,
        &messages,
        &b.vectors,
        layer,
        Some(&b.layer_pcas[layer]),
        edits.is_empty(),
    )?;
    let default_projection = b.vectors.default_projection(layer);
    let reply_sd = b.stats.reply_sd(layer);
    if a.json {
        let turns: Vec<_> = turns
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).expect("serialises");
                if generated {
                    v["reply"] = json!(messages[t.message].content);
                }
                v
            })
            .collect();
        let out = json!({
            "layer": layer, "transcript": t.name, "generated": generated, "edits": about,
            "default_projection": default_projection, "reply_sd": reply_sd, "turns": turns,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: projection on the Assistant Axis at layer {layer} (default {default_projection:.2}, mean of roles 0)",
            t.name
        );
        println!("  turn  reply   user  tokens");
        for t in &turns {
            let user = t
                .user_projection
                .map_or("-".to_string(), |u| format!("{u:.2}"));
            println!(
                "  {:>4} {:>6.2} {:>6} {:>7}",
                t.turn, t.projection, user, t.n_tokens
            );
        }
    }
    Ok(())
}

fn place_roles(
    model: &Model,
    session: &mut Session,
    b: &Bundle,
    dir: &Path,
    a: &ProjectArgs,
    layer: usize,
) -> Result<()> {
    let model_name = a
        .model_name
        .clone()
        .unwrap_or_else(|| model_name(&a.model, model));
    let set = data::read_role_dir(dir, &model_name)?;
    if set.roles.is_empty() {
        bail!("{}: no role files besides default.json", dir.display());
    }
    // The bundle's questions, prompts per role, reply length, sampling and seed: a role that
    // is already in the bundle lands where the bundle has it.
    let mut ids: Vec<u32> = b.stats.rollouts.iter().map(|r| r.question_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let all: Vec<Question> = data::read_questions(&a.questions)?;
    let questions: Vec<Question> = ids
        .iter()
        .map(|id| {
            all.iter().find(|q| q.id == *id).cloned().with_context(|| {
                format!(
                    "{}: no question id {id}, which the bundle used",
                    a.questions.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let opts = BuildOptions::of_bundle(&b.settings, questions.len());
    let plans = pipeline::plan_rollouts(&set.roles, None, &questions, &opts)?;
    let mut placed = Vec::new();
    for role in &set.roles {
        let mut acts = Vec::new();
        for p in plans.iter().filter(|p| p.role == role.name) {
            if let Some(o) = pipeline::run_rollout(model, session, p, &opts)? {
                if !a.json {
                    eprintln!(
                        "[{} p{} q{}] {}",
                        p.role,
                        p.prompt_index,
                        p.question_id,
                        o.reply.replace('\n', " ")
                    );
                }
                acts.push(o.activation);
            }
        }
        if acts.is_empty() {
            bail!("role {}: every reply was empty", role.name);
        }
        placed.push(pipeline::place_role(b, &acts, layer)?);
    }
    let default_projection = b.vectors.default_projection(layer);
    if a.json {
        let out = json!({
            "layer": layer, "analysis_layer": b.analysis_layer, "default_projection": default_projection,
            "default_pc": b.default_pc(), "roles": placed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "layer {layer}: default projection {default_projection:.2}; PCs at layer {} (default PC1 {:.2})",
            b.analysis_layer,
            b.default_pc()[0]
        );
        for p in &placed {
            let pcs: Vec<String> = p.pc.iter().take(3).map(|v| format!("{v:.2}")).collect();
            println!(
                "  {:<24} projection {:>7.2}  PC1-3 [{}]  nearest {}",
                p.role,
                p.projection,
                pcs.join(", "),
                p.nearest.join(", ")
            );
        }
    }
    Ok(())
}

pub fn report(a: ReportArgs) -> Result<()> {
    let b = read_bundle(&a.bundle)?;
    let rep = match &b.fidelity {
        Some(r) => r.clone(),
        // Bundles written without a report: everything but split-half (which needs rollouts).
        None => FidelityReport::compute(&b.vectors, b.analysis_layer, None)?,
    };
    let names = |v: &[axiscope::science::RoleDistance]| {
        v.iter().map(|d| d.role.clone()).collect::<Vec<_>>()
    };
    let cap = default_cap_band(b.model.n_layers);
    if a.json {
        let out = json!({
            "model": b.model, "settings": b.settings,
            "layer": rep.analysis_layer,
            "cos_pc1_axis": rep.cos_pc1_axis,
            "explained_variance": rep.explained_variance_ratio,
            "nearest": names(&rep.nearest_by_projection),
            "farthest": names(&rep.farthest_by_projection),
            "cos_pc1_axis_per_layer": rep.cos_pc1_axis_per_layer,
            "split_half_cos": rep.split_half_cos(),
            "split_half_cos_per_layer": rep.split_half.as_ref().map(|s| &s.cos_per_layer),
            "default_pc1": rep.default_pc1,
            "default_pc1_rank": rep.default_pc1_rank,
            "role_pc1_range": rep.role_pc1_range,
            "layer_choice": rep.layer_choice,
            "held_out": rep.held_out,
            "capping_default": {
                "band": [cap.start, cap.end],
                "percentile": DEFAULT_CAP_PERCENTILE,
                "reach": rep.default_cap,
            },
            "fidelity": rep,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let s = &b.settings;
        println!(
            "{} (sha256 {}), bundle of {} roles",
            b.model.name,
            &b.model.sha256[..b.model.sha256.len().min(12)],
            b.vectors.n_roles()
        );
        println!(
            "  {} prompts per role x {} questions (the default {} seeds), {} tokens per reply, T {} top-p {} repetition penalty {}, seed {}",
            s.prompts_per_role,
            s.questions,
            s.default_seeds,
            s.max_new_tokens,
            s.temperature,
            s.top_p,
            s.repetition_penalty,
            s.seed
        );
        print!("{rep}");
        println!(
            "  capping default: layers {}:{}, percentile {DEFAULT_CAP_PERCENTILE}",
            cap.start, cap.end
        );
    }
    Ok(())
}
