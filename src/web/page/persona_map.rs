//! The persona map: every role of the bundle placed by PCA of the role vectors (PC1 x PC2,
//! or any other pair), coloured by its projection on the Assistant Axis, the default
//! Assistant marked, and the conversation's replies as a trail.
//!
//! Over 600 lines: the map's parts (axes, points, labels, search, zoom, trail, builder)
//! share its scales and signals; each is its own small component inside.

use leptos::prelude::*;

use super::chart::{
    Scale, Zoom, dim_name, extent, fmt, interval, map_coord, polyline, projection_colour,
    spread_text, tick_labels, ticks,
};
use super::embed::EmbedButton;
use super::layer_chart::LayerChart;
use super::reducer::BuildProgress;
use super::state::{Embed, use_app};
use super::tour::WhatIsThis;
use crate::science::Interval;
use crate::web::catalog::BuildPlan;
use crate::web::dom;
use crate::web::protocol::{Branch, BuildSize, BundleView, RolePoint};
use wasm_bindgen::JsCast;

const W: f32 = 600.0;
const H: f32 = 430.0;
const PAD: f32 = 40.0;
/// Room for the y tick labels and the rotated axis title.
const LEFT: f32 = 58.0;

/// The card's "what am I looking at?" note.
const MAP_NOTE: &str = "Persona space: every role the model was asked to play (from tutor to ghost), placed by the principal components of the model's activations while it answered in that role. Colour is the role's projection on the Assistant Axis (blue: toward the default Assistant, the star; orange: away). Numbered circles are this conversation's replies, in order. PC1 and the axis are different directions (their cosine is in the caption), so a reply can sit on one side of the map and the other side of the drift chart; choose the Assistant Axis as a dimension to place everything on the drift chart's measure. Labels name the roles at the ends of each axis; search or click a role to label it; zoom with the buttons or the + and - keys.";

#[component]
pub fn PersonaMap() -> impl IntoView {
    let app = use_app();
    let hover = RwSignal::new(None::<usize>);
    // Roles the visitor clicked (labelled until clicked again), the search, zoom and pan.
    let pinned = RwSignal::new(Vec::<usize>::new());
    let search = RwSignal::new(String::new());
    let zoom = RwSignal::new(Zoom::FULL);
    let drag = RwSignal::new(None::<(i32, i32)>);
    let trail = Memo::new(move |_| {
        app.turns.with(|turns| {
            [Branch::Default, Branch::Capped].map(|b| {
                turns
                    .iter()
                    .filter_map(|t| {
                        t.reply(b)
                            .point
                            .get()
                            .map(|p| (t.index, p.pcs, p.projection))
                    })
                    .collect::<Vec<(usize, Vec<f32>, f32)>>()
            })
        })
    });
    // The bundle at the shown layer. The conversation and the visitor's roles are measured at
    // the analysis layer only: elsewhere they are not drawn (the caption says so).
    let shown = Memo::new(move |_| {
        let b = app.bundle.get()?;
        match app.map_layer.get() {
            Some(l) => b.at_layer(l),
            None => Some(b),
        }
    });
    let on_chosen = move || app.map_layer.get().is_none();
    let map = move || {
        let bundle = shown.get()?;
        let (px, py) = app.map_pcs.get();
        let n_pcs = bundle.explained_variance_ratio.len();
        let at = |v: &[f32], p: f32, i: usize| map_coord(v, p, i, n_pcs);
        let here = on_chosen();
        let trails = if here {
            trail.get()
        } else {
            Default::default()
        };
        let xs = bundle
            .roles
            .iter()
            .map(|r| at(&r.pcs, r.projection, px))
            .chain([at(&bundle.default_pcs, bundle.default_projection, px)]);
        let ys = bundle
            .roles
            .iter()
            .map(|r| at(&r.pcs, r.projection, py))
            .chain([at(&bundle.default_pcs, bundle.default_projection, py)]);
        let customs = if here {
            app.custom_roles.get()
        } else {
            Vec::new()
        };
        let tx = trails
            .iter()
            .flatten()
            .map(|(_, v, p)| at(v, *p, px))
            .chain(customs.iter().map(|r| at(&r.pcs, r.projection, px)));
        let ty = trails
            .iter()
            .flatten()
            .map(|(_, v, p)| at(v, *p, py))
            .chain(customs.iter().map(|r| at(&r.pcs, r.projection, py)));
        let z = zoom.get();
        let (x0, x1) = z.window(extent(xs.chain(tx), 0.08), z.cx);
        let (y0, y1) = z.window(extent(ys.chain(ty), 0.08), z.cy);
        let x = Scale::new((x0, x1), (LEFT, W - 12.0));
        let (x_ticks, y_ticks) = (ticks(x0, x1, 6), ticks(y0, y1, 6));
        let y = Scale::new((y0, y1), (H - PAD, 12.0));
        let scale = bundle
            .roles
            .iter()
            .map(|r| r.projection.abs())
            .fold(bundle.default_projection.abs(), f32::max);
        // "PC1 (31% of the role variance)", or the axis (the drift chart's measure).
        let dim_label = |i: usize, long: bool| match bundle.explained_variance_ratio.get(i) {
            Some(v) if long => format!("PC{} ({:.0}% of the role variance)", i + 1, v * 100.0),
            Some(v) => format!("PC{} ({:.0}%)", i + 1, v * 100.0),
            None => "Assistant Axis (projection, as on the drift chart)".into(),
        };
        let roles = bundle
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (cx, cy) = (
                    x.map(at(&r.pcs, r.projection, px)),
                    y.map(at(&r.pcs, r.projection, py)),
                );
                let label = format!(
                    "{} ({}), axis {}{}",
                    r.name.replace('_', " "),
                    r.category,
                    fmt(r.projection),
                    spread_text(r.spread)
                );
                let toggle = move || {
                    pinned.update(|p| match p.iter().position(|&j| j == i) {
                        Some(at) => {
                            p.remove(at);
                        }
                        None => p.push(i),
                    })
                };
                view! {
                    <path
                        class="role"
                        class:hovered=move || hover.get() == Some(i)
                        data-testid="role-point"
                        data-role=r.name.clone()
                        data-category=r.category.clone()
                        data-x=cx
                        data-y=cy
                        data-projection=r.projection
                        d=marker(&r.category, cx, cy)
                        fill=projection_colour(r.projection, scale)
                        tabindex="0"
                        role="button"
                        aria-label=label
                        aria-pressed=move || pinned.with(|p| p.contains(&i)).to_string()
                        on:mouseenter=move |_| hover.set(Some(i))
                        on:mouseleave=move |_| hover.set(None)
                        on:focus=move |_| hover.set(Some(i))
                        on:blur=move |_| hover.set(None)
                        on:click=move |_| toggle()
                        on:keydown=move |ev| {
                            if ev.key() == "Enter" || ev.key() == " " {
                                ev.prevent_default();
                                toggle();
                            }
                        }
                    ></path>
                }
            })
            .collect_view();
        let custom_views = customs
            .into_iter()
            .map(|r| {
                let (cx, cy) = (
                    x.map(at(&r.pcs, r.projection, px)),
                    y.map(at(&r.pcs, r.projection, py)),
                );
                let d = format!("M{cx:.1},{:.1} L{:.1},{cy:.1} L{cx:.1},{:.1} L{:.1},{cy:.1} Z", cy - 8.0, cx + 8.0, cy + 8.0, cx - 8.0);
                view! {
                    <g class="custom-role" data-testid="custom-role-point" data-role=r.name.clone() data-projection=r.projection.to_string()>
                        <path d=d fill=projection_colour(r.projection, scale)></path>
                        <text x=cx.clamp(40.0, W - 40.0) y=cy - 11.0 text-anchor="middle">{format!("{} · axis {}", r.name, fmt(r.projection))}</text>
                    </g>
                }
            })
            .collect_view();
        let (dx, dy) = (
            x.map(at(&bundle.default_pcs, bundle.default_projection, px)),
            y.map(at(&bundle.default_pcs, bundle.default_projection, py)),
        );
        let trail_views = [Branch::Default, Branch::Capped]
            .into_iter()
            .map(|b| {
                let pts: Vec<(usize, f32, f32)> =
                    trails[b.index()].iter().map(|(t, v, p)| (*t, x.map(at(v, *p, px)), y.map(at(v, *p, py)))).collect();
                let line = polyline(&pts.iter().map(|&(_, a, b)| (a, b)).collect::<Vec<_>>());
                view! {
                    <g class=format!("trail {}", b.name())>
                        <polyline points=line></polyline>
                        {pts
                            .into_iter()
                            .map(|(t, cx, cy)| {
                                view! {
                                    <g data-testid="trail-point" data-branch=b.name() data-turn=t data-x=cx data-y=cy>
                                        <circle cx=cx cy=cy r="8"></circle>
                                        <text x=cx y=cy + 3.5 text-anchor="middle">{(t + 1).to_string()}</text>
                                    </g>
                                }
                            })
                            .collect_view()}
                    </g>
                }
            })
            .collect_view();
        let placed: Vec<(String, f32, f32, f32)> = bundle
            .roles
            .iter()
            .map(|r| {
                (
                    r.name.replace('_', " "),
                    x.map(at(&r.pcs, r.projection, px)),
                    y.map(at(&r.pcs, r.projection, py)),
                    r.projection,
                )
            })
            .collect();
        let spreads: Vec<Option<f32>> = bundle.roles.iter().map(|r| r.spread).collect();
        let (tag_placed, tag_roles) = (placed.clone(), bundle.roles.clone());
        let tags = move || {
            role_tags(
                &tag_placed,
                &tag_roles,
                &search.get(),
                &pinned.get(),
                (LEFT, W - 12.0),
                (12.0, H - PAD),
            )
        };
        let label = move || {
            let i = hover.get()?;
            let (name, lx, ly, p) = placed.get(i)?.clone();
            let spread = spread_text(spreads[i]);
            let anchor = if lx > W * 0.7 { "end" } else { "start" };
            let shift = if anchor == "end" { -9.0 } else { 9.0 };
            Some(view! {
                <text class="role-label" data-testid="role-label" x=lx + shift y=ly - 8.0 text-anchor=anchor>
                    {format!("{name} · axis {}{spread}", fmt(p))}
                </text>
            })
        };
        let zero_x = x.map(0.0);
        let zero_y = y.map(0.0);
        Some(view! {
                {x_ticks.iter().zip(tick_labels(&x_ticks)).map(|(&t, l)| view! { <text class="xtick" x=x.map(t) y=H - PAD + 16.0 text-anchor="middle">{l}</text> }).collect_view()}
                {y_ticks.iter().zip(tick_labels(&y_ticks)).map(|(&t, l)| view! { <text class="xtick" x=LEFT - 6.0 y=y.map(t) + 4.0 text-anchor="end">{l}</text> }).collect_view()}
                <line class="zero" data-testid="map-zero-x" x1=zero_x x2=zero_x y1="12" y2=H - PAD></line>
                <line class="zero" x1=LEFT x2=W - 12.0 y1=zero_y y2=zero_y></line>
                <text class="axis-label" x=(LEFT + W) / 2.0 y=H - 6.0 text-anchor="middle">{dim_label(px, true)}</text>
                <text class="axis-label" x="12" y=(H - PAD) / 2.0 text-anchor="middle" transform=format!("rotate(-90 12 {})", (H - PAD) / 2.0)>
                    {dim_label(py, false)}
                </text>
                <g clip-path="url(#map-plot)">
                    {roles}
                    {tags}
                    {custom_views}
                    {trail_views}
                    <g class="default-marker" data-testid="default-point">
                        <path d=star(dx, dy, 11.0)></path>
                        // Keep the label inside the plot when the default sits at an edge (it usually
                        // does: PC1 is oriented toward it).
                        <text x=dx.clamp(70.0, W - 70.0) y=if dy < 40.0 { dy + 24.0 } else { dy - 14.0 } text-anchor="middle">"Assistant (default)"</text>
                    </g>
                    {label}
                </g>
        })
    };
    let map_label = move || {
        app.bundle.with(|b| {
            let (px, py) = app.map_pcs.get();
            let k = b.as_ref().map_or(0, |b| b.explained_variance_ratio.len());
            format!(
                "Persona map: {} roles on {} and {}; arrow keys pan, + and - zoom, 0 resets",
                b.as_ref().map_or(0, |b| b.roles.len()),
                dim_name(px, k),
                dim_name(py, k)
            )
        })
    };
    // The SVG element stays while its content follows the zoom, so it keeps the keyboard focus.
    let chart = move || {
        view! {
            <svg class="chart map" data-testid="persona-map" viewBox=format!("0 0 {W} {H}") role="group" tabindex="0"
                class:zoomed=move || zoom.get() != Zoom::FULL
                aria-label=map_label
                on:keydown=move |ev| {
                    if let Some(next) = key_zoom(zoom.get_untracked(), &ev.key()) {
                        ev.prevent_default();
                        zoom.set(next);
                    }
                }
                on:pointerdown=move |ev| drag.set(Some((ev.client_x(), ev.client_y())))
                on:pointermove=move |ev| {
                    let Some((x0, y0)) = drag.get_untracked() else { return };
                    let Some(el) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
                    // Client pixels to fractions of the plot area (the SVG scales with its box).
                    let px_per_unit = el.client_width() as f32 / W;
                    if px_per_unit <= 0.0 {
                        return;
                    }
                    let dx = (ev.client_x() - x0) as f32 / px_per_unit / (W - 12.0 - LEFT);
                    let dy = (ev.client_y() - y0) as f32 / px_per_unit / (H - PAD - 12.0);
                    drag.set(Some((ev.client_x(), ev.client_y())));
                    let next = zoom.get_untracked().panned(-dx, dy);
                    if next != zoom.get_untracked() {
                        zoom.set(next);
                    }
                }
                on:pointerup=move |_| drag.set(None)
                on:pointerleave=move |_| drag.set(None)>
                <title>{map_label}</title>
                <desc>"Each marker is one role (circle: assistant-like, square: human, triangle: fantastical), coloured by its projection on the Assistant Axis; the star is the default Assistant; numbered circles are this conversation's replies, in order."</desc>
                <clipPath id="map-plot"><rect x=LEFT y="12" width=W - 12.0 - LEFT height=H - PAD - 12.0></rect></clipPath>
                {map}
            </svg>
        }
    };
    // The map embed has no model to place a role with.
    // The map embed has no model to place a role or build a map with.
    let with_model = app.embed != Some(Embed::Map);
    let fits = move || {
        app.bundle
            .with(|b| b.as_ref().is_some_and(|b| b.matches_model != Some(false)))
    };
    let builders = move || {
        with_model.then(|| {
            view! {
                <Show when=fits>
                    <RoleBuilder/>
                </Show>
                <MapBuilder open=!fits()/>
            }
        })
    };
    view! {
        <section class="card map-card" class:tour-focus=move || app.tour_step.get() == Some(0) aria-labelledby="map-h">
            <div class="card-head"><h2 id="map-h">"Persona space"</h2><EmbedButton view=Embed::Map/></div>
            <WhatIsThis text=MAP_NOTE/>
            {move || match (app.bundle.with(|b| b.is_some()), app.bundle_error.get()) {
                (false, Some(e)) => view! { <p class="error" data-testid="bundle-error">{format!("No persona bundle, so no map: {e}")}</p> }.into_any(),
                (false, None) => view! { <p class="muted">"Loading the persona bundle …"</p> }.into_any(),
                (true, _) => view! { <div class="chart-box">{chart}</div> <MapFinder search=search pinned=pinned zoom=zoom/> <MapTable shown=shown/> <MapControls shown=shown/> <LayerChart/> }.into_any(),
            }}
            {builders}
        </section>
    }
}

/// Builds the map for the loaded model in the worker: the rollouts, the axis and the PCA, as
/// `axiscope build` does natively, at a size this machine can afford.
#[component]
fn MapBuilder(open: bool) -> impl IntoView {
    let app = use_app();
    let size = RwSignal::new("quick".to_string());
    // The counts don't depend on the model's name.
    let describe = |s| BuildPlan::new(s, "{model_name}").describe();
    let start = move |_| {
        app.build_map(BuildSize::parse(&size.get_untracked()).unwrap_or(BuildSize::Quick));
    };
    let progress = move || {
        app.build_progress.get().map(|BuildProgress { done, total, role, started_ms }| {
            let elapsed = (dom::now_ms() - started_ms) / 1000.0;
            let left = if done > 0 { elapsed / done as f64 * (total - done) as f64 } else { f64::NAN };
            let eta = if left.is_finite() { format!(", about {:.0} min left", (left / 60.0).ceil()) } else { String::new() };
            view! {
                <div class="progress" data-testid="build-progress">
                    <progress max=total.max(1) value=done></progress>
                    <span>{format!("{done} of {total} replies{}{eta}", if role.is_empty() { String::new() } else { format!(" ({})", role.replace('_', " ")) })}</span>
                </div>
            }
        })
    };
    view! {
        <details class="map-builder" data-testid="map-builder" open=open>
            <summary>"Build the map for this model, in this browser"</summary>
            <div class="row">
                <label>
                    "Size: "
                    <select data-testid="build-size" prop:value=move || size.get() on:change=move |ev| size.set(event_target_value(&ev))>
                        <option value="tiny">{format!("first look: {}", describe(BuildSize::Tiny))}</option>
                        <option value="quick">{format!("quick, as axiscope build --quick: {}", describe(BuildSize::Quick))}</option>
                        <option value="standard">{format!("standard, as axiscope build --questions-per-role 16: {}", describe(BuildSize::Standard))}</option>
                    </select>
                </label>
                <button type="button" data-testid="build-start" disabled=move || !app.can_chat() on:click=start>"Build"</button>
            </div>
            {progress}
            {move || app.build_error.get().map(|e| view! { <p class="error" data-testid="build-error">{e}</p> })}
            <p class="muted small">
                "The sizes are axiscope build's own (first look: its quick settings on 8 roles and one question); replies are sampled as the reference does, in the model worker (Stop cancels). "
                "The roles and questions are axiscope's own; no judge model filters the replies. The map is kept in this "
                "browser for this model; \"Persona bundle\" under Share and download saves it."
            </p>
        </details>
    }
}

#[component]
fn MapControls(shown: Memo<Option<BundleView>>) -> impl IntoView {
    let app = use_app();
    let n_layers = move || {
        app.bundle
            .with(|b| b.as_ref().map_or(0, |b| b.layers.len()))
    };
    let layer = move || app.shown_layer();
    let layer_label = move || {
        app.bundle.with(|b| {
            let b = b.as_ref()?;
            let l = layer()?;
            Some(if l == b.analysis_layer {
                format!(
                    "{l} of {} (chosen on held-out questions; the conversation is measured here)",
                    b.n_layers
                )
            } else {
                format!("{l} of {} (chosen: {})", b.n_layers, b.analysis_layer)
            })
        })
    };
    let k = move || {
        app.bundle
            .with(|b| b.as_ref().map_or(0, |b| b.explained_variance_ratio.len()))
    };
    // The PCs, then the axis itself: along it the map and the drift chart say the same.
    let options = move || {
        let k = k();
        (0..=k)
            .map(|i| view! { <option value=i.to_string()>{dim_name(i, k)}</option> })
            .collect_view()
    };
    let stats = move || {
        let b = app.bundle.get()?;
        let l = layer()?;
        Some(if l == b.analysis_layer {
            stats_text(&b)
        } else {
            let s = shown.get()?;
            format!(
                "Layer {l}: {} Roles and the Assistant as the model holds them at this depth; the conversation, your roles and the intervals are measured at layer {} only.",
                layer_figures(&s),
                b.analysis_layer
            )
        })
    };
    view! {
        <div class="row map-controls">
            <label>
                "Layer: "
                <input type="range" data-testid="map-layer" min="0" max=move || n_layers().saturating_sub(1).to_string()
                    prop:value=move || layer().unwrap_or(0).to_string()
                    on:input=move |ev| app.show_layer(event_target_value(&ev).parse().ok())/>
            </label>
            <span class="small" data-testid="map-layer-label">{layer_label}</span>
            <button type="button" data-testid="map-layer-reset" hidden=move || app.map_layer.get().is_none()
                on:click=move |_| app.show_layer(None)>"Back to the chosen layer"</button>
        </div>
        <div class="row map-controls">
            <label>
                "x: "
                <select data-testid="map-x" prop:value=move || app.map_pcs.get().0.to_string()
                    on:change=move |ev| app.map_pcs.update(|p| p.0 = event_target_value(&ev).parse().unwrap_or(0))>
                    {options}
                </select>
            </label>
            <label>
                "y: "
                <select data-testid="map-y" prop:value=move || app.map_pcs.get().1.to_string()
                    on:change=move |ev| app.map_pcs.update(|p| p.1 = event_target_value(&ev).parse().unwrap_or(1))>
                    {options}
                </select>
            </label>
        </div>
        <p class="stats" data-testid="map-stats">{stats}</p>
        {move || app.bundle.get().and_then(|b| (b.matches_model == Some(false)).then(|| view! {
            <p class="error" data-testid="bundle-mismatch">
                {format!("This bundle was built for {} ({}), not the loaded model: the map stays, but replies are not placed on it.", b.model_name, short(&b.model_sha256))}
            </p>
        }))}
        <p class="legend">
            <span class="swatch" style:background-color=projection_colour(1.0, 1.0)></span>" toward the Assistant  "
            <span class="swatch" style:background-color=projection_colour(0.0, 1.0)></span>" average role  "
            <span class="swatch" style:background-color=projection_colour(-1.0, 1.0)></span>" away (role-play)  ·  numbered circles: this conversation's replies"
        </p>
        <p class="legend" data-testid="map-shapes">"● assistant-like  ■ human  ▲ fantastical  ★ the default Assistant  ◆ your own roles"</p>
    }
}

/// The role search, and zoom buttons for those without a wheel or a drag (the map itself
/// takes arrow keys, + and - when focused).
#[component]
fn MapFinder(
    search: RwSignal<String>,
    pinned: RwSignal<Vec<usize>>,
    zoom: RwSignal<Zoom>,
) -> impl IntoView {
    let app = use_app();
    let names = move || {
        app.bundle.with(|b| {
            b.as_ref().map_or(Vec::new(), |b| {
                b.roles
                    .iter()
                    .map(|r| r.name.replace('_', " "))
                    .collect::<Vec<_>>()
            })
        })
    };
    let found = move || {
        let q = search.get();
        let n = app.bundle.with(|b| {
            b.as_ref().map_or(0, |b| {
                b.roles.iter().filter(|r| matches(&r.name, &q)).count()
            })
        });
        (!q.trim().is_empty()).then(|| {
            if n == 1 {
                "1 role".to_string()
            } else {
                format!("{n} roles")
            }
        })
    };
    view! {
        <div class="row map-finder">
            <label>
                "Find a role: "
                <input type="search" data-testid="role-search" list="role-names" placeholder="e.g. pirate"
                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev))/>
            </label>
            <datalist id="role-names">{move || names().into_iter().map(|n| view! { <option value=n></option> }).collect_view()}</datalist>
            <span class="muted small" data-testid="role-found" aria-live="polite">{found}</span>
            <span class="zoom-buttons">
                <button type="button" data-testid="map-zoom-in" aria-label="Zoom in" on:click=move |_| zoom.update(|z| *z = z.zoomed(1.5))>"+"</button>
                <button type="button" data-testid="map-zoom-out" aria-label="Zoom out" disabled=move || zoom.get().k <= 1.0 on:click=move |_| zoom.update(|z| *z = z.zoomed(1.0 / 1.5))>"−"</button>
                <button type="button" data-testid="map-zoom-reset" disabled=move || zoom.get() == Zoom::FULL && pinned.with(|p| p.is_empty()) on:click=move |_| {
                    zoom.set(Zoom::FULL);
                    pinned.set(Vec::new());
                }>"Reset view"</button>
            </span>
        </div>
    }
}

/// The roles as a table: name, category, the two PCs shown, projection on the axis.
#[component]
fn MapTable(shown: Memo<Option<BundleView>>) -> impl IntoView {
    let app = use_app();
    let rows = move || {
        let (px, py) = app.map_pcs.get();
        shown.with(|b| {
            b.as_ref().map_or(Vec::new(), |b| {
                let k = b.explained_variance_ratio.len();
                let at = |r: &RolePoint, i: usize| map_coord(&r.pcs, r.projection, i, k);
                b.roles
                    .iter()
                    .map(|r| {
                        view! {
                            <tr>
                                <th scope="row">{r.name.replace('_', " ")}</th>
                                <td>{r.category.clone()}</td>
                                <td>{fmt(at(r, px))}</td>
                                <td>{fmt(at(r, py))}</td>
                                <td>{fmt(r.projection)}</td>
                            </tr>
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
    };
    let head = move || {
        let (px, py) = app.map_pcs.get();
        let k = app
            .bundle
            .with(|b| b.as_ref().map_or(0, |b| b.explained_variance_ratio.len()));
        view! {
            <tr>
                <th scope="col">"Role"</th><th scope="col">"Category"</th>
                <th scope="col">{dim_name(px, k)}</th><th scope="col">{dim_name(py, k)}</th>
                <th scope="col">"Projection"</th>
            </tr>
        }
    };
    view! {
        <details class="table-view" data-testid="map-table">
            <summary>"Show as a table"</summary>
            <table>
                <caption>"Every role's place on the map and its projection on the Assistant Axis"</caption>
                <thead>{head}</thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
}

/// A role's marker: its category by shape (colour is the projection), about 11 px across.
fn marker(category: &str, x: f32, y: f32) -> String {
    match category {
        "assistant-like" => format!(
            "M{:.1},{y:.1} a5.5,5.5 0 1,0 11,0 a5.5,5.5 0 1,0 -11,0 Z",
            x - 5.5
        ),
        "human" => format!("M{:.1},{:.1} h10 v10 h-10 Z", x - 5.0, y - 5.0),
        "fantastical" => format!(
            "M{x:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z",
            y - 6.5,
            x + 6.0,
            y + 4.5,
            x - 6.0,
            y + 4.5
        ),
        _ => format!(
            "M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} Z",
            y - 6.0,
            x + 6.0,
            y + 6.0,
            x - 6.0
        ),
    }
}

/// Whether `name` ("noir_detective") matches the search `q` ("Noir det").
fn matches(name: &str, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    !q.is_empty() && name.replace('_', " ").to_lowercase().contains(&q)
}

/// Zoom after a key press on the map, or `None` for keys it does not take.
fn key_zoom(z: Zoom, key: &str) -> Option<Zoom> {
    Some(match key {
        "ArrowLeft" => z.panned(-0.2, 0.0),
        "ArrowRight" => z.panned(0.2, 0.0),
        "ArrowUp" => z.panned(0.0, 0.2),
        "ArrowDown" => z.panned(0.0, -0.2),
        "+" | "=" => z.zoomed(1.5),
        "-" => z.zoomed(1.0 / 1.5),
        "0" => Zoom::FULL,
        _ => return None,
    })
}

/// Labels that stay: the roles at both ends of each axis in view, those matching the search,
/// and those clicked. `placed` holds each role's label, position and projection.
fn role_tags(
    placed: &[(String, f32, f32, f32)],
    roles: &[RolePoint],
    search: &str,
    pinned: &[usize],
    (xl, xr): (f32, f32),
    (yt, yb): (f32, f32),
) -> impl IntoView + use<> {
    let visible: Vec<usize> = (0..placed.len())
        .filter(|&i| (xl..=xr).contains(&placed[i].1) && (yt..=yb).contains(&placed[i].2))
        .collect();
    let by = |f: fn(&(String, f32, f32, f32)) -> f32| {
        let key = |i: &&usize| f(&placed[**i]);
        let lo = visible
            .iter()
            .min_by(|a, b| key(a).total_cmp(&key(b)))
            .copied();
        let hi = visible
            .iter()
            .max_by(|a, b| key(a).total_cmp(&key(b)))
            .copied();
        [lo, hi]
    };
    let mut shown: Vec<(usize, &'static str)> = Vec::new();
    let mut add = |i: usize, why: &'static str| {
        if !shown.iter().any(|(j, _)| *j == i) {
            shown.push((i, why));
        }
    };
    pinned.iter().for_each(|&i| add(i, "pinned"));
    (0..roles.len())
        .filter(|&i| matches(&roles[i].name, search))
        .for_each(|i| add(i, "found"));
    by(|p| p.1)
        .into_iter()
        .chain(by(|p| p.2))
        .flatten()
        .for_each(|i| add(i, "extreme"));
    shown
        .into_iter()
        .filter_map(|(i, why)| {
            let (name, lx, ly, _) = placed.get(i)?.clone();
            let anchor = if lx > (xl + xr) * 0.6 { "end" } else { "start" };
            let shift = if anchor == "end" { -8.0 } else { 8.0 };
            let y = if ly < yt + 14.0 { ly + 16.0 } else { ly - 7.0 };
            Some(view! {
                <text class=format!("role-tag {why}") data-testid="role-tag" data-role=roles[i].name.clone() data-why=why
                    x=lx + shift y=y text-anchor=anchor>{name}</text>
            })
        })
        .collect_view()
}

fn short(sha: &str) -> String {
    if sha.is_empty() {
        "no hash".into()
    } else {
        format!("sha256 {}…", &sha[..sha.len().min(12)])
    }
}

/// The map's caption at the analysis layer: every figure with its interval where the bundle
/// has them (docs/method.md, "Uncertainty").
fn stats_text(b: &BundleView) -> String {
    let iv = |i: &Interval| format!(" {}", interval(i));
    let ivs = b.intervals.as_ref();
    let cos = b.cos_pc_axis.first().map_or("–".to_string(), |c| fmt2(*c));
    let cos_iv = ivs.map_or(String::new(), |i| iv(&i.cos_pc1_axis));
    let level = ivs.map_or(String::new(), |i| {
        format!(" · intervals: {:.0}%", i.level * 100.0)
    });
    let rank = ivs.map_or(String::new(), |i| {
        let r = i.default_pc1_rank;
        format!(
            " · the Assistant {} of {} on PC1 ({} to {})",
            ordinal(r.value),
            b.roles.len() + 1,
            ordinal(r.lo),
            ordinal(r.hi)
        )
    });
    let split = b.split_half_cos.map_or(String::new(), |c| {
        let i = ivs.map_or(String::new(), |i| iv(&i.split_half_cos));
        format!(" · split-half stability of the axis {}{i}", fmt2(c))
    });
    let held = ivs.map_or(String::new(), |i| {
        format!(
            " · held-out cos(PC1, axis) {}{}",
            fmt2(i.held_out_cos.value),
            iv(&i.held_out_cos)
        )
    });
    format!(
        "cos(PC1, axis) = {cos}{cos_iv}{held}{rank}{split} · variance explained: {} · {} roles, {} rollouts, layer {} of {}{level}",
        variance(b),
        b.roles.len(),
        b.n_rollouts,
        b.analysis_layer,
        b.n_layers
    )
}

/// The caption's figures at another layer (no intervals: they are computed at the analysis
/// layer only).
fn layer_figures(b: &BundleView) -> String {
    let cos = b.cos_pc_axis.first().map_or("–".to_string(), |c| fmt2(*c));
    let split = b.split_half_cos.map_or(String::new(), |c| {
        format!(" · split-half stability of the axis {}", fmt2(c))
    });
    format!(
        "cos(PC1, axis) = {cos}{split} · variance explained: {}.",
        variance(b)
    )
}

/// "PC1 31%, PC2 25%, PC3 7%".
fn variance(b: &BundleView) -> String {
    b.explained_variance_ratio
        .iter()
        .enumerate()
        .take(3)
        .map(|(i, v)| format!("PC{} {:.0}%", i + 1, v * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt2(v: f32) -> String {
    format!("{v:.2}")
}

/// 1 -> "1st", 22 -> "22nd", 13 -> "13th".
fn ordinal(v: f32) -> String {
    let n = v.round() as i64;
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A five-pointed star centred on (x, y) with outer radius `r`, as an SVG path.
fn star(x: f32, y: f32, r: f32) -> String {
    let mut d = String::new();
    for i in 0..10 {
        let radius = if i % 2 == 0 { r } else { r * 0.45 };
        let a = std::f32::consts::PI / 5.0 * i as f32 - std::f32::consts::FRAC_PI_2;
        let (px, py) = (x + radius * a.cos(), y + radius * a.sin());
        d.push_str(&format!(
            "{}{px:.1},{py:.1} ",
            if i == 0 { "M" } else { "L" }
        ));
    }
    d.push('Z');
    d
}

/// "Add your own role": a name and a system prompt, answered over a few of the shared
/// questions in the worker, then placed on the map like the bundle's roles.
#[component]
fn RoleBuilder() -> impl IntoView {
    let app = use_app();
    let name = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    let questions = RwSignal::new(4usize);
    let place = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (n, p) = (name.get_untracked(), prompt.get_untracked());
        let n = if n.trim().is_empty() {
            format!("role {}", app.custom_roles.with_untracked(|r| r.len()) + 1)
        } else {
            n.trim().to_string()
        };
        if p.trim().is_empty() {
            app.role_error
                .set(Some("write a system prompt for the role first".into()));
            return;
        }
        app.place_role(n, p.trim().to_string(), questions.get_untracked());
    };
    view! {
        <details class="role-builder" data-testid="role-builder">
            <summary>"Add your own role"</summary>
            <form on:submit=place>
                <label class="grow">
                    <span class="visually-hidden">"Role name"</span>
                    <input type="text" data-testid="role-name" maxlength="40" placeholder="Name (e.g. lighthouse keeper)"
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                </label>
                <label class="grow">
                    <span class="visually-hidden">"Role system prompt"</span>
                    <textarea data-testid="role-prompt" rows="2" placeholder="You are a lighthouse keeper who has not spoken to anyone in years..."
                        prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
                </label>
                <div class="row">
                    <label>
                        "Questions: "
                        <select data-testid="role-questions" prop:value=move || questions.get().to_string()
                            on:change=move |ev| questions.set(event_target_value(&ev).parse().unwrap_or(4))>
                            <option value="2">"2 (quick)"</option>
                            <option value="4">"4"</option>
                            <option value="8">"8 (steadier)"</option>
                        </select>
                    </label>
                    <button type="submit" data-testid="role-place" disabled=move || !app.can_chat()>"Place it on the map"</button>
                </div>
            </form>
            {move || app.role_progress.get().map(|(done, total, reply)| view! {
                <p class="muted small" data-testid="role-progress">
                    {format!("{done} of {total} questions answered, sampled as the bundle's roles were (Stop cancels)")}
                    {(!reply.is_empty()).then(|| format!(". Last reply: {reply}"))}
                </p>
            })}
            {move || app.role_error.get().map(|e| view! { <p class="error" data-testid="role-error">{e}</p> })}
            {move || app.role_nearest.get().map(|(name, near)| view! {
                <p class="small" data-testid="role-nearest">
                    {format!("{name} lands nearest to: {}", near.iter().map(|n| n.replace('_', " ")).collect::<Vec<_>>().join(", "))}
                </p>
            })}
            <p class="muted small">
                "Your role's vector is the mean residual of its replies at the analysis layer, averaged over the questions, "
                "as the bundle's roles were built (from more questions and prompts, so yours is noisier)."
            </p>
        </details>
    }
}
