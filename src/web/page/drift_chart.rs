//! The drift curve: per assistant turn, the reply's projection on the Assistant Axis (0 = the
//! average role), the default Assistant's level, and a band for typical Assistant replies.
//! Hovering a point shows the turn; clicking it scrolls the chat there.

use leptos::prelude::*;

use super::chart::{Scale, extent, fmt, polyline, spread_text, tick_labels, ticks};
use super::embed::EmbedButton;
use super::state::{Embed, use_app};
use super::tour::WhatIsThis;
use crate::web::dom;
use crate::web::protocol::Branch;
use web_sys::ScrollLogicalPosition::Center;

const W: f32 = 600.0;
const H: f32 = 290.0;
const LEFT: f32 = 52.0;
const RIGHT: f32 = 14.0;
const TOP: f32 = 14.0;
const BOTTOM: f32 = 38.0;

/// One point: turn, branch, projection, reply text.
#[derive(Clone, PartialEq)]
struct Pt {
    turn: usize,
    branch: Branch,
    p: f32,
    text: String,
}

/// The card's "what am I looking at?" note.
const DRIFT_NOTE: &str = "One point per reply: the reply's mean activation at the analysis layer, projected on the Assistant Axis. The dashed line is the default Assistant's level and the band its typical replies; 0 is the average role. A point sinking toward 0 over the turns is the conversation pulling the model out of its Assistant persona. Each point's whisker is one reply's spread: how far single replies of one role stray from that role's mean (a standard deviation over the bundle's replies). A single point is that uncertain; a trend over several turns says more.";

#[component]
pub fn DriftChart() -> impl IntoView {
    let app = use_app();
    let points = Memo::new(move |_| {
        app.turns.with(|turns| {
            let mut out = Vec::new();
            for t in turns {
                for b in [Branch::Default, Branch::Capped] {
                    let r = t.reply(b);
                    if let Some(pt) = r.point.get() {
                        out.push(Pt {
                            turn: t.index,
                            branch: b,
                            p: pt.projection,
                            text: r.text.get(),
                        });
                    }
                }
            }
            out
        })
    });
    let chart = move || {
        let bundle = app.bundle.get()?;
        let pts = points.get();
        // One reply's projection is this uncertain: each point carries it as a whisker.
        let sd = bundle.reply_sd.unwrap_or(0.0);
        let n_turns = app.turns.with(|t| t.len()).max(4);
        let x = Scale::new((0.5, n_turns as f32 + 0.5), (LEFT, W - RIGHT));
        let (lo, hi) = extent(
            pts.iter().flat_map(|p| [p.p - sd, p.p + sd]).chain([
                0.0,
                bundle.default_projection,
                bundle.default_band[0],
                bundle.default_band[1],
            ]),
            0.12,
        );
        let y = Scale::new((lo, hi), (H - BOTTOM, TOP));
        let y_ticks = ticks(lo, hi, 5);
        let x_step = (n_turns / 12).max(1);
        let band = (y.map(bundle.default_band[1]), y.map(bundle.default_band[0]));
        let level = y.map(bundle.default_projection);
        let zero = y.map(0.0);
        let line = |b: Branch| {
            let xy: Vec<(f32, f32)> = pts
                .iter()
                .filter(|p| p.branch == b)
                .map(|p| (x.map(p.turn as f32 + 1.0), y.map(p.p)))
                .collect();
            polyline(&xy)
        };
        let lines = [line(Branch::Default), line(Branch::Capped)];
        let n_points = pts.len();
        let circles = pts
            .into_iter()
            .map(|pt| {
                let (cx, cy) = (x.map(pt.turn as f32 + 1.0), y.map(pt.p));
                let key = (pt.turn, pt.branch);
                let target = format!("turn-{}-{}", pt.turn, pt.branch.name());
                let target2 = target.clone();
                let label = format!(
                    "Turn {}, {}: axis {}{}",
                    pt.turn + 1,
                    pt.branch.name(),
                    fmt(pt.p),
                    spread_text(bundle.reply_sd)
                );
                view! {
                    <line class=format!("spread {}", pt.branch.name()) x1=cx x2=cx y1=y.map(pt.p + sd) y2=y.map(pt.p - sd)></line>
                    <circle
                        class=format!("pt {}", pt.branch.name())
                        class:hovered=move || app.hover.get() == Some(key)
                        data-testid="drift-point"
                        data-branch=pt.branch.name()
                        data-turn=pt.turn
                        data-projection=pt.p.to_string()
                        cx=cx
                        cy=cy
                        r="6"
                        tabindex="0"
                        role="button"
                        aria-label=label
                        on:mouseenter=move |_| app.hover.set(Some(key))
                        on:mouseleave=move |_| app.hover.set(None)
                        on:focus=move |_| app.hover.set(Some(key))
                        on:blur=move |_| app.hover.set(None)
                        on:click=move |_| dom::scroll_to(&target, Center)
                        on:keydown=move |ev| {
                            if ev.key() == "Enter" || ev.key() == " " {
                                ev.prevent_default();
                                dom::scroll_to(&target2, Center);
                            }
                        }
                    ></circle>
                }
            })
            .collect_view();
        Some(view! {
            <svg
                class="chart drift"
                data-testid="drift-chart"
                viewBox=format!("0 0 {W} {H}")
                role="group"
                aria-label="Drift chart: each reply's projection on the Assistant Axis, per turn"
            >
                <title>"Drift chart: each reply's projection on the Assistant Axis, per turn"</title>
                <desc>{format!(
                    "{} points; the default Assistant sits at {}, its typical replies between {} and {}; 0 is the average role. The table below lists the points.",
                    n_points, fmt(bundle.default_projection), fmt(bundle.default_band[0]), fmt(bundle.default_band[1])
                )}</desc>
                <rect class="band" x=LEFT y=band.0 width=W - LEFT - RIGHT height=(band.1 - band.0).max(1.0)></rect>
                {y_ticks
                    .iter()
                    .zip(tick_labels(&y_ticks))
                    .map(|(&t, label)| {
                        let ty = y.map(t);
                        view! {
                            <g class="tick">
                                <line x1=LEFT x2=W - RIGHT y1=ty y2=ty></line>
                                <text x=LEFT - 6.0 y=ty + 4.0 text-anchor="end">{label}</text>
                            </g>
                        }
                    })
                    .collect_view()}
                {(1..=n_turns)
                    .filter(|t| (t - 1) % x_step == 0)
                    .map(|t| view! { <text class="xtick" x=x.map(t as f32) y=H - BOTTOM + 16.0 text-anchor="middle">{t.to_string()}</text> })
                    .collect_view()}
                <text class="axis-label" x=(LEFT + W - RIGHT) / 2.0 y=H - 4.0 text-anchor="middle">"assistant turn"</text>
                <text class="axis-label" x="12" y=(TOP + H - BOTTOM) / 2.0 text-anchor="middle" transform=format!("rotate(-90 12 {})", (TOP + H - BOTTOM) / 2.0)>
                    "projection on the axis"
                </text>
                <line class="zero" x1=LEFT x2=W - RIGHT y1=zero y2=zero></line>
                <text class="note" x=W - RIGHT - 4.0 y=zero - 4.0 text-anchor="end">"0 = average role"</text>
                <line class="level" data-testid="default-level" x1=LEFT x2=W - RIGHT y1=level y2=level></line>
                <text class="note level-label" x=W - RIGHT - 4.0 y=level - 4.0 text-anchor="end">"default Assistant"</text>
                <text class="note band-label" x=LEFT + 4.0 y=band.0 + 12.0>"typical Assistant replies (10-90%)"</text>
                <polyline class="line default" points=lines[0].clone()></polyline>
                <polyline class="line capped" points=lines[1].clone()></polyline>
                {circles}
            </svg>
        })
    };
    let tooltip = move || {
        let (turn, branch) = app.hover.get()?;
        let pt = points.with(|ps| {
            ps.iter()
                .find(|p| p.turn == turn && p.branch == branch)
                .cloned()
        })?;
        let spread = spread_text(app.bundle.with(|b| b.as_ref().and_then(|b| b.reply_sd)));
        let mut text: String = pt.text.chars().take(280).collect();
        if pt.text.chars().count() > 280 {
            text.push('…');
        }
        Some(view! {
            <p class="tooltip" data-testid="drift-tooltip">
                <strong>{format!("Turn {} ({}), axis {}{spread}: ", turn + 1, branch.name(), fmt(pt.p))}</strong>
                {text}
            </p>
        })
    };
    view! {
        <section class="card drift-card" class:tour-focus=move || app.tour_step.get() == Some(1) aria-labelledby="drift-h">
            <div class="card-head"><h2 id="drift-h">"Drift"</h2><EmbedButton view=Embed::Drift/></div>
            <WhatIsThis text=DRIFT_NOTE/>
            {move || match (app.bundle.with(|b| b.is_some()), app.bundle_error.get()) {
                (false, Some(e)) => view! { <p class="error" data-testid="bundle-error">{format!("No persona bundle, so no drift chart: {e}")}</p> }.into_any(),
                (false, None) => view! { <p class="muted">"Loading the persona bundle …"</p> }.into_any(),
                (true, _) => view! { <div class="chart-box">{chart}</div> <DriftTable points=points/> }.into_any(),
            }}
            {tooltip}
            <p class="legend">
                <span class="key default">"● default"</span>
                <span class="key capped">"● capped (read back by the unsteered model)"</span>
            </p>
            <p class="muted small">
                "Each point is one reply's mean residual at the analysis layer, projected on the Assistant Axis. "
                "Projections depend on the topic as well as the persona (talk about code also projects high); "
                "watch how they move within one conversation."
            </p>
        </section>
    }
}

/// The chart's points as a table (for screen readers, and for reading exact values).
#[component]
fn DriftTable(points: Memo<Vec<Pt>>) -> impl IntoView {
    view! {
        <details class="table-view" data-testid="drift-table">
            <summary>"Show as a table"</summary>
            <table>
                <caption>"Each reply's projection on the Assistant Axis"</caption>
                <thead>
                    <tr><th scope="col">"Turn"</th><th scope="col">"Reply"</th><th scope="col">"Projection"</th></tr>
                </thead>
                <tbody>
                    {move || points.get().into_iter().map(|p| view! {
                        <tr><td>{(p.turn + 1).to_string()}</td><td>{p.branch.name()}</td><td>{fmt(p.p)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </details>
    }
}
