//! Embeds that paste: the "Embed" button on the map, drift and cap cards gives an iframe
//! snippet for that view in its current state (theme, a non-default bundle, and for the chat
//! views the share state: settings and conversation), plus the resizer script. The embedded
//! page posts its height to the parent (public/embed-frame.js); public/axiscope-embed.js, the
//! script the snippet loads, sizes the iframe to it.

use leptos::prelude::*;

use super::reducer::DEFAULT_BUNDLE_URL;
use super::state::{AppState, Embed, use_app};
use crate::web::dom;

impl Embed {
    pub fn name(self) -> &'static str {
        match self {
            Embed::Map => "map",
            Embed::Drift => "drift",
            Embed::Cap => "cap",
        }
    }

    /// The iframe's title (screen readers announce it) and its height before the embedded
    /// page reports its own.
    fn frame(self) -> (&'static str, u32) {
        match self {
            Embed::Map => ("axiscope: persona space of a small chat model", 620),
            Embed::Drift => (
                "axiscope: a conversation's drift on the Assistant Axis",
                640,
            ),
            Embed::Cap => ("axiscope: capping the Assistant Axis, side by side", 640),
        }
    }
}

/// The button and, once pressed, the snippet (copied to the clipboard where the browser
/// allows, and shown to select by hand where it does not). Nothing in embed mode.
#[component]
pub fn EmbedButton(view: Embed) -> impl IntoView {
    let app = use_app();
    let snippet = RwSignal::new(None::<String>);
    let make = move |_| {
        let text = snippet_for(app, view);
        let _ = dom::window().navigator().clipboard().write_text(&text);
        snippet.set(Some(text));
    };
    let id = format!("embed-{}-snippet", view.name());
    app.embed.is_none().then(|| {
        view! {
            <button
                type="button"
                class="embed-button"
                data-testid=format!("embed-{}", view.name())
                title="Copy an iframe snippet of this view, as it is now, for your own page"
                on:click=make
            >
                "Embed"
            </button>
            {move || snippet.get().map(|s| view! {
                <label class="embed-snippet" for=id.clone()>
                    "Paste into your page (copied where the browser allows; the script sizes the frame to its content):"
                </label>
                <textarea id=id.clone() readonly rows="4" data-testid="embed-snippet" prop:value=s on:focus=move |ev| {
                    let area: web_sys::HtmlTextAreaElement = event_target(&ev);
                    area.select();
                }></textarea>
            })}
        }
    })
}

/// The snippet for `view`: the page's own URL with `?embed=`, the theme in use, a bundle other
/// than the default, and (drift, cap) the share state; then the resizer script beside the page.
fn snippet_for(app: AppState, view: Embed) -> String {
    let location = dom::window().location();
    let base = format!(
        "{}{}",
        location.origin().unwrap_or_default(),
        location.pathname().unwrap_or_default()
    );
    let mut url = format!("{base}?embed={}", view.name());
    let theme = dom::document()
        .document_element()
        .and_then(|e| e.get_attribute("data-theme"));
    if let Some(t) = theme.filter(|t| t != "auto") {
        url.push_str(&format!("&theme={t}"));
    }
    let bundle = app.bundle_url.get_value();
    if bundle != DEFAULT_BUNDLE_URL
        && let Ok(abs) = dom::absolute_url(&bundle)
    {
        url.push_str(&format!(
            "&bundle={}",
            String::from(js_sys::encode_uri_component(&abs))
        ));
    }
    // The map embed loads no model, so a conversation would never be measured there.
    if view != Embed::Map {
        url.push('#');
        url.push_str(&app.share_state().to_fragment());
    }
    let (title, height) = view.frame();
    let script = dom::absolute_url("axiscope-embed.js").unwrap_or_default();
    format!(
        "<iframe src=\"{}\" title=\"{title}\" loading=\"lazy\" style=\"width:100%;height:{height}px;border:0\"></iframe>\n<script src=\"{}\" async></script>",
        attr_escape(&url),
        attr_escape(&script)
    )
}

/// Text for a double-quoted HTML attribute.
fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}
