//! Capping and steering controls. Capping (docs/method.md): at every layer of the band, a floor on
//! the projection at a percentile of the persona rollouts' projections; when on, each reply is
//! generated twice (Default and Capped). Steering adds `alpha * n_L * u` at the analysis layer:
//! positive toward the Assistant, negative away from it (its inverse, for role-play).

use leptos::prelude::*;

use super::embed::EmbedButton;
use super::state::{Embed, use_app};
use super::tour::WhatIsThis;

/// The card's "what am I looking at?" note.
const CAP_NOTE: &str = "Capping puts a floor under the projection on the Assistant Axis at every layer of a band: activations already Assistant-like enough pass untouched, ones that fell below are lifted to the floor. With a cap on, each turn is answered twice, Default and Capped, side by side. Steering instead adds the axis at one layer, toward the Assistant or away from it.";

#[component]
pub fn CapControls() -> impl IntoView {
    let app = use_app();
    let n_layers = move || app.bundle.with(|b| b.as_ref().map_or(30, |b| b.n_layers));
    let no_bundle = move || app.bundle.with(|b| b.is_none());
    let cap_text = move || match app.cap_percentile.get() {
        0 => "Cap: off (one reply per turn)".to_string(),
        p => {
            let (s, e) = app.cap_band.get();
            format!(
                "Cap: floor at the {p}{} percentile of the persona rollouts' projections, layers {s}-{} (each reply twice: Default and Capped)",
                ordinal(p),
                e.saturating_sub(1)
            )
        }
    };
    let steer_text = move || {
        let a = app.steer.get();
        if a == 0.0 {
            "Steering: off".to_string()
        } else {
            let way = if a > 0.0 {
                "toward the Assistant"
            } else {
                "away from the Assistant (role-play)"
            };
            format!("Steering: {a:+.2} x mean token norm, {way}")
        }
    };
    view! {
        <section class="card cap-card" class:tour-focus=move || app.tour_step.get() == Some(2) aria-labelledby="cap-h">
            <div class="card-head"><h2 id="cap-h">"Cap and steer"</h2><EmbedButton view=Embed::Cap/></div>
            <WhatIsThis text=CAP_NOTE/>
            <Show when=no_bundle>
                <p class="muted">"Capping and steering need the persona bundle of the loaded model."</p>
            </Show>
            <label class="slider">
                <span data-testid="cap-label">{cap_text}</span>
                <input
                    type="range"
                    data-testid="cap-slider"
                    min="0"
                    max="99"
                    step="1"
                    aria-valuetext=cap_text
                    disabled=no_bundle
                    prop:value=move || app.cap_percentile.get().to_string()
                    on:input=move |ev| app.cap_percentile.set(event_target_value(&ev).parse().unwrap_or(0))
                />
            </label>
            <div class="row band">
                <label>
                    "Band from layer "
                    <input
                        type="number"
                        data-testid="cap-band-start"
                        min="0"
                        max=move || n_layers() - 1
                        prop:value=move || app.cap_band.get().0.to_string()
                        on:change=move |ev| {
                            let n = n_layers();
                            if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                                app.cap_band.update(|(s, e)| {
                                    *s = v.min(n - 1);
                                    *e = (*e).max(*s + 1);
                                });
                            } else {
                                app.cap_band.update(|_| {});
                            }
                        }
                    />
                </label>
                <label>
                    " to layer "
                    <input
                        type="number"
                        data-testid="cap-band-end"
                        min="0"
                        max=move || n_layers() - 1
                        prop:value=move || app.cap_band.get().1.saturating_sub(1).to_string()
                        on:change=move |ev| {
                            let n = n_layers();
                            if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                                app.cap_band.update(|(s, e)| {
                                    *e = (v + 1).min(n);
                                    *s = (*s).min(*e - 1);
                                });
                            } else {
                                app.cap_band.update(|_| {});
                            }
                        }
                    />
                </label>
            </div>
            <label class="slider">
                <span data-testid="steer-label">{steer_text}</span>
                <input
                    type="range"
                    data-testid="steer-slider"
                    min="-100"
                    max="100"
                    step="5"
                    aria-valuetext=steer_text
                    disabled=no_bundle
                    prop:value=move || ((app.steer.get() * 100.0).round() as i32).to_string()
                    on:input=move |ev| app.steer.set(event_target_value(&ev).parse::<f32>().map_or(0.0, |v| v / 100.0))
                />
            </label>
            <p class="muted small">
                "The paper caps at the 75th percentile over ~15% of the layers at 70-90% depth. The capped reply "
                "is placed on the drift chart by reading it back through the unsteered model. Changes apply from "
                "the next turn."
            </p>
        </section>
    }
}

fn ordinal(n: u8) -> &'static str {
    match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}
