//! Small browser helpers shared by the page and the worker (wasm32 only).

use wasm_bindgen::{JsCast, JsValue};

/// The message of a JS exception, or its debug form when it is not an Error.
pub fn js_error_text(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

pub fn window() -> web_sys::Window {
    web_sys::window().expect("the page has a window")
}

pub fn document() -> web_sys::Document {
    window().document().expect("the page has a document")
}

/// `name`'s value in the page's query string.
pub fn query_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// Every parameter name in the query string (to tell the visitor which ones were ignored).
pub fn query_names() -> Vec<String> {
    let Some(search) = window().location().search().ok() else {
        return Vec::new();
    };
    search
        .trim_start_matches('?')
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split('=').next().unwrap_or("").to_string())
        .collect()
}

/// `url` resolved against the page (so the worker and the cache see one absolute key).
pub fn absolute_url(url: &str) -> Result<String, String> {
    let base = document().base_uri().ok().flatten().unwrap_or_default();
    web_sys::Url::new_with_base(url, &base)
        .map(|u| u.href())
        .map_err(|_| format!("'{url}' is not a valid URL"))
}

/// Offers `text` as a file download.
pub fn download(name: &str, mime: &str, text: &str) -> Result<(), String> {
    save(name, mime, &JsValue::from_str(text))
}

/// Offers `bytes` as a file download.
pub fn download_bytes(name: &str, mime: &str, bytes: &[u8]) -> Result<(), String> {
    save(name, mime, &js_sys::Uint8Array::from(bytes))
}

fn save(name: &str, mime: &str, part: &JsValue) -> Result<(), String> {
    let parts = js_sys::Array::of1(part);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
        .map_err(|e| js_error_text(&e))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| js_error_text(&e))?;
    let a: web_sys::HtmlAnchorElement = document()
        .create_element("a")
        .map_err(|e| js_error_text(&e))?
        .unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // The click has started the download; the object URL is no longer needed.
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}

/// Scrolls the element with `id` into view (`block`: where in it) and focuses it.
pub fn scroll_to(id: &str, block: web_sys::ScrollLogicalPosition) {
    if let Some(el) = document().get_element_by_id(id) {
        let options = web_sys::ScrollIntoViewOptions::new();
        options.set_behavior(web_sys::ScrollBehavior::Smooth);
        options.set_block(block);
        el.scroll_into_view_with_scroll_into_view_options(&options);
        if let Some(h) = el.dyn_ref::<web_sys::HtmlElement>() {
            let _ = h.focus();
        }
    }
}

/// A `performance.mark()` the browser tests read (time to interactive, to first token).
pub fn mark(name: &str) {
    if let Some(p) = window().performance() {
        let _ = p.mark(name);
    }
}

pub fn now_ms() -> f64 {
    window()
        .performance()
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// `navigator.deviceMemory` in GiB where the browser reports it (Chromium: rounded, at most 8).
pub fn device_memory_gib() -> Option<f64> {
    js_sys::Reflect::get(&window().navigator(), &"deviceMemory".into())
        .ok()
        .and_then(|v| v.as_f64())
}

/// Whether the page may share memory with its worker (COOP/COEP served): needed for Stop.
pub fn cross_origin_isolated() -> bool {
    js_sys::Reflect::get(&window(), &"crossOriginIsolated".into()).is_ok_and(|v| v.is_truthy())
}

/// The `.wasm` files this global (page or worker) fetched, from `performance`'s resource
/// entries (through `Reflect`: the same code runs in the page and the worker).
pub fn wasm_resources() -> Vec<super::protocol::WasmFile> {
    use js_sys::{Array, Function, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let perf = get(&js_sys::global(), "performance");
    let Ok(by_type) = get(&perf, "getEntriesByType").dyn_into::<Function>() else {
        return Vec::new();
    };
    let Ok(entries) = by_type.call1(&perf, &"resource".into()) else {
        return Vec::new();
    };
    Array::from(&entries)
        .iter()
        .filter_map(|e| {
            let url = get(&e, "name").as_string()?;
            let path = url.split(['?', '#']).next()?;
            path.ends_with(".wasm").then(|| super::protocol::WasmFile {
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                transfer_bytes: get(&e, "encodedBodySize").as_f64().unwrap_or(0.0),
                decoded_bytes: get(&e, "decodedBodySize").as_f64().unwrap_or(0.0),
            })
        })
        .collect()
}
