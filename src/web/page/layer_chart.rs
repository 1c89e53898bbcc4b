//! Persona space across depth: per layer, how well PC1 lines up with the Assistant Axis and
//! how stable the axis is, the chosen layer marked. Clicking a layer shows the map there.

use leptos::prelude::*;

use super::chart::{Scale, fmt, polyline, tick_labels, ticks};
use super::state::use_app;
use crate::web::protocol::{BundleView, LayerView};

const W: f32 = 600.0;
const H: f32 = 150.0;
const LEFT: f32 = 52.0;
const RIGHT: f32 = 14.0;
const TOP: f32 = 10.0;
const BOTTOM: f32 = 30.0;

/// One line of the chart: its class, its legend and its figure at a layer.
struct Series {
    class: &'static str,
    name: &'static str,
    value: fn(&LayerView) -> Option<f32>,
}

const SERIES: [Series; 3] = [
    Series {
        class: "s-cos",
        name: "cos(PC1, axis)",
        value: |l| l.cos_pc_axis.first().copied(),
    },
    Series {
        class: "s-held",
        name: "held-out cos(PC1, axis)",
        value: |l| l.held_out_cos,
    },
    Series {
        class: "s-split",
        name: "split-half cos of the axis",
        value: |l| l.split_half_cos,
    },
];

/// "Layer 12: cos(PC1, axis) 0.07, held-out ... ".
fn layer_text(b: &BundleView, l: usize) -> String {
    let figures: Vec<String> = SERIES
        .iter()
        .filter_map(|s| Some(format!("{} {}", s.name, fmt((s.value)(b.layers.get(l)?)?))))
        .collect();
    let chosen = if l == b.analysis_layer {
        " (the chosen layer)"
    } else {
        ""
    };
    format!("Layer {l}{chosen}: {}", figures.join(", "))
}

#[component]
pub fn LayerChart() -> impl IntoView {
    let app = use_app();
    let shown = move || app.shown_layer();
    let chart = move || {
        let b = app.bundle.get()?;
        let n = b.layers.len();
        if n == 0 {
            return None;
        }
        let x = Scale::new((-0.5, n as f32 - 0.5), (LEFT, W - RIGHT));
        let lowest = SERIES
            .iter()
            .flat_map(|s| b.layers.iter().filter_map(s.value))
            .fold(0.0f32, f32::min);
        let y0 = (lowest * 5.0).floor() / 5.0;
        let y = Scale::new((y0, 1.0), (H - BOTTOM, TOP));
        let y_ticks = ticks(y0, 1.0, 4);
        let step = x.map(1.0) - x.map(0.0);
        let lines = SERIES
            .iter()
            .map(|s| {
                let pts: Vec<(f32, f32)> = b
                    .layers
                    .iter()
                    .enumerate()
                    .filter_map(|(l, v)| Some((x.map(l as f32), y.map((s.value)(v)?))))
                    .collect();
                view! { <polyline class=format!("line {}", s.class) points=polyline(&pts)></polyline> }
            })
            .collect_view();
        let chosen = x.map(b.analysis_layer as f32);
        let hits = (0..n)
            .map(|l| {
                let label = layer_text(&b, l);
                let title = label.clone();
                let pick = move || app.show_layer(Some(l));
                view! {
                    <rect
                        class="layer-hit"
                        class:shown=move || shown() == Some(l)
                        data-testid="layer-hit"
                        data-layer=l
                        x=x.map(l as f32) - step / 2.0
                        y=TOP
                        width=step
                        height=H - BOTTOM - TOP
                        tabindex="0"
                        role="button"
                        aria-label=label
                        aria-pressed=move || (shown() == Some(l)).to_string()
                        on:click=move |_| pick()
                        on:keydown=move |ev| {
                            if ev.key() == "Enter" || ev.key() == " " {
                                ev.prevent_default();
                                pick();
                            }
                        }
                    ><title>{title}</title></rect>
                }
            })
            .collect_view();
        let x_ticks: Vec<usize> = (0..n).step_by(5).collect();
        Some(view! {
            {y_ticks.iter().zip(tick_labels(&y_ticks)).map(|(&t, l)| view! {
                <line class="grid" x1=LEFT x2=W - RIGHT y1=y.map(t) y2=y.map(t)></line>
                <text x=LEFT - 6.0 y=y.map(t) + 4.0 text-anchor="end">{l}</text>
            }).collect_view()}
            {x_ticks.into_iter().map(|l| view! { <text x=x.map(l as f32) y=H - BOTTOM + 14.0 text-anchor="middle">{l.to_string()}</text> }).collect_view()}
            <text x=(LEFT + W) / 2.0 y=H - 4.0 text-anchor="middle">"layer"</text>
            {hits}
            <line class="chosen" x1=chosen x2=chosen y1=TOP y2=H - BOTTOM></line>
            <text class="chosen-label" x=chosen + 4.0 y=TOP + 10.0>"chosen"</text>
            {lines}
        })
    };
    let rows = move || {
        app.bundle.with(|b| {
            b.as_ref().map_or(Vec::new(), |b| {
                b.layers
                    .iter()
                    .enumerate()
                    .map(|(l, v)| {
                        let cells = SERIES
                            .iter()
                            .map(|s| view! { <td>{(s.value)(v).map_or("–".to_string(), fmt)}</td> })
                            .collect_view();
                        let mark = if l == b.analysis_layer {
                            " (chosen)"
                        } else {
                            ""
                        };
                        view! { <tr><th scope="row">{format!("{l}{mark}")}</th>{cells}</tr> }
                    })
                    .collect::<Vec<_>>()
            })
        })
    };
    view! {
        <div class="layer-chart-box">
            <svg class="chart layer-chart" data-testid="layer-chart" viewBox=format!("0 0 {W} {H}") role="group"
                aria-label="Persona space at every layer: how well PC1 follows the Assistant Axis and how stable the axis is; pick a layer to show the map there">
                <title>"Persona space across the layers"</title>
                {chart}
            </svg>
            <p class="legend">
                {SERIES.iter().map(|s| view! { <span class=format!("key {}", s.class)>"━ "</span>{s.name}" " }).collect_view()}
                "· dashed: the layer chosen on held-out questions"
            </p>
            <details class="table-view" data-testid="layer-table">
                <summary>"Show as a table"</summary>
                <table>
                    <caption>"Figures of persona space at every layer"</caption>
                    <thead><tr><th scope="col">"Layer"</th>{SERIES.iter().map(|s| view! { <th scope="col">{s.name}</th> }).collect_view()}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
        </div>
    }
}
