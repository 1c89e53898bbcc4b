//! The guided tour for a first visit, in three steps, each on its card: where personas live
//! (the map), how a conversation drifts (the first turns of the therapy preset, run on the
//! model with short replies), how capping holds the Assistant (the same turns again, Default
//! and Capped side by side). Each step says why in two sentences, quotes the loaded bundle's
//! and this run's numbers, and the paper's for comparison (docs/method.md). Started from the
//! header or by `#tour`; skipping or finishing it is remembered in localStorage, so the offer
//! is not made again. Escape leaves it.

use leptos::prelude::*;

use super::chart::{fmt, interval};
use super::state::{AppState, use_app};
use crate::web::catalog;
use crate::web::dom;
use crate::web::protocol::Branch;

/// localStorage key: set once the tour was finished or skipped.
const SEEN_KEY: &str = "axiscope:tour";
/// User turns of the therapy preset the tour runs, and the length of its replies: enough to
/// see the points move, short enough for a slow CPU.
pub const TOUR_TURNS: usize = 3;
const TOUR_MAX_TOKENS: usize = 24;
/// The paper's cap (method.md): the 75th percentile.
const TOUR_CAP: u8 = 75;

const TITLES: [&str; 3] = [
    "Where personas live",
    "How a conversation drifts",
    "How capping holds the Assistant",
];

/// Where a step's run is: the conversation is being cleared, its turns start and run, or it is done.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Resetting,
    /// The preset is about to be sent (a microtask away).
    Starting,
    Running,
    Done,
}

/// What the visitor's settings were before the tour changed them for its runs.
#[derive(Clone)]
struct Saved {
    max_tokens: usize,
    cap: u8,
    system: String,
}

pub fn seen() -> bool {
    call_storage("getItem", &[SEEN_KEY]).is_some_and(|v| v.as_string().is_some())
}

fn remember() {
    call_storage("setItem", &[SEEN_KEY, "seen"]);
}

/// `localStorage[method](args)`, or `None` where there is no storage (blocked, sandboxed:
/// the tour is then offered on every visit).
fn call_storage(method: &str, args: &[&str]) -> Option<wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let storage = js_sys::Reflect::get(&dom::window(), &"localStorage".into())
        .ok()
        .filter(|s| s.is_object())?;
    let f: js_sys::Function = js_sys::Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let args: js_sys::Array = args
        .iter()
        .map(|a| wasm_bindgen::JsValue::from_str(a))
        .collect();
    f.apply(&storage, &args).ok()
}

/// The offer under the header (first visits only) and the tour panel while it runs.
#[component]
pub fn Tour() -> impl IntoView {
    let app = use_app();
    let offer = RwSignal::new(!seen() && app.tour_step.get_untracked().is_none());
    let run = RwSignal::new(None::<(usize, Phase)>);
    let saved = StoredValue::new(None::<Saved>);
    let panel = NodeRef::<leptos::html::Div>::new();

    let close = move || {
        remember();
        offer.set(false);
        app.tour_step.set(None);
        if app.chatting() {
            app.stop();
        }
        if let Some(s) = saved.get_value() {
            app.sampling.update(|g| g.max_tokens = s.max_tokens);
            app.cap_percentile.set(s.cap);
            app.system.set(s.system);
        }
        saved.set_value(None);
        run.set(None);
    };
    let go = move |step: usize| {
        offer.set(false);
        if app.chatting() {
            // The next step starts from a clean conversation once this reply has stopped.
            app.stop();
        }
        app.tour_step.set(Some(step));
    };

    // Runs a step's conversation once the model is in and the worker idle.
    Effect::new(move |_| {
        let Some(step) = app.tour_step.get() else {
            return;
        };
        if step == 0 {
            return;
        }
        let ready = app.model.with(|m| m.is_some()) && app.bundle.with(|b| b.is_some());
        let idle = !app.busy();
        match run.get() {
            Some((s, _)) if s != step => run.set(None),
            None if ready && idle => {
                if saved.get_value().is_none() {
                    saved.set_value(Some(Saved {
                        max_tokens: app.sampling.get_untracked().max_tokens,
                        cap: app.cap_percentile.get_untracked(),
                        system: app.system.get_untracked(),
                    }));
                }
                app.sampling.update(|g| g.max_tokens = TOUR_MAX_TOKENS);
                app.system.set(String::new());
                app.cap_percentile.set(if step == 2 { TOUR_CAP } else { 0 });
                app.reset();
                run.set(Some((step, Phase::Resetting)));
            }
            Some((s, Phase::Resetting)) if idle => {
                if let Some(mut p) = catalog::presets().into_iter().find(|p| p.kind == "therapy") {
                    p.user_turns.truncate(TOUR_TURNS);
                    // Outside this effect's owner, as a click on Send is: the turn's signals
                    // would otherwise be disposed with this run of the effect, under the chat
                    // that shows them (the page's reset disposes them when their time comes).
                    queue_microtask(move || {
                        if app.tour_step.get_untracked() == Some(s) {
                            app.run_preset(&p);
                            run.set(Some((s, Phase::Running)));
                        }
                    });
                    run.set(Some((s, Phase::Starting)));
                } else {
                    run.set(Some((s, Phase::Running)));
                }
            }
            Some((s, Phase::Running)) if idle && app.preset_queue.with(|q| q.is_empty()) => {
                run.set(Some((s, Phase::Done)))
            }
            _ => {}
        }
    });
    // Each step moves its card into view and the keyboard to the panel.
    Effect::new(move |_| {
        let Some(step) = app.tour_step.get() else {
            return;
        };
        let panel = panel.get();
        // Again once the model and the bundle are in: the cards above grow then, which would
        // move the card away from where it was scrolled.
        app.model.with(|m| m.is_some());
        app.bundle.with(|b| b.is_some());
        // Next frame: the panel is drawn by then, and the room the page makes for it
        // (style.css) decides how far the card can scroll. Its heading goes to the top.
        request_animation_frame(move || {
            // The keyboard to the panel (fixed: focusing it scrolls nothing), the card to the top.
            if let Some(el) = panel {
                let _ = el.focus();
            }
            dom::scroll_to(
                ["map-h", "drift-h", "cap-h"][step],
                web_sys::ScrollLogicalPosition::Start,
            );
        });
    });
    // `#tour` starts it, whatever was remembered.
    if dom::window().location().hash().ok().as_deref() == Some("#tour") {
        go(0);
    }

    let progress = move || {
        let step = app.tour_step.get()?;
        if step == 0 {
            return None;
        }
        let text = match run.get() {
            _ if app.model.with(|m| m.is_none()) => "Waiting for the model to load …".to_string(),
            Some((_, Phase::Done)) => format!(
                "Done: {TOUR_TURNS} turns of the therapy conversation, replies cut at {TOUR_MAX_TOKENS} tokens."
            ),
            _ => {
                let done = app.turns.with(|t| {
                    t.iter()
                        .filter(|e| {
                            e.replies.iter().all(|r| !r.streaming.get())
                                && e.reply(Branch::Default).point.get().is_some()
                        })
                        .count()
                });
                format!(
                    "Running the therapy conversation on the model: {done} of {TOUR_TURNS} turns …"
                )
            }
        };
        Some(view! { <p class="small" data-testid="tour-progress" aria-live="polite">{text}</p> })
    };
    view! {
        <Show when=move || offer.get()>
            <p class="tour-offer" data-testid="tour-offer">
                "New here? "
                <button type="button" data-testid="tour-offer-start" on:click=move |_| go(0)>"Take the 3-step tour"</button>
                " "
                <button type="button" data-testid="tour-offer-dismiss" on:click=move |_| close()>"No thanks"</button>
            </p>
        </Show>
        {move || app.tour_step.get().map(|step| {
            let last = step + 1 == TITLES.len();
            view! {
                <div
                    class="tour"
                    role="dialog"
                    aria-modal="false"
                    aria-labelledby="tour-h"
                    data-testid="tour"
                    data-step=step
                    data-done=move || (step == 0 || run.get() == Some((step, Phase::Done))).to_string()
                    tabindex="-1"
                    node_ref=panel
                    on:keydown=move |ev| {
                        if ev.key() == "Escape" {
                            ev.prevent_default();
                            close();
                        }
                    }
                >
                    <p class="muted small">{format!("Tour · step {} of {}", step + 1, TITLES.len())}</p>
                    <h2 id="tour-h">{TITLES[step]}</h2>
                    <p>{why(step)}</p>
                    <p data-testid="tour-measured">{move || measured(app, step)}</p>
                    <p class="muted">{paper(step)}</p>
                    {progress}
                    <div class="row">
                        <button type="button" data-testid="tour-back" disabled={step == 0} on:click=move |_| go(step.saturating_sub(1))>"Back"</button>
                        {if last {
                            view! { <button type="button" data-testid="tour-finish" on:click=move |_| close()>"Finish"</button> }.into_any()
                        } else {
                            view! { <button type="button" data-testid="tour-next" on:click=move |_| go(step + 1)>"Next"</button> }.into_any()
                        }}
                        <button type="button" data-testid="tour-skip" on:click=move |_| close()>"Skip the tour"</button>
                    </div>
                </div>
            }
        })}
    }
}

/// The header's way in, for every visit.
#[component]
pub fn TourButton() -> impl IntoView {
    let app = use_app();
    view! {
        <button type="button" data-testid="tour-start" on:click=move |_| app.tour_step.set(Some(0))>"Tour"</button>
    }
}

fn why(step: usize) -> &'static str {
    match step {
        0 => {
            "Each marker is one of the roles the model was asked to play (a tutor, a pirate, a ghost), placed by the model's own activations while it answered in that role. The Assistant Axis runs from the average role to the model's default Assistant (the star); a marker's colour is its position along it."
        }
        1 => {
            "Below, the first turns of a conversation about loneliness run on the model in this page, with short replies, and each reply's mean activation is placed on the axis. Drifting away from the Assistant is what the paper warns of: the persona that keeps a model helpful and careful can slip in conversations like this one."
        }
        _ => {
            "The same conversation again, each reply twice: as the model writes it (Default) and with its activations floored on the axis over a band of layers (Capped). A cap only lifts what fell below the floor, so Assistant-like text passes unchanged while a drifting reply is pulled back."
        }
    }
}

fn paper(step: usize) -> &'static str {
    match step {
        0 => {
            "The paper, on 27-70B models: PC1 of persona space aligns with the Assistant Axis (cos > 0.71 in all three models) and alone explains about 49% of the role variance (Gemma 2 27B)."
        }
        1 => {
            "The paper, over up to 15 simulated turns: therapy-like and philosophy-of-AI conversations drift steadily away from the Assistant; coding and writing stay near it."
        }
        _ => {
            "The paper caps at the 75th percentile over 12-20% of the layers at 70-90% depth: about 50-60% fewer harmful answers to persona jailbreaks, capability benchmarks within a few percent."
        }
    }
}

/// The loaded bundle's numbers (step 1) and this run's (steps 2 and 3), as the cards show them.
fn measured(app: AppState, step: usize) -> String {
    let Some(b) = app.bundle.get() else {
        return "The persona bundle is loading …".into();
    };
    let points = |branch: Branch| -> Vec<f32> {
        app.turns.with(|t| {
            t.iter()
                .filter_map(|e| e.reply(branch).point.get().map(|p| p.projection))
                .collect()
        })
    };
    match step {
        0 => {
            let evr = b
                .explained_variance_ratio
                .first()
                .map_or("–".into(), |v| format!("{:.0}%", v * 100.0));
            let ivs = b.intervals.as_ref();
            let cos = b.cos_pc_axis.first().map_or("–".into(), |c| {
                let i = ivs.map_or(String::new(), |i| {
                    format!(
                        " {}, {:.0}% interval over the questions",
                        interval(&i.cos_pc1_axis),
                        i.level * 100.0
                    )
                });
                format!("{c:.2}{i}")
            });
            let split = b.split_half_cos.map_or(String::new(), |c| {
                let i = ivs.map_or(String::new(), |i| format!(" {}", interval(&i.split_half_cos)));
                format!("; axes built from two halves of the questions agree at cos {c:.2}{i}, which says how steady the axis is")
            });
            let name = app.model.with(|m| {
                m.as_ref()
                    .map_or(String::new(), |m| format!(" ({})", m.name))
            });
            format!(
                "This model{name}, at layer {} of {}: PC1 explains {evr} of the role variance of its {} roles and cos(PC1, axis) = {cos}{split}.",
                b.analysis_layer,
                b.n_layers,
                b.roles.len()
            )
        }
        1 => {
            let d = points(Branch::Default);
            match (d.first(), d.last()) {
                (Some(first), Some(last)) if d.len() > 1 => format!(
                    "This run: turn 1 at {}, turn {} at {} (the default Assistant sits at {}, its typical replies between {} and {}). One reply's projection is uncertain by {} on this model (the whiskers), so a few turns show a direction, not a measured slope.",
                    fmt(*first),
                    d.len(),
                    fmt(*last),
                    fmt(b.default_projection),
                    fmt(b.default_band[0]),
                    fmt(b.default_band[1]),
                    b.reply_sd
                        .map_or("several units".into(), |s| format!("± {}", fmt(s)))
                ),
                _ => format!(
                    "The default Assistant sits at {} on the axis, its typical replies between {} and {}; the points appear as the replies end.",
                    fmt(b.default_projection),
                    fmt(b.default_band[0]),
                    fmt(b.default_band[1])
                ),
            }
        }
        _ => {
            let (d, c) = (points(Branch::Default), points(Branch::Capped));
            let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
            let (s, e) = app.cap_band.get();
            if c.is_empty() {
                format!(
                    "Capping at the {TOUR_CAP}th percentile over layers {s}-{}; the points appear as the replies end.",
                    e.saturating_sub(1)
                )
            } else {
                format!(
                    "This run, capped at the {TOUR_CAP}th percentile over layers {s}-{}: mean projection {} as written, {} capped (read back by the unsteered model), over {} turns.",
                    e.saturating_sub(1),
                    fmt(mean(&d)),
                    fmt(mean(&c)),
                    c.len()
                )
            }
        }
    }
}

/// "What am I looking at?" on a card: a short note, closed until asked.
#[component]
pub fn WhatIsThis(text: &'static str) -> impl IntoView {
    view! {
        <details class="what">
            <summary>"What am I looking at?"</summary>
            <p class="small">{text}</p>
        </details>
    }
}
