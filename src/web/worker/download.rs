//! The model worker's downloads: models and bundles from the network or from Cache Storage,
//! read with progress events and cancellation, checked against their length and sha256, and
//! kept in Cache Storage for the next visit.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Cache, DedicatedWorkerGlobalScope, ReadableStream, ReadableStreamDefaultReader, Response,
    ResponseInit,
};

use crate::web::dom::js_error_text;
use crate::web::protocol::Event;

/// Cache Storage bucket for models and bundles; bump the suffix when the entry format changes.
const CACHE_NAME: &str = "axiscope-v1";
const HEADER_BYTES: &str = "x-axiscope-bytes";
const HEADER_SHA: &str = "x-axiscope-sha256";

/// What came over the wire or from the cache.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub from_cache: bool,
}

/// What a download needs from the worker running it.
pub trait Requester {
    fn scope(&self) -> &DedicatedWorkerGlobalScope;
    /// Tells the page (progress events).
    fn emit(&self, event: Event);
    /// Whether the page cancelled request `id`.
    fn cancelled(&self, id: u32) -> bool;
}

/// The downloads of request `id`: its progress events carry the id, and its cancel stops them.
pub struct Downloads<'a> {
    pub worker: &'a dyn Requester,
    pub id: u32,
}

impl Downloads<'_> {
    /// The bytes of a complete Cache Storage entry, if there is one.
    pub async fn cached(&self, key: &str) -> Option<Vec<u8>> {
        let cache = self.open_cache().await?;
        let response: Response = JsFuture::from(cache.match_with_str(key))
            .await
            .ok()?
            .dyn_into()
            .ok()?;
        let want: u64 = response.headers().get(HEADER_BYTES).ok()??.parse().ok()?;
        let bytes = self
            .read_stream(&response.body()?, Some(want), true)
            .await
            .ok()?;
        (bytes.len() as u64 == want).then_some(bytes)
    }

    /// A Cache Storage key for something this worker makes (a built map, a measured choice):
    /// `path` resolved against the worker's own URL, so it never names a real download.
    pub fn local_key(&self, path: &str) -> Result<String, String> {
        let base = self.worker.scope().location().href();
        web_sys::Url::new_with_base(path, &base)
            .map(|u| u.href())
            .map_err(|e| js_error_text(&e))
    }

    async fn open_cache(&self) -> Option<Cache> {
        let storage = self.worker.scope().caches().ok()?;
        JsFuture::from(storage.open(CACHE_NAME))
            .await
            .ok()?
            .dyn_into()
            .ok()
    }

    /// The bytes at `url`: from Cache Storage when a complete entry is there, else from the
    /// network (checked against Content-Length and `expected_sha256`).
    pub async fn fetch_cached(
        &self,
        url: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Fetched, String> {
        if let Some(cache) = self.open_cache().await
            && let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await
            && let Ok(response) = hit.dyn_into::<Response>()
        {
            let header = |name| response.headers().get(name).ok().flatten();
            let want: Option<u64> = header(HEADER_BYTES).and_then(|s| s.parse().ok());
            let sha = header(HEADER_SHA).unwrap_or_default();
            let sha_ok = expected_sha256.is_none_or(|e| e.eq_ignore_ascii_case(&sha));
            if let (Some(want), true) = (want, sha_ok)
                && let Some(body) = response.body()
                && let Ok(bytes) = self.read_stream(&body, Some(want), true).await
                && bytes.len() as u64 == want
            {
                return Ok(Fetched {
                    bytes,
                    sha256: sha,
                    from_cache: true,
                });
            }
            // An entry that does not check out is dropped and fetched again.
            let _ = JsFuture::from(cache.delete_with_str(url)).await;
        }
        self.fetch_network(url, expected_sha256).await
    }

    /// The bytes at `url` from the network, checked against Content-Length and
    /// `expected_sha256`.
    pub async fn fetch_network(
        &self,
        url: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Fetched, String> {
        let response = JsFuture::from(self.worker.scope().fetch_with_str(url))
            .await
            .map_err(|e| format!("download of {url} failed: {} (offline, or the host refuses cross-origin requests)", js_error_text(&e)))?;
        let response: Response = response
            .dyn_into()
            .map_err(|_| "fetch gave something that is not a Response".to_string())?;
        if !response.ok() {
            return Err(format!(
                "download of {url} failed: HTTP {} {}",
                response.status(),
                response.status_text()
            ));
        }
        let total = response
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let body = response
            .body()
            .ok_or_else(|| format!("{url} has an empty body"))?;
        let bytes = self.read_stream(&body, total, false).await?;
        if let Some(t) = total
            && bytes.len() as u64 != t
        {
            return Err(format!(
                "download of {url} was cut off: {} of {t} bytes arrived; try again",
                bytes.len()
            ));
        }
        let sha = sha256_hex(self.worker.scope(), &bytes).await?;
        if let Some(e) = expected_sha256
            && !e.eq_ignore_ascii_case(&sha)
        {
            return Err(format!(
                "the file at {url} is damaged: sha256 {sha}, expected {e}; try again"
            ));
        }
        Ok(Fetched {
            bytes,
            sha256: sha,
            from_cache: false,
        })
    }

    /// Reads a byte stream into memory, reporting progress about 10 times a second and
    /// checking for cancellation between chunks.
    pub async fn read_stream(
        &self,
        stream: &ReadableStream,
        total: Option<u64>,
        from_cache: bool,
    ) -> Result<Vec<u8>, String> {
        let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let result = self.read_chunks(&reader, total, from_cache).await;
        if result.is_err() {
            // Stop the transfer too: an abandoned body would keep downloading into a buffer.
            // On a broken stream the promise rejects with the error already reported: await
            // it, so it is not an unhandled rejection on the console.
            let _ = JsFuture::from(reader.cancel()).await;
        }
        result
    }

    async fn read_chunks(
        &self,
        reader: &ReadableStreamDefaultReader,
        total: Option<u64>,
        from_cache: bool,
    ) -> Result<Vec<u8>, String> {
        let mut out: Vec<u8> = Vec::new();
        if let Some(t) = total {
            // A length beyond the 32-bit address space cannot be held at all.
            let n = usize::try_from(t).map_err(|_| out_of_memory(t))?;
            out.try_reserve_exact(n).map_err(|_| out_of_memory(t))?;
        }
        let progress = |loaded: usize| Event::Progress {
            id: self.id,
            loaded: loaded as u64,
            total,
            from_cache,
        };
        let mut last = 0.0;
        self.worker.emit(progress(0));
        loop {
            if self.worker.cancelled(self.id) {
                return Err("loading was cancelled".into());
            }
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| format!("the download broke off: {}", js_error_text(&e)))?;
            if Reflect::get(&chunk, &"done".into())
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true)
            {
                break;
            }
            let value: Uint8Array = Reflect::get(&chunk, &"value".into())
                .map_err(|e| js_error_text(&e))?
                .dyn_into()
                .map_err(|_| "the stream gave something that is not bytes".to_string())?;
            let (old, n) = (out.len(), value.length() as usize);
            out.try_reserve(n)
                .map_err(|_| out_of_memory((old + n) as u64))?;
            out.resize(old + n, 0);
            value.copy_to(&mut out[old..]);
            let now = js_sys::Date::now();
            if now - last > 100.0 {
                last = now;
                self.worker.emit(progress(out.len()));
            }
        }
        self.worker.emit(progress(out.len()));
        Ok(out)
    }

    /// Puts `bytes` into Cache Storage under `url`. Failing to cache (quota, private mode)
    /// costs only the next visit's download, so it is reported in the console, not as an error.
    pub async fn store(&self, url: &str, bytes: &[u8], sha256: &str) {
        let Some(cache) = self.open_cache().await else {
            return;
        };
        let init = ResponseInit::new();
        let headers = web_sys::Headers::new().expect("Headers::new");
        let _ = headers.set("content-type", "application/octet-stream");
        let _ = headers.set(HEADER_BYTES, &bytes.len().to_string());
        let _ = headers.set(HEADER_SHA, sha256);
        init.set_headers(&headers);
        // SAFETY: the view is used only by the Response constructor, which copies the bytes
        // before returning; nothing allocates in wasm memory while the view exists.
        let response = unsafe {
            let view = Uint8Array::view(bytes);
            Response::new_with_opt_js_u8_array_and_init(Some(&view), &init)
        };
        let Ok(response) = response else { return };
        if let Err(e) = JsFuture::from(cache.put_with_str(url, &response)).await {
            web_sys::console::warn_1(
                &format!("axiscope: could not cache {url}: {}", js_error_text(&e)).into(),
            );
        }
    }
}

fn out_of_memory(bytes: u64) -> String {
    format!(
        "not enough memory: the browser would not give the model worker {:.0} MB (a page can use at most 4 GB); close other tabs or pick a smaller model",
        bytes as f64 / 1e6
    )
}

pub async fn sha256_hex(
    scope: &DedicatedWorkerGlobalScope,
    bytes: &[u8],
) -> Result<String, String> {
    let subtle = scope.crypto().map_err(|e| js_error_text(&e))?.subtle();
    // digest() copies the bytes before it returns its promise.
    let promise = subtle
        .digest_with_str_and_u8_array("SHA-256", bytes)
        .map_err(|e| js_error_text(&e))?;
    let digest = JsFuture::from(promise)
        .await
        .map_err(|e| format!("sha256 failed: {}", js_error_text(&e)))?;
    Ok(Uint8Array::new(&digest)
        .to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
