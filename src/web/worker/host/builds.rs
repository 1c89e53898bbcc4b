//! The persona map's builds in the worker (the page's Build button, `?bench&map=`) and the
//! placing of a visitor's role, with the science pipeline `axiscope build` runs natively.

use crate::engine::Session;
use crate::engine::clock::now_ms;
use crate::science::data::Question;
use crate::science::pipeline::{self, BuildOptions, RolloutPlan};
use crate::science::{Bundle, ModelInfo, RolloutActivation};
use crate::web::protocol::{BuildSize, Event, RolePoint};

use super::{Host, HostError};

/// Rollouts a map build decodes together on the CPU engine: one forward pass per token for all
/// of them, each weight read once (BENCHMARKS.md, "Batched builds").
const BUILD_BATCH: usize = 8;

/// What a browser build keeps of a finished rollout.
#[derive(Clone)]
struct Rollout {
    activation: RolloutActivation,
    reread: bool,
}

impl Host {
    /// Places a role given by its system prompt on the map, as the bundle's roles were built:
    /// its replies to `n_questions` of the bundle's questions (science::pipeline rollouts with
    /// the bundle's sampling), averaged (docs/method.md), shown by their PCA coordinates and
    /// projection. Runs in a session of its own, so the conversation's caches are untouched.
    #[allow(clippy::too_many_arguments)]
    pub async fn place_role(
        &mut self,
        id: u32,
        name: &str,
        system: &str,
        n_questions: usize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        let bundle = self
            .usable_bundle()
            .ok_or("placing a role needs the persona bundle of the loaded model")?;
        let opts = BuildOptions::of_bundle(&bundle.settings, n_questions);
        let questions = bundle_questions(bundle, n_questions)?;
        let plans: Vec<RolloutPlan> = questions
            .iter()
            .map(|q| RolloutPlan {
                role: name.to_string(),
                prompt_index: 0,
                system: system.to_string(),
                question_id: q.id,
                question: q.text.clone(),
                sample: 0,
                seed: pipeline::rollout_seed(opts.seed, name, 0, q.id, 0),
            })
            .collect();
        let rollouts: Vec<RolloutActivation> = self
            .run_rollouts(id, &plans, &opts, cancelled, emit)
            .await?
            .into_iter()
            .map(|r| r.activation)
            .collect();
        let bundle = self.usable_bundle().expect("checked above");
        if rollouts.is_empty() {
            return Err("the model gave only empty replies; try another prompt".into());
        }
        let placed = pipeline::place_role(bundle, &rollouts, bundle.analysis_layer)?;
        let role = RolePoint {
            name: name.to_string(),
            category: "yours".into(),
            pcs: placed.pc,
            projection: placed.projection,
            spread: placed.spread,
        };
        emit(Event::RolePlaced {
            id,
            role,
            nearest: placed.nearest,
        });
        Ok(())
    }

    /// Builds a persona bundle for the loaded model in the worker with the science pipeline
    /// `axiscope build` runs natively (same roles, question choice, seeds and sampling), at
    /// one of the page's sizes. Makes it the bundle in use and returns it.
    pub async fn build_bundle(
        &mut self,
        id: u32,
        size: BuildSize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Bundle, HostError> {
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let plan = crate::web::catalog::BuildPlan::new(size, &self.model_name);
        let (questions, plans) = (plan.questions()?, plan.rollouts()?);
        let default_prompts = plan.default.as_ref().map_or(0, |d| d.prompts.len());
        let opts = &plan.opts;
        let (template, config) = (model.template.name(), model.config.clone());
        let rollouts = self.run_rollouts(id, &plans, opts, cancelled, emit).await?;
        let provenance = pipeline::Provenance {
            model_name: &self.model_name,
            chat_template: template,
            default_prompts,
            skipped_empty_rollouts: plans.len() - rollouts.len(),
            recorded_rollouts: rollouts.iter().filter(|r| !r.reread).count(),
            reread_rollouts: rollouts.iter().filter(|r| r.reread).count(),
            tool: format!("axiscope {} (web app)", env!("CARGO_PKG_VERSION")),
        };
        let rollouts: Vec<RolloutActivation> = rollouts.into_iter().map(|r| r.activation).collect();
        let info = ModelInfo {
            name: config.name.clone(),
            sha256: self.model_sha256.clone().unwrap_or_default(),
            n_layers: config.n_layers,
            hidden: config.hidden,
        };
        let bundle = pipeline::assemble_bundle(
            info,
            None,
            &plan.roles,
            opts.settings(&questions, &provenance),
            &rollouts,
            &[],
        )?;
        self.set_bundle(bundle.clone());
        Ok(bundle)
    }

    /// The benchmark's map build (`?bench&map=`): [`Host::build_bundle`], the path the page's
    /// Build button takes, timed up to the map's view. Cache Storage is the worker's, so a
    /// timed build neither reads nor writes a cached map.
    pub async fn bench_map(
        &mut self,
        id: u32,
        size: BuildSize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<crate::web::protocol::MapBuild, HostError> {
        let t0 = now_ms();
        let mut replies = 0;
        self.build_bundle(id, size, cancelled, &mut |e| {
            if let Event::BuildProgress { done, .. } = &e {
                replies = *done;
            }
            emit(e);
        })
        .await?;
        let view = self.bundle_view().ok_or("the built map has no view")?;
        let seconds = (now_ms() - t0) / 1000.0;
        Ok(crate::web::protocol::MapBuild {
            size,
            replies,
            rollouts: view.n_rollouts,
            roles: view.roles.len(),
            seconds,
            replies_per_s: replies as f64 / seconds,
            cos_pc1_axis: view.cos_pc_axis.first().copied(),
        })
    }

    /// Runs `plans` in batches of [`BUILD_BATCH`] sessions where the backend can share its
    /// weights between sequences (the CPU engine), else one at a time, reporting each finished
    /// rollout; returns them in plan order, without the ones whose replies were all empty.
    /// Cancelling lets the rollouts under way finish (a few seconds), then stops.
    async fn run_rollouts(
        &self,
        id: u32,
        plans: &[RolloutPlan],
        opts: &BuildOptions,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Vec<Rollout>, HostError> {
        let (model, factory) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        let first = factory(model)?;
        let mut sessions: Vec<Session> = (1..BUILD_BATCH.min(plans.len()))
            .map_while(|_| first.fork_sequence().map(Session::new))
            .collect();
        sessions.insert(0, Session::new(first));
        let queue = pipeline::PlanQueue::new(plans);
        let mut stopped = false;
        let mut results: Vec<Option<Rollout>> = vec![None; plans.len()];
        let mut done = 0;
        pipeline::run_rollouts_async(
            model,
            &mut sessions,
            plans,
            opts,
            &mut |prev| {
                stopped |= cancelled();
                if stopped { None } else { queue.take(prev) }
            },
            &mut |i, out| {
                done += 1;
                emit(Event::BuildProgress {
                    id,
                    done,
                    total: plans.len(),
                    role: plans[i].role.clone(),
                    reply: out.as_ref().map(|o| o.reply.clone()).unwrap_or_default(),
                });
                // The band's token residuals (`band_tokens`) are not kept: a browser build has
                // no room for them (hundreds of MB at the standard size).
                results[i] = out.map(|o| Rollout {
                    activation: o.activation,
                    reread: o.reread,
                });
            },
        )
        .await?;
        if stopped {
            return Err("cancelled".into());
        }
        Ok(results.into_iter().flatten().collect())
    }
}

/// The first `n` of the questions the bundle's roles answered (its manifest names them), or
/// else a seeded choice from ours.
fn bundle_questions(b: &Bundle, n: usize) -> Result<Vec<Question>, HostError> {
    let all = crate::web::catalog::questions();
    let listed: Vec<Question> = b
        .settings
        .extra
        .get("question_ids")
        .and_then(|v| v.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_u64())
                .filter_map(|id| all.iter().find(|q| q.id as u64 == id).cloned())
                .collect()
        })
        .unwrap_or_default();
    if listed.len() >= n {
        return Ok(listed.into_iter().take(n).collect());
    }
    pipeline::choose_questions(&all, n.min(all.len()), b.settings.seed).map_err(HostError::from)
}
