//! Generation settings: temperature, top-p, max tokens, repetition penalty, seed. A value that
//! does not parse or is out of range is refused and the field shows the value in use.

use leptos::prelude::*;

use super::state::use_app;
use crate::web::protocol::GenSettings;

#[component]
pub fn GenSettingsPanel() -> impl IntoView {
    view! {
        <details class="settings" data-testid="settings">
            <summary>"Generation settings"</summary>
            <div class="grid">
                <Field label="Temperature" testid="setting-temperature" min=0.0 max=2.0 step=0.05
                    get=|s| s.temperature as f64 set=|s, v| s.temperature = v as f32/>
                <Field label="Top-p" testid="setting-top-p" min=0.01 max=1.0 step=0.01
                    get=|s| s.top_p as f64 set=|s, v| s.top_p = v as f32/>
                <Field label="Max tokens" testid="setting-max-tokens" min=1.0 max=1024.0 step=1.0
                    get=|s| s.max_tokens as f64 set=|s, v| s.max_tokens = v as usize/>
                <Field label="Repetition penalty" testid="setting-repeat-penalty" min=1.0 max=2.0 step=0.05
                    get=|s| s.repeat_penalty as f64 set=|s, v| s.repeat_penalty = v as f32/>
                <Field label="Seed" testid="setting-seed" min=0.0 max=4294967295.0 step=1.0
                    get=|s| s.seed as f64 set=|s, v| s.seed = v as u64/>
            </div>
            <p class="muted">"Temperature 0 is greedy. Each turn samples with seed + turn number; the capped reply uses the same seed as the default one."</p>
        </details>
    }
}

#[component]
fn Field(
    label: &'static str,
    testid: &'static str,
    min: f64,
    max: f64,
    step: f64,
    get: fn(&GenSettings) -> f64,
    set: fn(&mut GenSettings, f64),
) -> impl IntoView {
    let app = use_app();
    view! {
        <label>
            <span>{label}</span>
            <input
                type="number"
                data-testid=testid
                min=min
                max=max
                step=step
                prop:value=move || shown(app.sampling.with(get))
                on:change=move |ev| {
                    match event_target_value(&ev).trim().parse::<f64>() {
                        Ok(v) if v.is_finite() && (min..=max).contains(&v) => app.sampling.update(|s| set(s, v)),
                        // Refused: notify so the field shows the value in use again.
                        _ => app.sampling.update(|_| {}),
                    }
                }
            />
        </label>
    }
}

/// Settings are f32: show 0.7, not 0.699999988079071.
fn shown(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
