//! The chat: system prompt, the conversation (Default and Capped side by side while capping
//! is on), the composer with Send / Stop / Undo / Reset, preset conversations, and the
//! per-token view. Every text shown here is a text node, never parsed as HTML.

use leptos::prelude::*;

use super::chart::{fmt, projection_colour};
use super::client;
use super::gen_settings::GenSettingsPanel;
use super::state::{ReplyEntry, TurnEntry, use_app};
use crate::science::data::RoleSpec;
use crate::web::catalog::{self, Preset};
use crate::web::protocol::{Branch, Finish};

#[component]
pub fn Chat(#[prop(optional)] compact: bool) -> impl IntoView {
    let app = use_app();
    let input = RwSignal::new(String::new());
    let send = move || {
        let text = input.get_untracked();
        if app.can_chat() && !text.trim().is_empty() {
            input.set(String::new());
            app.send_chat(text);
        }
    };
    let two = move || {
        app.turns
            .with(|t| t.iter().any(|e| e.replies[1].present.get()))
    };
    let can_stop = client::can_cancel();
    // Follow the conversation as it streams, unless the visitor scrolled up to read.
    let messages = NodeRef::<leptos::html::Div>::new();
    let pinned = StoredValue::new(true);
    Effect::new(move |_| {
        app.turns.with(|t| {
            if let Some(e) = t.last() {
                e.replies.iter().for_each(|r| r.text.track());
            }
        });
        if pinned.get_value()
            && let Some(el) = messages.get_untracked()
        {
            el.set_scroll_top(el.scroll_height());
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = messages.get_untracked() {
            pinned.set_value(el.scroll_height() - el.scroll_top() - el.client_height() < 40);
        }
    };
    view! {
        <section class="card chat" aria-labelledby="chat-h">
            <h2 id="chat-h">"Chat"</h2>
            {(!compact).then(|| view! { <SystemPrompt/> })}
            <div class="messages" class:two=two data-testid="messages" node_ref=messages on:scroll=on_scroll>
                <Show when=move || app.turns.with(|t| t.is_empty())>
                    <p class="empty">
                        {move || if app.model.with(|m| m.is_some()) {
                            "Say something to the model, or run a preset conversation."
                        } else {
                            "The conversation starts once a model is loaded."
                        }}
                    </p>
                </Show>
                <For each=move || app.turns.get() key=|t| t.key children=move |t| view! { <TurnView turn=t/> }/>
            </div>
            {move || app.chat_error.get().map(|e| view! { <p class="error" role="alert" data-testid="chat-error">{e.message}</p> })}
            <Show when=move || app.context_full()>
                // The context is full: the visitor chooses; the earlier drift points stay either way
                // until "Start over".
                <p class="row" data-testid="context-choice">
                    <button
                        type="button"
                        data-testid="context-trim"
                        disabled=move || app.busy() || app.turns_in_context() == 0
                        title="The oldest half of the turns leave the model's context; they stay on the page and the chart"
                        on:click=move |_| app.trim_oldest()
                    >
                        "Trim the oldest turns"
                    </button>
                    <button type="button" data-testid="context-restart" disabled=move || app.busy() on:click=move |_| app.reset()>
                        "Start over"
                    </button>
                </p>
            </Show>
            <form
                class="composer"
                on:submit=move |ev| {
                    ev.prevent_default();
                    send();
                }
            >
                <label class="grow">
                    <span class="visually-hidden">"Message"</span>
                    <textarea
                        data-testid="chat-input"
                        rows="2"
                        placeholder="Message the model (Enter sends, Shift+Enter for a new line)"
                        prop:value=move || input.get()
                        on:input=move |ev| input.set(event_target_value(&ev))
                        on:keydown=move |ev| {
                            if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                                ev.prevent_default();
                                send();
                            }
                        }
                    ></textarea>
                </label>
                <div class="buttons">
                    <button type="submit" data-testid="chat-send" disabled=move || !app.can_chat()>"Send"</button>
                    <button
                        type="button"
                        data-testid="chat-stop"
                        disabled=move || !can_stop || !app.chatting()
                        title=if can_stop { "Stop the reply" } else { "Stop needs a cross-origin isolated page (COOP/COEP headers)" }
                        on:click=move |_| app.stop()
                    >
                        "Stop"
                    </button>
                    <button type="button" data-testid="chat-undo" disabled=move || app.busy() || app.turns_in_context() == 0 on:click=move |_| app.undo()>
                        "Undo"
                    </button>
                    <button type="button" data-testid="chat-reset" disabled=move || app.busy() || app.turns.with(|t| t.is_empty()) on:click=move |_| app.reset()>
                        "Reset"
                    </button>
                </div>
            </form>
            <Presets/>
            <label class="check">
                <input type="checkbox" data-testid="token-view" prop:checked=move || app.token_view.get() on:change=move |ev| app.token_view.set(event_target_checked(&ev))/>
                " Colour each token by its projection (blue: toward the Assistant, orange: away)"
            </label>
            {(!compact).then(|| view! { <GenSettingsPanel/> })}
        </section>
    }
}

#[component]
fn TurnView(turn: TurnEntry) -> impl IntoView {
    let app = use_app();
    let user = turn.user.get_value();
    let i = turn.index;
    view! {
        <div class="turn" data-turn=i data-trimmed=move || (i < app.turn_offset.get()).to_string()>
            <p class="user" data-testid="user-message">
                <span class="who">{move || {
                    let trimmed = if i < app.turn_offset.get() { " (trimmed: the model no longer sees it)" } else { "" };
                    format!("You · turn {}{trimmed}", i + 1)
                }}</span>
                <span class="text">{user}</span>
            </p>
            <div class="replies">
                <ReplyView turn=i branch=Branch::Default reply=turn.reply(Branch::Default)/>
                <ReplyView turn=i branch=Branch::Capped reply=turn.reply(Branch::Capped)/>
            </div>
        </div>
    }
}

#[component]
fn ReplyView(turn: usize, branch: Branch, reply: ReplyEntry) -> impl IntoView {
    let app = use_app();
    let id = format!("turn-{turn}-{}", branch.name());
    let label = match branch {
        Branch::Default => "Default",
        Branch::Capped => "Capped",
    };
    let badge = move || {
        let scale = app.bundle.with(|b| {
            b.as_ref()
                .map_or(1.0, |b| b.default_projection.abs().max(1e-3))
        });
        reply.point.get().map(|p| {
            let title = if p.read_back {
                "Projection on the Assistant Axis, read back by the unsteered model"
            } else {
                "Projection on the Assistant Axis (0 = the average role)"
            };
            view! {
                <span class="badge" style:border-color=projection_colour(p.projection, scale) title=title data-testid="reply-projection">
                    {format!("axis {}{}", if p.projection >= 0.0 { "+" } else { "" }, fmt(p.projection))}
                </span>
            }
        })
    };
    let body = move || {
        let tokens = app
            .token_view
            .get()
            .then(|| reply.point.get())
            .flatten()
            .filter(|_| !reply.streaming.get());
        match tokens {
            Some(p) => {
                let scale = p
                    .tokens
                    .iter()
                    .map(|t| t.projection.abs())
                    .fold(1e-3f32, f32::max);
                p.tokens
                    .into_iter()
                    .map(|t| {
                        let title = format!("{}{}", if t.projection >= 0.0 { "+" } else { "" }, fmt(t.projection));
                        view! { <span class="tok" data-testid="token" style:background-color=projection_colour(t.projection, scale) title=title>{t.text}</span> }
                    })
                    .collect_view()
                    .into_any()
            }
            None => view! { <span>{move || reply.text.get()}</span> }.into_any(),
        }
    };
    let meta = move || {
        let finish = match reply.finish.get() {
            Some(Finish::MaxTokens) => " · cut at the max tokens setting",
            Some(Finish::ContextFull) => " · the context is full: undo or reset to go on",
            Some(Finish::Stopped) => " · stopped",
            _ => "",
        };
        reply.speed.get().map(|s| format!("{s}{finish}"))
    };
    view! {
        <Show when=move || reply.present.get()>
            <article
                class="reply"
                class:capped=branch == Branch::Capped
                class:streaming=move || reply.streaming.get()
                class:hovered=move || app.hover.get() == Some((turn, branch))
                id=id.clone()
                tabindex="-1"
                data-testid="assistant-message"
                data-branch=branch.name()
                data-turn=turn
                data-finish=move || reply.finish.get().map(Finish::name)
                aria-busy=move || reply.streaming.get().to_string()
            >
                <header>
                    <span class="who">{label}</span>
                    {badge}
                </header>
                <div class="text">{body}</div>
                <footer class="meta">{meta}</footer>
            </article>
        </Show>
    }
}

/// The system prompt: one of our roles' prompts (or the default condition's), or custom.
#[component]
fn SystemPrompt() -> impl IntoView {
    let app = use_app();
    // `{model_name}` stays in the prompts until one is chosen, when the loaded model names it.
    let roles = StoredValue::new(catalog::roles("{model_name}"));
    let role = RwSignal::new("default".to_string());
    let prompt_index = RwSignal::new(0usize);
    let model_name = move || {
        app.model
            .with(|m| m.as_ref().map_or("SmolLM2".to_string(), |m| m.name.clone()))
    };
    let apply = move || {
        let name = role.get_untracked();
        if name == "custom" {
            return;
        }
        let text = roles.with_value(|rs| {
            rs.iter()
                .find(|r| r.name == name)
                .and_then(|r| r.prompts.get(prompt_index.get_untracked()).cloned())
        });
        if let Some(t) = text {
            app.system.set(t.replace("{model_name}", &model_name()));
        }
    };
    let groups = roles.with_value(|rs| {
        let mut groups: Vec<(String, Vec<RoleSpec>)> = Vec::new();
        for r in rs {
            match groups.last_mut() {
                Some((c, v)) if *c == r.category => v.push(r.clone()),
                _ => groups.push((r.category.clone(), vec![r.clone()])),
            }
        }
        groups
    });
    let n_prompts = move || {
        let name = role.get();
        roles.with_value(|rs| {
            rs.iter()
                .find(|r| r.name == name)
                .map_or(0, |r| r.prompts.len())
        })
    };
    view! {
        <div class="system">
            <div class="row">
                <label>
                    "System prompt: "
                    <select
                        data-testid="system-role"
                        prop:value=move || role.get()
                        on:change=move |ev| {
                            role.set(event_target_value(&ev));
                            prompt_index.set(0);
                            apply();
                        }
                    >
                        {groups
                            .into_iter()
                            .map(|(cat, rs)| {
                                view! {
                                    <optgroup label=cat>
                                        {rs.into_iter().map(|r| view! { <option value=r.name.clone()>{catalog::label(&r.name)}</option> }).collect_view()}
                                    </optgroup>
                                }
                            })
                            .collect_view()}
                        <option value="custom">"custom"</option>
                    </select>
                </label>
                <Show when=move || n_prompts().gt(&1)>
                    <label>
                        " prompt "
                        <select
                            data-testid="system-variant"
                            prop:value=move || prompt_index.get().to_string()
                            on:change=move |ev| {
                                prompt_index.set(event_target_value(&ev).parse().unwrap_or(0));
                                apply();
                            }
                        >
                            {move || (0..n_prompts()).map(|i| view! { <option value=i.to_string()>{(i + 1).to_string()}</option> }).collect_view()}
                        </select>
                    </label>
                </Show>
            </div>
            <label class="grow">
                <span class="visually-hidden">"System prompt text"</span>
                <textarea
                    data-testid="system-prompt"
                    rows="2"
                    placeholder="No system prompt (the model's template may add its own)"
                    prop:value=move || app.system.get()
                    on:input=move |ev| {
                        app.system.set(event_target_value(&ev));
                        role.set("custom".into());
                    }
                ></textarea>
            </label>
        </div>
    }
}

/// Preset conversations: our scripted user turns, replayed one by one.
#[component]
fn Presets() -> impl IntoView {
    let app = use_app();
    let presets: StoredValue<Vec<Preset>> = StoredValue::new(catalog::presets());
    let chosen = RwSignal::new(String::from("therapy"));
    let run = move |_| {
        let kind = chosen.get_untracked();
        if let Some(p) = presets.with_value(|ps| ps.iter().find(|p| p.kind == kind).cloned()) {
            app.run_preset(&p);
        }
    };
    view! {
        <div class="row presets">
            <label>
                "Preset conversation: "
                <select data-testid="preset-select" prop:value=move || chosen.get() on:change=move |ev| chosen.set(event_target_value(&ev))>
                    {presets
                        .with_value(|ps| ps.iter().map(|p| view! { <option value=p.kind.clone()>{format!("{}: {}", p.kind, p.title)}</option> }).collect_view())}
                </select>
            </label>
            <button type="button" data-testid="preset-run" disabled=move || !app.can_chat() on:click=run>"Run"</button>
            {move || {
                let left = app.preset_queue.with(|q| q.len());
                (left > 0).then(|| view! { <span class="muted" data-testid="preset-left">{format!("{left} user turns to go")}</span> })
            }}
        </div>
    }
}
