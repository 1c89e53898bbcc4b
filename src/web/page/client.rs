//! The page's side of the model worker: starts it, queues requests until it says it is ready
//! (the page's state numbers them), and shares the cancel flag with it (a `SharedArrayBuffer`,
//! where the page is cross-origin isolated; without one, Stop cannot reach a busy worker).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Atomics, Int32Array, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{File, MessageEvent, Worker, WorkerOptions};

use crate::web::dom::{cross_origin_isolated, js_error_text};
use crate::web::protocol::{Event, Request, decode, encode};

/// Trunk builds each worker binary with a loader next to the page (data-loader-shim): the same
/// worker with plain simd128 kernels, and with relaxed-SIMD ones (`relaxed-simd` feature).
const WORKER_SCRIPT: &str = "./axiscope-worker_loader.js";
const RELAXED_WORKER_SCRIPT: &str = "./axiscope-worker-relaxed_loader.js";

/// The relaxed-SIMD worker where the browser runs relaxed SIMD as the standard says (a module
/// with such an instruction would not even compile elsewhere), unless `?simd=plain` asks for
/// the plain one (to compare the two, or to rule the kernels out).
fn worker_script() -> String {
    let plain = crate::web::dom::query_param("simd").as_deref() == Some("plain");
    let script = if !plain && relaxed_dot_is_standard() {
        RELAXED_WORKER_SCRIPT
    } else {
        WORKER_SCRIPT
    };
    // The worker reads `?threads=` from its own URL (src/web/worker/row_helper.rs).
    match crate::web::dom::query_param("threads").as_deref() {
        Some(t @ ("1" | "2")) => format!("{script}?threads={t}"),
        _ => script.to_string(),
    }
}

/// Runs the two relaxed instructions the kernels use on known inputs: validating is not enough,
/// as an engine's early, pre-standard version (Node 20's V8 behind a flag) computes another sum.
fn relaxed_dot_is_standard() -> bool {
    let bytes = js_sys::Uint8Array::from(relaxed_dot_probe().as_slice());
    let Ok(module) = js_sys::WebAssembly::Module::new(&bytes) else {
        return false;
    };
    let Ok(instance) = js_sys::WebAssembly::Instance::new(&module, &Object::new()) else {
        return false;
    };
    Reflect::get(&instance.exports(), &"f".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(&JsValue::NULL).ok())
        .and_then(|v| v.as_f64())
        == Some(-90.0)
}

/// A module exporting `f: () -> i32`: lane 0 of `i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c)`
/// plus lane 0 of `i16x8.relaxed_dot_i8x16_i7x16_s(a, b)`, with a = -1 (signed), b = 15
/// (7-bit), c = 0: four products summed and two, -60 - 30 = -90 by the standard.
fn relaxed_dot_probe() -> Vec<u8> {
    let mut body = vec![0x00]; // no locals
    let consts = |body: &mut Vec<u8>, bytes: &[u8]| {
        for &byte in bytes {
            body.extend([0xfd, 0x0c]); // v128.const
            body.extend([byte; 16]);
        }
    };
    consts(&mut body, &[0xff, 15, 0]);
    body.extend([0xfd, 0x93, 0x02]); // i32x4.relaxed_dot_i8x16_i7x16_add_s (0x113, LEB128)
    body.extend([0xfd, 0x1b, 0x00]); // i32x4.extract_lane 0
    consts(&mut body, &[0xff, 15]);
    body.extend([0xfd, 0x92, 0x02]); // i16x8.relaxed_dot_i8x16_i7x16_s (0x112)
    body.extend([0xfd, 0x18, 0x00]); // i16x8.extract_lane_s 0
    body.extend([0x6a, 0x0b]); // i32.add, end
    let mut m = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]; // "\0asm", version 1
    m.extend([0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f]); // type section: [] -> [i32]
    m.extend([0x03, 0x02, 0x01, 0x00]); // function section: one function of type 0
    m.extend([0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00]); // export section: "f" = function 0
    m.extend([0x0a, body.len() as u8 + 2, 0x01, body.len() as u8]); // code section
    m.extend(body);
    m
}

pub struct WorkerClient {
    worker: Worker,
    ready: Cell<bool>,
    /// Messages posted before the worker listens would be lost: they wait here.
    pending: RefCell<Vec<JsValue>>,
    cancel: Option<(JsValue, Int32Array)>,
    /// The flag travels with the first message only.
    cancel_sent: Cell<bool>,
}

thread_local! {
    static CLIENT: RefCell<Option<Rc<WorkerClient>>> = const { RefCell::new(None) };
}

/// Starts the worker; `on_event` gets every event, `on_crash` the reason if the worker dies.
pub fn start(
    on_event: impl Fn(Event) + 'static,
    on_crash: impl Fn(String) + 'static,
) -> Result<(), String> {
    let options = WorkerOptions::new();
    options.set_name("axiscope-model");
    let worker =
        Worker::new_with_options(&worker_script(), &options).map_err(|e| js_error_text(&e))?;
    let cancel = cross_origin_isolated().then(|| {
        let sab = js_sys::SharedArrayBuffer::new(4);
        let view = Int32Array::new(&sab);
        (JsValue::from(sab), view)
    });
    let client = Rc::new(WorkerClient {
        worker: worker.clone(),
        ready: Cell::new(false),
        pending: RefCell::new(Vec::new()),
        cancel,
        cancel_sent: Cell::new(false),
    });
    let c = client.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let data = ev.data();
        let field = |name: &str| Reflect::get(&data, &name.into()).unwrap_or_default();
        let text = field("json").as_string().unwrap_or_default();
        match decode::<Event>(&text) {
            Ok(mut event) => {
                if let Event::File { bytes, .. } = &mut event {
                    let buffer = field("bytes");
                    if buffer.is_object() {
                        *bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                    }
                }
                if matches!(event, Event::Ready { .. }) {
                    c.ready.set(true);
                    for m in c.pending.borrow_mut().drain(..) {
                        let _ = c.worker.post_message(&m);
                    }
                }
                on_event(event)
            }
            Err(e) => web_sys::console::error_1(&format!("axiscope: worker sent {e}").into()),
        }
    });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let onerror = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
        ev.prevent_default();
        let msg = ev.message();
        on_crash(if msg.is_empty() {
            "the model worker stopped (out of memory?)".into()
        } else {
            msg
        })
    });
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    onerror.forget();
    CLIENT.with(|cell| *cell.borrow_mut() = Some(client));
    Ok(())
}

/// Ends the worker (after it crashed, before starting another).
pub fn stop() {
    if let Some(c) = CLIENT.with(|cell| cell.borrow_mut().take()) {
        c.worker.terminate();
    }
}

/// Sends `request` (numbered by the page's state); false when no worker is running.
pub fn send(request: Request, file: Option<File>) -> bool {
    let Some(c) = CLIENT.with(|cell| cell.borrow().clone()) else {
        return false;
    };
    let message = Object::new();
    let _ = Reflect::set(
        &message,
        &"json".into(),
        &JsValue::from_str(&encode(&request)),
    );
    if let Some(f) = file {
        let _ = Reflect::set(&message, &"file".into(), &f);
    }
    if let Some((sab, _)) = &c.cancel
        && !c.cancel_sent.replace(true)
    {
        let _ = Reflect::set(&message, &"cancel".into(), sab);
    }
    if c.ready.get() {
        if let Err(e) = c.worker.post_message(&message) {
            web_sys::console::error_1(
                &format!(
                    "axiscope: could not message the worker: {}",
                    js_error_text(&e)
                )
                .into(),
            );
        }
    } else {
        c.pending.borrow_mut().push(message.into());
    }
    true
}

/// Cancels every request up to and including `id`. False when Stop cannot work here.
pub fn cancel(id: u32) -> bool {
    CLIENT
        .with(|cell| {
            cell.borrow().as_ref().and_then(|c| {
                c.cancel
                    .as_ref()
                    .map(|(_, view)| Atomics::store(view, 0, id as i32).is_ok())
            })
        })
        .unwrap_or(false)
}

pub fn can_cancel() -> bool {
    CLIENT.with(|cell| cell.borrow().as_ref().is_some_and(|c| c.cancel.is_some()))
}
