//! The page: reads the URL (`?embed=`, `?backend=`, `?bundle=`, `?model=`, `?theme=`, and a
//! share link's `#s=`), starts the model worker, and lays out the views: everything, or one
//! view alone in embed mode.

use leptos::prelude::*;

use super::cap_controls::CapControls;
use super::chat::Chat;
use super::client;
use super::downloads::Downloads;
use super::drift_chart::DriftChart;
use super::model_loader::{ModelLoader, ModelStatusLine};
use super::persona_map::PersonaMap;
use super::reducer::DEFAULT_BUNDLE_URL;
use super::state::{AppState, Embed};
use super::status::StatusBar;
use super::tour::{Tour, TourButton};
use crate::web::dom;
use crate::web::protocol::{BackendPref, ModelSource};
use crate::web::share::ShareState;

/// Query parameters the page reads; anything else is ignored and the visitor told so.
const KNOWN_PARAMS: &[&str] = &[
    "embed", "backend", "bundle", "model", "theme", "bench", "tokens", "overhead", "map", "simd",
    "threads",
];

/// Mounts the app on `<body>`. Called once from the `axiscope-web` binary.
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// `?bundle=` and `?model=` may name http(s) or page-relative URLs only (no `javascript:`,
/// `data:` or `blob:`).
fn safe_url(raw: &str) -> Option<String> {
    let abs = dom::absolute_url(raw).ok()?;
    (abs.starts_with("https://") || abs.starts_with("http://")).then_some(abs)
}

#[component]
fn App() -> impl IntoView {
    let mut notices = Vec::new();
    let embed = match dom::query_param("embed").as_deref() {
        None => None,
        Some("map") => Some(Embed::Map),
        Some("drift") => Some(Embed::Drift),
        Some("cap") => Some(Embed::Cap),
        Some(other) => {
            notices.push(format!(
                "unknown embed view '{other}' (map, drift or cap); showing the whole app"
            ));
            None
        }
    };
    let backend_pref = match dom::query_param("backend") {
        None => BackendPref::Auto,
        Some(b) => BackendPref::parse(&b).unwrap_or_else(|| {
            notices.push(format!(
                "unknown backend '{b}' (cpu or gpu); choosing automatically"
            ));
            BackendPref::Auto
        }),
    };
    // Read by the worker client; only "plain" (no relaxed-SIMD kernels) means anything.
    if let Some(s) = dom::query_param("simd").filter(|s| s != "plain") {
        notices.push(format!(
            "unknown simd '{s}' (plain); choosing automatically"
        ));
    }
    // Read by the worker client: 2 asks for the second core's row helper, 1 refuses it.
    if let Some(t) = dom::query_param("threads").filter(|t| t != "1" && t != "2") {
        notices.push(format!(
            "unknown threads '{t}' (1 or 2); choosing automatically"
        ));
    }
    let bundle_url = match dom::query_param("bundle") {
        None => DEFAULT_BUNDLE_URL.to_string(),
        Some(u) => safe_url(&u).unwrap_or_else(|| {
            notices.push(format!("ignored ?bundle={u}: not an http(s) URL"));
            DEFAULT_BUNDLE_URL.to_string()
        }),
    };
    let model_param = dom::query_param("model").and_then(|u| {
        let safe = safe_url(&u);
        if safe.is_none() {
            notices.push(format!("ignored ?model={u}: not an http(s) URL"));
        }
        safe
    });
    let unknown: Vec<String> = dom::query_names()
        .into_iter()
        .filter(|n| !KNOWN_PARAMS.contains(&n.as_str()))
        .collect();
    if !unknown.is_empty() {
        notices.push(format!(
            "ignored unknown URL parameters: {}",
            unknown.join(", ")
        ));
    }
    let theme = RwSignal::new(match dom::query_param("theme").as_deref() {
        Some("light") => "light",
        Some("dark") => "dark",
        _ => "auto",
    });
    Effect::new(move |_| {
        if let Some(root) = dom::document().document_element() {
            let _ = root.set_attribute("data-theme", theme.get());
        }
    });

    let app = AppState::new(embed, backend_pref, bundle_url);
    provide_context(app);
    // The capping embed exists to show Default and Capped side by side: start with the
    // paper's recommended cap.
    if embed == Some(Embed::Cap) {
        app.cap_percentile
            .set(crate::science::DEFAULT_CAP_PERCENTILE);
    }
    if !notices.is_empty() {
        app.notify(notices.join("; "));
    }
    if let Err(e) = client::start(move |e| app.apply(e), move |why| app.recover(why)) {
        app.notify(format!("could not start the model worker: {e}"));
    }

    let shared =
        dom::window()
            .location()
            .hash()
            .ok()
            .and_then(|h| match ShareState::from_fragment(&h) {
                Ok(s) => s,
                Err(e) => {
                    app.notify(e);
                    None
                }
            });
    let shared_model = shared
        .as_ref()
        .and_then(|s| s.model_url.as_deref().and_then(safe_url));
    if let Some(s) = shared {
        app.system.set(s.system);
        app.sampling.set(s.sampling);
        if let Some(c) = s.cap {
            app.cap_percentile.set(c.percentile.min(99));
            app.cap_band.set((c.start, c.end));
        }
        app.steer.set(s.steer.clamp(-1.0, 1.0));
        app.restore(s.turns);
    }

    // Embedded views load nothing heavy until the reader asks; the map needs only the bundle.
    let initial_model = StoredValue::new(model_param.or(shared_model));
    let start_model = move || {
        app.load_bundle();
        match initial_model.get_value() {
            Some(url) => app.load_model(ModelSource::Url { url }, None),
            None => app.load_default_model(),
        }
    };
    // `?bench`: the benchmark page instead of the app (web::bench).
    if dom::query_param("bench").is_some() {
        return super::bench::page(app, start_model);
    }
    let started = RwSignal::new(false);
    match embed {
        None => {
            start_model();
            started.set(true);
        }
        Some(Embed::Map) => app.load_bundle(),
        Some(_) => {}
    }
    Effect::new(move |_| dom::mark("axiscope:interactive"));

    let theme_button = move || {
        view! {
            <button
                type="button"
                class="theme"
                data-testid="theme-toggle"
                title="Colour theme"
                on:click=move |_| theme.update(|t| *t = match *t { "auto" => "light", "light" => "dark", _ => "auto" })
            >
                {move || format!("Theme: {}", theme.get())}
            </button>
        }
    };
    let start_button = move || {
        view! {
            <Show when=move || !started.get()>
                <button type="button" class="start" data-testid="embed-start" on:click=move |_| {
                    started.set(true);
                    start_model();
                }>"Start: load the model (98 MB, cached after the first time)"</button>
            </Show>
        }
    };
    match embed {
        Some(Embed::Map) => view! {
            <main class="embed" data-embed="map"><h1 class="visually-hidden">"axiscope: the persona map"</h1><PersonaMap/><StatusBar/></main>
        }
        .into_any(),
        Some(Embed::Drift) => view! {
            <main class="embed" data-embed="drift"><h1 class="visually-hidden">"axiscope: the drift chart"</h1>{start_button}<ModelStatusLine/><DriftChart/><Chat compact=true/><StatusBar/></main>
        }
        .into_any(),
        Some(Embed::Cap) => view! {
            <main class="embed" data-embed="cap"><h1 class="visually-hidden">"axiscope: capping"</h1>{start_button}<ModelStatusLine/><CapControls/><Chat compact=true/><StatusBar/></main>
        }
        .into_any(),
        None => view! {
            <header class="top">
                <div>
                    <h1 data-testid="app-title">"axiscope"</h1>
                    <p class="tagline">"See and steer a small chat model's persona: the Assistant Axis, live, in your browser."</p>
                </div>
                <div class="row">
                    <TourButton/>
                    {theme_button}
                </div>
            </header>
            // A landmark of its own: every part of the page sits in one (screen readers list them).
            <section class="tour-wrap" aria-label="Guided tour"><Tour/></section>
            <StatusBar/>
            <main class="layout">
                <div class="col">
                    <ModelLoader/>
                    <Chat/>
                </div>
                <div class="col">
                    <DriftChart/>
                    <CapControls/>
                    <PersonaMap/>
                    <Downloads/>
                </div>
            </main>
            <footer class="about">
                <p>
                    "The Assistant Axis (Lu et al. 2026, arXiv 2601.10387) is the direction in a model's residual stream "
                    "from the average of many role-played characters to its default helpful Assistant. axiscope reads it "
                    "here for a 135M-parameter model running entirely in this page: nothing you type leaves your browser. "
                    "A model this small places personas less cleanly than the paper's 27-70B models; the map shows how well."
                </p>
            </footer>
        }
        .into_any(),
    }
}
