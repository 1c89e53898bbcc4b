//! The page's state machine (`axiscope::web::page::reducer`) natively: what each command asks
//! the worker for, and where each worker event lands. The browser tests drive the same paths
//! through the real worker; these pin the bookkeeping (ids, jobs, turn offsets, crashes) that
//! a browser run reaches only by luck of timing.

use axiscope::web::catalog::Preset;
use axiscope::web::page::models::{CatalogModel, DEFAULT_MODEL, MODELS};
use axiscope::web::page::reducer::{Effect, Job, Page, fit_band, fit_pcs};
use axiscope::web::protocol::{
    BackendPref, Branch, Event, Fault, Finish, GenSettings, ModelSource, ModelView, Request,
    SharedTurn, TurnSettings,
};

const MODEL_URL: &str = "https://example.org/models/default.gguf";

fn settings() -> TurnSettings {
    TurnSettings {
        system: String::new(),
        sampling: GenSettings::default(),
        cap: None,
        steer: 0.0,
    }
}

fn page() -> Page {
    Page::new(
        BackendPref::Auto,
        Ok(MODEL_URL.into()),
        Ok("https://example.org/bundle.axb".into()),
    )
}

fn model_view() -> ModelView {
    ModelView {
        name: "default".into(),
        architecture: "llama".into(),
        n_layers: 30,
        hidden: 576,
        context: 2048,
        bytes: 1,
        sha256: None,
        backend: "cpu".into(),
        backend_reason: String::new(),
        from_cache: false,
        load_ms: 1.0,
        template_note: None,
    }
}

/// The requests among `effects`, in order.
/// The URL and checksum of the model load the page just asked the worker for.
fn url_load(p: &mut Page) -> (String, Option<String>) {
    let effects = p.take_effects();
    match sent(&effects)[0] {
        Request::LoadModel {
            source: ModelSource::Url { url },
            sha256,
            ..
        } => (url.clone(), sha256.clone()),
        _ => panic!("expected a model load from a URL: {effects:?}"),
    }
}

fn sent(effects: &[Effect]) -> Vec<&Request> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn id_of(r: &Request) -> u32 {
    // Every request carries its id in its JSON (the worker answers by it); reading it there
    // keeps the test independent of each variant's fields.
    let v = serde_json::to_value(r).expect("requests serialise");
    v["id"].as_u64().expect("every request has an id") as u32
}

fn apply(p: &mut Page, e: Event) {
    p.apply(e, 0.0, settings);
}

/// Loads the default model and has the worker answer that it is in; returns what the page
/// did in answer.
fn load_default(p: &mut Page) -> Vec<Effect> {
    p.load_default_model();
    let id = id_of(sent(&p.take_effects())[0]);
    apply(
        p,
        Event::ModelLoaded {
            id,
            model: model_view(),
        },
    );
    apply(p, Event::Done { id });
    p.take_effects()
}

/// A page with the default model loaded and no effects pending.
fn ready() -> Page {
    let mut p = page();
    apply(&mut p, Event::Ready { cache: true });
    load_default(&mut p);
    p
}

/// Sends `user` and returns the chat request's id.
fn chat(p: &mut Page, user: &str) -> u32 {
    p.send_chat(user, settings());
    let effects = p.take_effects();
    let requests = sent(&effects);
    assert_eq!(requests.len(), 1, "one request per turn: {effects:?}");
    assert!(matches!(requests[0], Request::Chat { user: u, .. } if u == user.trim()));
    id_of(requests[0])
}

fn reply(p: &mut Page, id: u32, turn: usize, text: &str) {
    apply(
        p,
        Event::ReplyStart {
            id,
            branch: Branch::Default,
            turn,
        },
    );
    apply(
        p,
        Event::Token {
            id,
            branch: Branch::Default,
            turn,
            text: text.into(),
        },
    );
    apply(
        p,
        Event::ReplyDone {
            id,
            branch: Branch::Default,
            turn,
            text: text.into(),
            finish: Finish::EndOfTurn,
            n_tokens: 3,
            prompt_tokens: 10,
            prefilled: 4,
            prefill_tok_s: 100.0,
            decode_tok_s: 20.0,
            ms_to_first_token: 250.0,
        },
    );
    apply(p, Event::Done { id });
}

fn failed(id: u32, fault: Fault) -> Event {
    Event::Failed {
        id,
        what: "chat".into(),
        message: "it failed".into(),
        fault,
    }
}

#[test]
fn loading_the_default_model_checks_its_sha256_and_marks_readiness() {
    let mut p = page();
    p.load_default_model();
    assert_eq!(
        url_load(&mut p),
        (MODEL_URL.into(), DEFAULT_MODEL.sha256.map(str::to_string))
    );
    assert_eq!(p.model_loading.as_deref(), Some("default.gguf"));
    assert!(p.busy() && !p.can_chat());

    // Another URL carries no checksum: we do not know its bytes.
    p.load_model(ModelSource::Url {
        url: "https://example.org/other.gguf".into(),
    });
    let effects = p.take_effects();
    assert!(matches!(
        sent(&effects)[0],
        Request::LoadModel { sha256: None, .. }
    ));

    let ready = ready();
    assert!(ready.can_chat());
    assert_eq!(
        ready.model_source,
        Some(ModelSource::Url {
            url: MODEL_URL.into()
        })
    );
}

#[test]
fn a_turn_streams_into_its_reply_and_marks_the_first_token_once() {
    let mut p = ready();
    let id = chat(&mut p, "  Hello  ");
    assert_eq!(p.turns.len(), 1);
    assert_eq!(p.turns[0].user, "Hello");
    assert!(p.chatting() && !p.can_chat());

    apply(
        &mut p,
        Event::ReplyStart {
            id,
            branch: Branch::Default,
            turn: 0,
        },
    );
    for piece in ["Hi", " there"] {
        apply(
            &mut p,
            Event::Token {
                id,
                branch: Branch::Default,
                turn: 0,
                text: piece.into(),
            },
        );
    }
    let marks: Vec<_> = p
        .take_effects()
        .into_iter()
        .filter(|e| *e == Effect::Mark("axiscope:first-token"))
        .collect();
    assert_eq!(marks.len(), 1, "one first-token mark per turn");
    let r = p.turns[0].reply(Branch::Default);
    assert!(r.present && r.streaming);
    assert_eq!(r.text, "Hi there");
    assert!(!p.turns[0].reply(Branch::Capped).present);

    reply(&mut p, id, 0, "Hi there!");
    let r = p.turns[0].reply(Branch::Default);
    assert!(!r.streaming);
    assert_eq!(
        r.text, "Hi there!",
        "the final text replaces the streamed one"
    );
    assert_eq!(r.finish, Some(Finish::EndOfTurn));
    assert_eq!(
        r.speed.as_deref(),
        Some("3 tokens, first after 0.2 s, 20.0 tok/s; prompt 10 tokens, 6 from the cache")
    );
    assert!(p.can_chat());

    // Nothing is sent without a model, or for an empty message.
    let mut cold = page();
    cold.send_chat("Hello", settings());
    assert!(cold.turns.is_empty() && cold.take_effects().is_empty());
    p.send_chat("   ", settings());
    assert_eq!(p.turns.len(), 1);
}

#[test]
fn a_full_context_is_told_apart_from_other_failures_by_its_fault() {
    for (fault, full) in [(Fault::ContextFull, true), (Fault::Other, false)] {
        let mut p = ready();
        let first = chat(&mut p, "one");
        reply(&mut p, first, 0, "1");
        let id = chat(&mut p, "two");
        apply(&mut p, failed(id, fault));
        apply(&mut p, Event::Done { id });
        let e = p.chat_error.clone().expect("the failure is shown");
        assert_eq!(e.context_full, full);
        assert_eq!(e.message, "it failed");
        assert_eq!(p.turns.len(), 1, "the failed turn is taken back");
        assert!(p.can_chat());
        // The next turn clears it.
        chat(&mut p, "three");
        assert_eq!(p.chat_error, None);
    }
}

#[test]
fn a_preset_sends_its_turns_in_turn_and_a_failure_or_stop_ends_it() {
    let preset = Preset {
        kind: "test".into(),
        title: "Test".into(),
        user_turns: vec!["a".into(), "b".into(), "c".into()],
    };
    let mut p = ready();
    p.run_preset(&preset, settings());
    let id = id_of(sent(&p.take_effects())[0]);
    assert_eq!(p.preset_queue, ["b", "c"]);
    reply(&mut p, id, 0, "A");
    let effects = p.take_effects();
    let next = sent(&effects);
    assert!(matches!(next[0], Request::Chat { user, .. } if user == "b"));
    assert_eq!(p.turns.len(), 2);

    // A failure drops the rest.
    let id = id_of(next[0]);
    apply(&mut p, failed(id, Fault::Other));
    apply(&mut p, Event::Done { id });
    assert!(p.preset_queue.is_empty());
    assert!(sent(&p.take_effects()).is_empty());
    assert_eq!(p.turns.len(), 1);

    // Stop cancels the newest request and drops the rest too.
    p.run_preset(&preset, settings());
    let id = id_of(sent(&p.take_effects())[0]);
    p.stop();
    assert!(p.preset_queue.is_empty());
    assert_eq!(p.take_effects(), [Effect::Cancel(id)]);
    apply(&mut p, Event::Done { id });
    assert!(sent(&p.take_effects()).is_empty(), "nothing follows a stop");
}

#[test]
fn trimming_keeps_the_old_turns_shown_and_maps_the_workers_turns_past_them() {
    let mut p = ready();
    for (i, text) in ["a", "b", "c"].into_iter().enumerate() {
        let id = chat(&mut p, text);
        reply(&mut p, id, i, &text.to_uppercase());
    }
    p.trim_oldest(settings());
    assert_eq!(
        p.turn_offset, 2,
        "half the three turns in context, rounded up"
    );
    assert_eq!(p.turns.len(), 3);
    assert_eq!(p.turns_in_context(), 1);
    let effects = p.take_effects();
    let Request::Restore { id, turns, .. } = sent(&effects)[0] else {
        panic!("expected a restore: {effects:?}");
    };
    assert_eq!(
        turns,
        &[SharedTurn {
            user: "c".into(),
            assistant: "C".into(),
            capped: None
        }]
    );
    let id = *id;
    apply(&mut p, Event::Done { id });

    // The worker's turn 1 is the page's turn 3.
    let id = chat(&mut p, "d");
    reply(&mut p, id, 1, "D");
    assert_eq!(p.turns[3].reply(Branch::Default).text, "D");
    assert_eq!(p.turns[2].reply(Branch::Default).text, "C");

    // Undo takes back turns the model sees, never the trimmed ones.
    for _ in 0..3 {
        p.undo();
        for r in sent(&p.take_effects()) {
            apply(&mut p, Event::Done { id: id_of(r) });
        }
    }
    assert_eq!(p.turns.len(), 2);
    assert_eq!(p.turn_offset, 2);

    p.reset();
    assert!(p.turns.is_empty());
    assert_eq!(p.turn_offset, 0);
    assert!(matches!(sent(&p.take_effects())[0], Request::Reset { .. }));
}

#[test]
fn shared_turns_wait_for_a_model_and_are_measured_once_it_is_in() {
    let mut p = page();
    let turns = vec![SharedTurn {
        user: "hi".into(),
        assistant: "hello".into(),
        capped: Some("hello, capped".into()),
    }];
    p.restore(turns.clone(), settings());
    assert_eq!(p.turns.len(), 1);
    assert!(p.turns[0].reply(Branch::Capped).present);
    assert!(p.take_effects().is_empty(), "no model yet: nothing to send");

    let effects = load_default(&mut p);
    assert!(effects.contains(&Effect::Mark("axiscope:model-ready")));
    assert!(
        matches!(sent(&effects)[0], Request::Restore { turns: t, .. } if *t == turns),
        "{effects:?}"
    );
    assert_eq!(p.share_state(settings()).turns, turns);
    assert_eq!(
        p.share_state(settings()).model_url,
        None,
        "the default is not named"
    );
}

#[test]
fn after_a_worker_crash_the_model_and_the_turns_in_context_come_back() {
    let mut p = ready();
    for (i, text) in ["a", "b"].into_iter().enumerate() {
        let id = chat(&mut p, text);
        reply(&mut p, id, i, text);
    }
    p.trim_oldest(settings());
    let restore = id_of(sent(&p.take_effects())[0]);
    apply(&mut p, Event::Done { id: restore });
    let id = chat(&mut p, "c");

    p.recover("out of memory".into(), Ok(()));
    assert!(p.model.is_none());
    let jobs: Vec<_> = p.jobs.iter().map(|(_, job)| *job).collect();
    assert_eq!(
        jobs,
        [Job::Bundle, Job::Model],
        "the dead worker's requests are forgotten"
    );
    assert_eq!(p.worker_crashed.as_deref(), Some("out of memory"));
    assert_eq!(p.turns.len(), 3, "nothing typed is lost");
    let effects = p.take_effects();
    let requests = sent(&effects);
    assert!(matches!(requests[0], Request::LoadBundle { .. }));
    assert!(matches!(requests[1], Request::LoadModel { .. }));
    // The dead worker's events no longer land anywhere.
    apply(&mut p, failed(id, Fault::Other));
    assert_eq!(p.chat_error, None);

    let load = id_of(requests[1]);
    apply(
        &mut p,
        Event::ModelLoaded {
            id: load,
            model: model_view(),
        },
    );
    let effects = p.take_effects();
    let Request::Restore { turns, .. } = sent(&effects)[0] else {
        panic!("expected a restore: {effects:?}");
    };
    let users: Vec<_> = turns.iter().map(|t| t.user.as_str()).collect();
    assert_eq!(
        users,
        ["b", "c"],
        "only the turns still in the model's context"
    );

    // A worker that dies every time stops being restarted.
    p.recover("again".into(), Ok(()));
    p.take_effects();
    p.recover("and again".into(), Ok(()));
    assert!(p.model_error.as_deref().unwrap().contains("3 times"));
    assert!(
        !sent(&p.take_effects())
            .iter()
            .any(|r| matches!(r, Request::LoadModel { .. }))
    );

    // No new worker at all.
    let mut p = ready();
    p.recover("gone".into(), Err("no workers here".into()));
    assert!(
        p.worker_crashed
            .as_deref()
            .unwrap()
            .contains("no workers here")
    );
    assert!(p.take_effects().is_empty());
}

#[test]
fn a_local_file_cannot_be_reloaded_after_a_crash_and_says_so() {
    let mut p = page();
    p.load_model(ModelSource::File {
        name: "mine.gguf".into(),
        size: 10,
    });
    let id = id_of(sent(&p.take_effects())[0]);
    apply(
        &mut p,
        Event::ModelLoaded {
            id,
            model: model_view(),
        },
    );
    p.recover("crashed".into(), Ok(()));
    assert_eq!(
        p.model_error.as_deref(),
        Some("mine.gguf was a local file: pick it again to go on")
    );
    p.retry_model();
    assert!(
        !sent(&p.take_effects())
            .iter()
            .any(|r| matches!(r, Request::LoadModel { .. })),
        "try again reloads URLs only"
    );
}

#[test]
fn failures_land_where_the_visitor_looks_for_their_request() {
    let mut p = page();
    p.load_default_model();
    p.load_bundle();
    let effects = p.take_effects();
    let (model, bundle) = (id_of(sent(&effects)[0]), id_of(sent(&effects)[1]));
    apply(
        &mut p,
        Event::Progress {
            id: bundle,
            loaded: 10,
            total: Some(100),
            from_cache: false,
        },
    );
    apply(
        &mut p,
        Event::Progress {
            id: bundle,
            loaded: 50,
            total: Some(100),
            from_cache: false,
        },
    );
    let progress = p.progress.clone().expect("progress shown");
    assert_eq!(progress.job, Job::Bundle);
    assert_eq!(progress.fraction(), Some(0.5));

    apply(&mut p, failed(bundle, Fault::Other));
    assert_eq!(p.bundle_error.as_deref(), Some("it failed"));
    assert_eq!(p.progress, None);
    apply(&mut p, failed(model, Fault::Other));
    assert_eq!(p.model_error.as_deref(), Some("it failed"));
    assert_eq!(p.model_loading, None);
    assert_eq!(p.chat_error, None);
    // A request the page no longer tracks still gets a notice, with what failed.
    apply(&mut p, failed(999, Fault::Other));
    assert_eq!(p.notice.as_deref(), Some("chat: it failed"));

    // A failed download can be tried again, with the same source.
    p.retry_model();
    assert!(matches!(
        sent(&p.take_effects())[0],
        Request::LoadModel { source: ModelSource::Url { url }, .. } if url == MODEL_URL
    ));
}

#[test]
fn a_request_that_never_reached_a_worker_frees_the_page() {
    let mut p = ready();
    let id = chat(&mut p, "hello");
    assert!(p.busy());
    p.drop_job(id);
    assert!(!p.busy() && p.can_chat());
}

#[test]
fn a_file_from_the_worker_is_saved_and_the_axis_is_asked_for() {
    let mut p = ready();
    p.export_axis(axiscope::web::protocol::AxisFormat::Json);
    let effects = p.take_effects();
    let id = id_of(sent(&effects)[0]);
    apply(
        &mut p,
        Event::File {
            id,
            name: "axis.json".into(),
            mime: "application/octet-stream".into(),
            bytes: vec![0, 1, 2],
        },
    );
    assert_eq!(
        p.take_effects(),
        [Effect::Save {
            name: "axis.json".into(),
            mime: "application/octet-stream".into(),
            bytes: vec![0, 1, 2]
        }]
    );
}

#[test]
fn controls_shown_for_one_bundle_are_fitted_to_the_next() {
    assert_eq!(fit_band((10, 20), 30), (10, 20));
    let fallback = fit_band((10, 40), 30);
    assert!(fallback.0 < fallback.1 && fallback.1 <= 30);
    assert_eq!(fit_band((5, 5), 30), fallback, "an empty band is replaced");
    assert_eq!(fit_pcs((2, 3), 5), (2, 3));
    assert_eq!(fit_pcs((5, 1), 5), (5, 1), "the axis, past the PCs, stays");
    assert_eq!(fit_pcs((2, 6), 5), (0, 1));
    assert_eq!(fit_pcs((2, 3), 1), (0, 1), "one PC: it against the axis");
    assert_eq!(fit_pcs((2, 3), 0), (0, 0), "no PC: the axis alone");
}

#[test]
fn the_model_menu_loads_by_url_or_says_why_not() {
    let gemma = CatalogModel::by_id("gemma-3-1b").unwrap();
    // 806 MB of weights, the KV caches of an 8-sequence map build, working memory.
    assert!((1_000_000_000..1_200_000_000).contains(&gemma.memory_estimate()));

    // A device that reports 2 GB may give a page half: too little for it. Nothing is sent, the
    // reason is shown, and nothing else changes.
    let mut p = page();
    p.load_catalog_model("gemma-3-1b", Some(2.0));
    assert!(sent(&p.take_effects()).is_empty());
    let why = p.model_error.clone().unwrap();
    assert!(
        why.contains("Gemma-3-1B-it") && why.contains("2 GB"),
        "{why}"
    );
    assert!(p.model_loading.is_none() && p.model_attempt.is_none());

    // With 4 GB (or no figure) it loads from its host, with the progress line naming the file.
    p.load_catalog_model("gemma-3-1b", Some(4.0));
    assert_eq!(
        url_load(&mut p),
        (gemma.url.into(), gemma.sha256.map(str::to_string))
    );
    assert_eq!(
        p.model_loading.as_deref(),
        Some("gemma-3-1b-it-Q4_K_M.gguf")
    );
    assert!(p.model_error.is_none());

    // The default from the menu is the default load, checksum and all.
    let mut p = page();
    p.load_catalog_model(DEFAULT_MODEL.id, None);
    let effects = p.take_effects();
    assert!(matches!(
        sent(&effects)[0],
        Request::LoadModel {
            sha256: Some(_),
            ..
        }
    ));

    // A menu model with a bundle served beside the page: its bundle once the model is in (a
    // failed download leaves the map in use alone); back to the default, the page's bundle.
    let coder = CatalogModel::by_id("qwen2.5-coder-0.5b").unwrap();
    let loaded = |p: &mut Page| {
        let effects = p.take_effects();
        let reqs = sent(&effects);
        assert_eq!(reqs.len(), 1, "{effects:?}");
        let id = id_of(reqs[0]);
        let model = model_view();
        apply(p, Event::ModelLoaded { id, model });
        p.take_effects()
    };
    let bundle_sent = |effects: &[Effect]| -> Option<String> {
        sent(effects).iter().find_map(|r| match r {
            Request::LoadBundle { url, .. } => Some(url.clone()),
            _ => None,
        })
    };
    let mut p = page();
    p.load_catalog_model(coder.id, None);
    assert_eq!(
        bundle_sent(&loaded(&mut p)).as_deref(),
        coder.bundle,
        "the coder's bundle"
    );
    p.load_catalog_model(DEFAULT_MODEL.id, None);
    assert_eq!(
        bundle_sent(&loaded(&mut p)).as_deref(),
        Some("https://example.org/bundle.axb")
    );
    // A model without one keeps the bundle in use (its map is built in the browser).
    p.load_catalog_model("gemma-3-1b", None);
    assert_eq!(bundle_sent(&loaded(&mut p)), None);
    // A failed download of the coder, then another load: its bundle is never asked for.
    p.load_catalog_model(coder.id, None);
    p.take_effects();
    p.load_default_model();
    assert_eq!(bundle_sent(&loaded(&mut p)), None);

    let mut p = page();
    p.load_catalog_model("no-such-model", None);
    assert!(sent(&p.take_effects()).is_empty());
    assert!(p.model_error.as_deref().unwrap().contains("no-such-model"));
}

#[test]
fn every_menu_model_fits_a_browser_worker_and_the_default_is_recognised_by_url() {
    for m in MODELS {
        m.fits(None).unwrap();
        assert_eq!(CatalogModel::by_id(m.id), Some(m));
        assert!(m.label().starts_with(m.name));
    }
    let abs = format!("https://example.org/app/{}", DEFAULT_MODEL.url);
    assert_eq!(CatalogModel::by_url(&abs), Some(&DEFAULT_MODEL));
    assert_eq!(CatalogModel::by_url("https://example.org/other.gguf"), None);
}
