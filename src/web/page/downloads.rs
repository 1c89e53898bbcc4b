//! Share and export: a link that restores the settings and the conversation, and downloads of
//! the conversation (JSON), the drift data (CSV), both charts (SVG) and the axis (JSON).

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::state::{AppState, use_app};
use crate::web::dom;
use crate::web::export::{conversation_json, drift_csv};
use crate::web::protocol::AxisFormat;

/// The charts take their colours from the page's stylesheet; a downloaded SVG carries its own.
const EXPORT_CSS: &str = "text{font:11px sans-serif;fill:#333}.tick line{stroke:#ddd}.zero{stroke:#999}\
.level{stroke:#2166ac;stroke-dasharray:5 4}.band{fill:#2166ac;opacity:.12}.line{fill:none;stroke-width:2}\
.line.default,.trail.default polyline{stroke:#2166ac}.line.capped,.trail.capped polyline{stroke:#1b7837;stroke-dasharray:4 3}\
.pt.default{fill:#2166ac}.pt.capped{fill:#1b7837}.role{stroke:#fff}.trail polyline{fill:none;stroke-width:1.5}\
.trail circle{fill:#fff;stroke:#333}.trail text{font-size:9px}.default-marker path{fill:#f1c40f;stroke:#333}";

#[component]
pub fn Downloads() -> impl IntoView {
    let app = use_app();
    let empty = move || app.turns.with(|t| t.is_empty());
    let no_bundle = move || app.bundle.with(|b| b.is_none());
    let save = move |name: &str, mime: &str, text: String| {
        if let Err(e) = dom::download(name, mime, &text) {
            app.notify(format!("download failed: {e}"));
        }
    };
    view! {
        <section class="card downloads" aria-labelledby="dl-h">
            <h2 id="dl-h">"Share and download"</h2>
            <div class="row wrap">
                <button type="button" data-testid="share" disabled=empty on:click=move |_| share(app)>"Share link"</button>
                <button type="button" data-testid="download-json" disabled=empty on:click=move |_| {
                    let json = conversation_json(app.model.get_untracked().as_ref(), app.bundle.get_untracked().as_ref(), &app.settings(), &app.export_turns());
                    save("axiscope-conversation.json", "application/json", json);
                }>"Conversation (JSON)"</button>
                <button type="button" data-testid="download-csv" disabled=empty on:click=move |_| save("axiscope-drift.csv", "text/csv", drift_csv(&app.export_turns()))>
                    "Drift data (CSV)"
                </button>
                <button type="button" data-testid="download-drift-svg" on:click=move |_| match svg_text("drift-chart") {
                    Some(svg) => save("axiscope-drift.svg", "image/svg+xml", svg),
                    None => app.notify("the drift chart is not shown yet".into()),
                }>"Drift chart (SVG)"</button>
                <button type="button" data-testid="download-map-svg" on:click=move |_| match svg_text("persona-map") {
                    Some(svg) => save("axiscope-map.svg", "image/svg+xml", svg),
                    None => app.notify("the map is not shown yet".into()),
                }>"Map (SVG)"</button>
                <button type="button" data-testid="download-axis" disabled=no_bundle on:click=move |_| {
                    app.export_axis(AxisFormat::Json);
                }>"Axis (JSON)"</button>
                <button type="button" data-testid="download-bundle" disabled=no_bundle on:click=move |_| {
                    app.export_axis(AxisFormat::Bundle);
                }>"Persona bundle (.axb)"</button>
                <button
                    type="button"
                    data-testid="download-cvec"
                    disabled=no_bundle
                    title="llama.cpp control vector: direction.L = mean token norm x unit axis at layer L, toward the Assistant. Use e.g. --control-vector-scaled axiscope-axis.control-vector.gguf 0.25 --control-vector-layer-range 15 15"
                    on:click=move |_| {
                        app.export_axis(AxisFormat::ControlVector);
                    }
                >
                    "Axis (llama.cpp control vector)"
                </button>
            </div>
            {move || app.share_link.get().map(|link| view! {
                <label class="grow">
                    "Link (copied where the browser allows): "
                    <input type="text" readonly data-testid="share-link" prop:value=link on:focus=move |ev| {
                        let input: web_sys::HtmlInputElement = event_target(&ev);
                        input.select();
                    }/>
                </label>
            })}
        </section>
    }
}

/// Puts the conversation and settings into the URL's fragment and offers the link.
fn share(app: AppState) {
    let state = app.share_state();
    let fragment = state.to_fragment();
    let location = dom::window().location();
    let base = location.href().unwrap_or_default();
    let base = base.split('#').next().unwrap_or_default().to_string();
    let link = format!("{base}#{fragment}");
    if let Ok(history) = dom::window().history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&link));
    }
    let clipboard = dom::window().navigator().clipboard();
    let _ = clipboard.write_text(&link);
    app.share_link.set(Some(link));
}

/// The SVG element with `testid`, serialised with its own stylesheet.
fn svg_text(testid: &str) -> Option<String> {
    let el = dom::document()
        .query_selector(&format!("[data-testid=\"{testid}\"]"))
        .ok()??;
    let text = web_sys::XmlSerializer::new()
        .ok()?
        .serialize_to_string(el.unchecked_ref())
        .ok()?;
    let close = text.find('>')?;
    Some(format!(
        "{}<style>{EXPORT_CSS}</style>{}",
        &text[..=close],
        &text[close + 1..]
    ))
}
