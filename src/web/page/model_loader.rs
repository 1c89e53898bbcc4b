//! The model card: what is loaded, the download progress (bytes and speed), and the ways to
//! load another model: the default, the menu of other small models, a URL, a local file
//! (picker or drop).

use leptos::prelude::*;
use web_sys::{DragEvent, HtmlInputElement};

use super::chart::megabytes;
use super::models::{CatalogModel, DEFAULT_MODEL, MODELS};
use super::state::use_app;
use crate::web::dom;
use crate::web::protocol::ModelSource;

#[component]
pub fn ModelLoader() -> impl IntoView {
    let app = use_app();
    let url = RwSignal::new(String::new());
    let dragging = RwSignal::new(false);
    let busy = move || app.busy();
    let load_file = move |file: web_sys::File| {
        let source = ModelSource::File {
            name: file.name(),
            size: file.size() as u64,
        };
        app.load_model(source, Some(file));
    };
    let on_url = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let raw = url.get_untracked();
        let raw = raw.trim();
        if raw.is_empty() {
            return;
        }
        match dom::absolute_url(raw) {
            Ok(abs) => app.load_model(ModelSource::Url { url: abs }, None),
            Err(e) => app.update(|p| p.model_error = Some(e)),
        }
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        if let Some(f) = input.files().and_then(|fs| fs.get(0)) {
            load_file(f);
        }
        // Picking the same file again must fire `change` again.
        input.set_value("");
    };
    let on_drop = move |ev: DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if busy() {
            return;
        }
        if let Some(f) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|fs| fs.get(0))
        {
            load_file(f);
        }
    };
    view! {
        <section class="card model" aria-labelledby="model-h">
            <h2 id="model-h">"Model"</h2>
            <ModelStatusLine/>
            <div class="row">
                <button type="button" data-testid="load-default" disabled=busy on:click=move |_| app.load_default_model()>
                    "Load the default model (SmolLM2-135M, 98 MB)"
                </button>
            </div>
            <ModelMenu/>
            <form class="row" on:submit=on_url>
                <label class="grow">
                    <span class="visually-hidden">"Model URL"</span>
                    // Text, not type=url: a URL relative to the page is fine too.
                    <input
                        type="text"
                        inputmode="url"
                        data-testid="model-url"
                        placeholder="https://… .gguf (the host must allow cross-origin requests)"
                        prop:value=move || url.get()
                        on:input=move |ev| url.set(event_target_value(&ev))
                    />
                </label>
                <button type="submit" data-testid="model-url-load" disabled=busy>"Load URL"</button>
            </form>
            <label
                class="drop"
                class:dragging=move || dragging.get()
                data-testid="drop-zone"
                on:dragover=move |ev: DragEvent| {
                    ev.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                "Drop a .gguf file here, or pick one: "
                <input type="file" accept=".gguf" data-testid="model-file" disabled=busy on:change=on_pick/>
            </label>
        </section>
    }
}

/// Bigger models of the paper's families, each with its size, licence and the memory it needs
/// said before the download starts.
#[component]
fn ModelMenu() -> impl IntoView {
    let app = use_app();
    let others: Vec<&'static CatalogModel> =
        MODELS.iter().filter(|m| m.id != DEFAULT_MODEL.id).collect();
    let chosen = RwSignal::new(others[0].id);
    let model = move || CatalogModel::by_id(chosen.get()).unwrap_or(&DEFAULT_MODEL);
    let host = move || {
        let url = model().url;
        url.split('/').nth(2).unwrap_or(url).to_string()
    };
    view! {
        <div class="row">
            <label class="grow">
                "Or a bigger model: "
                <select
                    data-testid="model-menu"
                    on:change=move |ev| {
                        let id = event_target_value(&ev);
                        if let Some(m) = CatalogModel::by_id(&id) {
                            chosen.set(m.id);
                        }
                    }
                >
                    {others
                        .iter()
                        .map(|m| view! { <option value=m.id>{m.label()}</option> })
                        .collect_view()}
                </select>
            </label>
            <button
                type="button"
                data-testid="model-menu-load"
                disabled=move || app.busy()
                on:click=move |_| app.load_catalog_model(chosen.get_untracked())
            >
                "Load"
            </button>
        </div>
        <p class="note" data-testid="model-menu-note">
            {move || {
                let m = model();
                format!(
                    "{} download from {}; needs about {} of memory in this tab. Licence: {}. \
                     Once loaded, build its persona map in this tab.",
                    megabytes(m.bytes),
                    host(),
                    megabytes(m.memory_estimate()),
                    m.licence
                )
            }}
        </p>
    }
}

/// What is loaded, the progress of a load, and why the last load failed (also shown alone in
/// embed mode).
#[component]
pub fn ModelStatusLine() -> impl IntoView {
    let app = use_app();
    let state = move || {
        if app.model_loading.get().is_some() {
            "loading"
        } else if app.model.with(|m| m.is_some()) {
            "ready"
        } else if app.model_error.with(|e| e.is_some()) {
            "error"
        } else {
            "idle"
        }
    };
    let text = move || {
        if let Some(label) = app.model_loading.get() {
            return format!("Model: loading {label} …");
        }
        match app.model.get() {
            Some(m) => format!(
                "Model: {} ({}, {} layers, hidden {}, {}), {} in {:.1} s",
                m.name,
                m.architecture,
                m.n_layers,
                m.hidden,
                megabytes(m.bytes),
                if m.from_cache {
                    "from the browser cache"
                } else {
                    "downloaded"
                },
                m.load_ms / 1000.0
            ),
            None => "Model: not loaded".to_string(),
        }
    };
    view! {
        <p class="model-status" data-testid="model-status" data-state=state aria-live="polite">{text}</p>
            {move || app.model.get().and_then(|m| m.template_note).map(|note| view! {
                <p class="note" data-testid="model-template-note">{note}</p>
            })}
            {move || app.progress.get().map(|p| {
                let fraction = p.fraction();
                view! {
                    <div class="progress" data-testid="model-progress">
                        <progress max="1" value=fraction.map(|f| f.to_string())></progress>
                        <span>{p.text()}</span>
                    </div>
                }
            })}
            {move || app.model_error.get().map(|e| {
                let kept = if app.model.with(|m| m.is_some()) { " The previous model is still loaded." } else { "" };
                // A failed download can be tried again as it was; a local file must be picked again.
                let url = app.model_attempt.with(|s| matches!(s, Some(ModelSource::Url { .. })));
                view! {
                    <p class="error" role="alert" data-testid="model-error">
                        {format!("Could not load the model: {e}.{kept} ")}
                        {url.then(|| view! {
                            <button type="button" data-testid="model-retry" disabled=move || app.busy() on:click=move |_| app.retry_model()>"Try again"</button>
                        })}
                    </p>
                }
            })}
    }
}
