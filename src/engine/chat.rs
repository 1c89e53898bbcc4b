//! Chat templates (ChatML for SmolLM2 and Qwen2.5, Llama 3, Gemma 3), rendered by us rather
//! than by a Jinja engine, with every token labelled: the science averages over assistant
//! content only.

use super::error::Result;
use super::gguf::GgufFile;
use super::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What a token of a rendered chat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Begin-of-text and other framing outside any message.
    Control,
    /// A role header such as `<|im_start|>assistant\n`.
    Header,
    System,
    User,
    AssistantContent,
    /// The end-of-turn token and the separator after it.
    EndOfTurn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateKind {
    /// `<|im_start|>role\ncontent<|im_end|>\n`; the template's own system prompt, if it injects
    /// one when the conversation has none. `empty_think`: Qwen3's template, run as its
    /// `enable_thinking=false` renders it: each reply opens with an empty think block.
    ChatMl {
        default_system: Option<String>,
        empty_think: bool,
    },
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`. `system_preamble`:
    /// Llama 3.1-3.3's templates always open with a system block that starts with the
    /// knowledge cutoff and a date ("Cutting Knowledge Date: ...\nToday Date: ...\n\n"), the
    /// system prompt (if any) after it; Llama 3.0's has none.
    Llama3 { system_preamble: Option<String> },
    /// `<start_of_turn>user\ncontent<end_of_turn>\n`, the assistant named `model`. Gemma has no
    /// system role: a system prompt opens the next user turn, followed by a blank line (as both
    /// Gemma 3's own template and llama.cpp's built-in one place it).
    Gemma,
}

/// A piece of rendered text, what it is, and which message it belongs to.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    kind: TokenKind,
    message: Option<usize>,
}

/// A tokenized chat: ids, a kind per token, and per token the index of its message (in the
/// list passed to `render`, `None` for an injected default system prompt or framing).
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub text: String,
    pub ids: Vec<u32>,
    pub kinds: Vec<TokenKind>,
    pub messages: Vec<Option<usize>>,
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    pub kind: TemplateKind,
}

impl ChatTemplate {
    /// Recognises the template in `tokenizer.chat_template`. A file without one (a base
    /// model) gets its family's: Gemma's for gemma architectures, ChatML otherwise.
    pub fn from_gguf(f: &GgufFile) -> Self {
        match f.get_str("tokenizer.chat_template") {
            Ok(src) => Self::from_source(src),
            Err(_)
                if f.get_str("general.architecture")
                    .is_ok_and(|a| a.starts_with("gemma")) =>
            {
                Self {
                    kind: TemplateKind::Gemma,
                }
            }
            Err(_) => Self::from_source(""),
        }
    }

    pub fn from_source(src: &str) -> Self {
        let kind = if src.contains("<|start_header_id|>") {
            TemplateKind::Llama3 {
                system_preamble: llama31_preamble(src),
            }
        } else if src.contains("<start_of_turn>") {
            TemplateKind::Gemma
        } else {
            TemplateKind::ChatMl {
                default_system: default_system_prompt(src),
                empty_think: src.contains("enable_thinking"),
            }
        };
        Self { kind }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            TemplateKind::ChatMl {
                empty_think: true, ..
            } => "qwen3",
            TemplateKind::ChatMl { .. } => "chatml",
            TemplateKind::Llama3 { .. } => "llama3",
            TemplateKind::Gemma => "gemma",
        }
    }

    /// What a person chatting should know about how this template places the conversation,
    /// where it departs from the plain system / user / assistant turns.
    pub fn note(&self) -> Option<&'static str> {
        match self.kind {
            TemplateKind::ChatMl {
                empty_think: true, ..
            } => Some(
                "Thinking is off: each reply opens with an empty think block, as the model's \
                 template writes it with enable_thinking=false.",
            ),
            TemplateKind::Gemma => Some(
                "Gemma has no system role: a system prompt opens the first user turn, followed \
                 by a blank line.",
            ),
            TemplateKind::Llama3 {
                system_preamble: Some(_),
            } => Some(
                "The model's template opens every chat with a system block naming its knowledge \
                 cutoff and a fixed date (the template's own fallback, so that runs repeat); a \
                 system prompt follows it there.",
            ),
            _ => None,
        }
    }

    /// Token texts that end an assistant turn.
    pub fn end_of_turn(&self) -> &'static str {
        match self.kind {
            TemplateKind::ChatMl { .. } => "<|im_end|>",
            TemplateKind::Llama3 { .. } => "<|eot_id|>",
            TemplateKind::Gemma => "<end_of_turn>",
        }
    }

    fn pieces(&self, messages: &[Message], add_generation_prompt: bool) -> Vec<Piece> {
        let p = |text: String, kind, message| Piece {
            text,
            kind,
            message,
        };
        let content_kind = |r: Role| match r {
            Role::System => TokenKind::System,
            Role::User => TokenKind::User,
            Role::Assistant => TokenKind::AssistantContent,
        };
        let role_name = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut out = Vec::new();
        match &self.kind {
            TemplateKind::ChatMl {
                default_system,
                empty_think,
            } => {
                if let (Some(sys), false) = (
                    default_system,
                    messages.first().is_some_and(|m| m.role == Role::System),
                ) {
                    out.push(p("<|im_start|>system\n".into(), TokenKind::Header, None));
                    out.push(p(sys.clone(), TokenKind::System, None));
                    out.push(p("<|im_end|>\n".into(), TokenKind::EndOfTurn, None));
                }
                // Qwen3 keeps a think block only on replies after the last user turn: the one
                // being written and, when a conversation ends with it, the last one.
                let last_query = messages
                    .iter()
                    .rposition(|m| m.role == Role::User)
                    .unwrap_or(messages.len().saturating_sub(1));
                for (i, m) in messages.iter().enumerate() {
                    out.push(p(
                        format!("<|im_start|>{}\n", role_name(m.role)),
                        TokenKind::Header,
                        Some(i),
                    ));
                    let mut content = m.content.as_str();
                    if *empty_think && m.role == Role::Assistant {
                        let (reasoning, rest) = split_think(content);
                        content = rest;
                        if i > last_query && (i + 1 == messages.len() || !reasoning.is_empty()) {
                            out.push(p("<think>\n".into(), TokenKind::Header, Some(i)));
                            if !reasoning.is_empty() {
                                let kind = TokenKind::AssistantContent;
                                out.push(p(reasoning.into(), kind, Some(i)));
                            }
                            out.push(p("\n</think>\n\n".into(), TokenKind::Header, Some(i)));
                            content = content.trim_start_matches('\n');
                        }
                    }
                    out.push(p(content.into(), content_kind(m.role), Some(i)));
                    out.push(p("<|im_end|>\n".into(), TokenKind::EndOfTurn, Some(i)));
                }
                if add_generation_prompt {
                    out.push(p("<|im_start|>assistant\n".into(), TokenKind::Header, None));
                    if *empty_think {
                        out.push(p("<think>\n\n</think>\n\n".into(), TokenKind::Header, None));
                    }
                }
            }
            TemplateKind::Llama3 { system_preamble } => {
                out.push(p("<|begin_of_text|>".into(), TokenKind::Control, None));
                let mut skip = 0;
                if let Some(preamble) = system_preamble {
                    // The first message, if a system one, goes into the template's own block.
                    let sys = messages.first().filter(|m| m.role == Role::System);
                    let at = sys.map(|_| 0);
                    let header = "<|start_header_id|>system<|end_header_id|>\n\n";
                    out.push(p(header.into(), TokenKind::Header, at));
                    out.push(p(preamble.clone(), TokenKind::Control, at));
                    if let Some(m) = sys {
                        out.push(p(m.content.trim().to_string(), TokenKind::System, at));
                        skip = 1;
                    }
                    out.push(p("<|eot_id|>".into(), TokenKind::EndOfTurn, at));
                }
                for (i, m) in messages.iter().enumerate().skip(skip) {
                    let header = format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n",
                        role_name(m.role)
                    );
                    out.push(p(header, TokenKind::Header, Some(i)));
                    out.push(p(
                        m.content.trim().to_string(),
                        content_kind(m.role),
                        Some(i),
                    ));
                    out.push(p("<|eot_id|>".into(), TokenKind::EndOfTurn, Some(i)));
                }
                if add_generation_prompt {
                    out.push(p(
                        "<|start_header_id|>assistant<|end_header_id|>\n\n".into(),
                        TokenKind::Header,
                        None,
                    ));
                }
            }
            TemplateKind::Gemma => {
                out.push(p("<bos>".into(), TokenKind::Control, None));
                let mut system: Option<(String, usize)> = None;
                for (i, m) in messages.iter().enumerate() {
                    if m.role == Role::System {
                        system = Some((m.content.trim().to_string(), i));
                        continue;
                    }
                    let role = if m.role == Role::Assistant {
                        "model"
                    } else {
                        "user"
                    };
                    out.push(p(
                        format!("<start_of_turn>{role}\n"),
                        TokenKind::Header,
                        Some(i),
                    ));
                    if m.role == Role::User
                        && let Some((sys, at)) = system.take()
                    {
                        out.push(p(format!("{sys}\n\n"), TokenKind::System, Some(at)));
                    }
                    out.push(p(
                        m.content.trim().to_string(),
                        content_kind(m.role),
                        Some(i),
                    ));
                    out.push(p("<end_of_turn>\n".into(), TokenKind::EndOfTurn, Some(i)));
                }
                if add_generation_prompt {
                    out.push(p("<start_of_turn>model\n".into(), TokenKind::Header, None));
                }
            }
        }
        out
    }

    pub fn render_text(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        self.pieces(messages, add_generation_prompt)
            .into_iter()
            .map(|p| p.text)
            .collect()
    }

    /// Renders and tokenizes the whole text at once (as llama.cpp does), then labels each token
    /// by the piece its first byte falls in.
    pub fn tokenize(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Rendered> {
        let pieces = self.pieces(messages, add_generation_prompt);
        let mut bounds = Vec::with_capacity(pieces.len());
        let mut text = String::new();
        for pc in &pieces {
            text.push_str(&pc.text);
            bounds.push(text.len());
        }
        let (ids, offsets) = tok.encode_with_offsets(&text)?;
        let mut kinds = Vec::with_capacity(ids.len());
        let mut msgs = Vec::with_capacity(ids.len());
        for &(start, _) in &offsets {
            let i = bounds
                .partition_point(|&b| b <= start)
                .min(pieces.len().saturating_sub(1));
            kinds.push(pieces.get(i).map_or(TokenKind::Control, |pc| pc.kind));
            msgs.push(pieces.get(i).and_then(|pc| pc.message));
        }
        Ok(Rendered {
            text,
            ids,
            kinds,
            messages: msgs,
        })
    }
}

/// A reply's think block and the rest, as Qwen3's template splits them: the reasoning between
/// the last `<think>` and the first `</think>`, the content after the last `</think>`; no block,
/// no reasoning.
fn split_think(reply: &str) -> (&str, &str) {
    let Some((before, _)) = reply.split_once("</think>") else {
        return ("", reply);
    };
    let content = reply.rsplit("</think>").next().unwrap_or_default();
    let reasoning = before.trim_end_matches('\n');
    let reasoning = reasoning.rsplit("<think>").next().unwrap_or_default();
    (
        reasoning.trim_matches('\n'),
        content.trim_start_matches('\n'),
    )
}

/// Finds the system prompt a ChatML template injects when the conversation has none: the first
/// pure string literal of the form `<|im_start|>system\n...<|im_end|>` in the template source.
fn default_system_prompt(src: &str) -> Option<String> {
    // Templates stored in GGUF files hold real newlines; hand-written ones may hold `\n` escapes.
    let src = src.replace("\\n", "\n");
    let marker = "<|im_start|>system\n";
    src.match_indices(marker).find_map(|(at, _)| {
        let rest = &src[at + marker.len()..];
        let body = &rest[..rest.find("<|im_end|>")?];
        // Quotes or braces mean the text comes from the messages, not a literal.
        (!body.contains(['\'', '"', '{', '}'])).then(|| body.to_string())
    })
}

/// Llama 3.1-3.3's system preamble, read from the template source: its knowledge cutoff and
/// the date its Jinja falls back to when the renderer offers no clock (`date_string`,
/// "26 Jul 2024" in Meta's templates; llama.cpp's renderer prints today's date instead, which
/// would make no two runs alike). `None` for a template without one (Llama 3.0).
fn llama31_preamble(src: &str) -> Option<String> {
    const CUTOFF: &str = "Cutting Knowledge Date: ";
    let after = &src[src.find(CUTOFF)? + CUTOFF.len()..];
    // Inside a Jinja string literal: up to its escaped newline or closing quote.
    let cutoff = &after[..after.find(['\\', '"', '\''])?];
    let date = src
        .find("date_string = \"")
        .map(|i| &src[i + "date_string = \"".len()..])
        .and_then(|rest| rest.find('"').map(|end| &rest[..end]))
        .unwrap_or("26 Jul 2024");
    Some(format!("{CUTOFF}{cutoff}\nToday Date: {date}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Llama 3.1-3.3: the system block comes first whatever the conversation, with the cutoff
    /// and the fallback date read from the template, and a system prompt goes inside it (the
    /// rendering Meta's template gives under jinja2, which defines no clock). The source here
    /// holds only the lines that matter, in the template's own Jinja form.
    #[test]
    fn llama31_opens_with_its_system_block() {
        let src = r#"{{- bos_token }}{%- set date_string = "26 Jul 2024" %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}{{- "Today Date: " + date_string + "\n\n" }}"#;
        let t = ChatTemplate::from_source(src);
        assert_eq!(t.name(), "llama3");
        assert!(t.note().is_some());
        let block = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                     Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
        let user = Message::new(Role::User, " Hi ");
        assert_eq!(
            t.render_text(std::slice::from_ref(&user), true),
            format!(
                "{block}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
                 <|start_header_id|>assistant<|end_header_id|>\n\n"
            )
        );
        let sys = Message::new(Role::System, "Be brief.\n");
        assert_eq!(
            t.render_text(&[sys, user], false),
            format!(
                "{block}Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            )
        );
        // The preamble is framing, not the system prompt: the science must not count it.
        let pieces = t.pieces(&[Message::new(Role::User, "Hi")], false);
        assert_eq!(pieces[2].kind, TokenKind::Control);
        assert!(pieces[2].text.starts_with("Cutting Knowledge Date"));
        // Llama 3.0's template has no such block.
        let plain = ChatTemplate::from_source("{{ '<|start_header_id|>' + role }}");
        assert!(plain.note().is_none());
        assert_eq!(
            plain.render_text(&[Message::new(Role::User, "Hi")], false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        );
    }

    #[test]
    fn finds_smollm2_default_system_prompt() {
        let src = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        let t = ChatTemplate::from_source(src);
        assert_eq!(
            t.kind,
            TemplateKind::ChatMl {
                default_system: Some(
                    "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
                ),
                empty_think: false,
            }
        );
        let text = t.render_text(&[Message::new(Role::User, "Hi")], true);
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = t.render_text(
            &[
                Message::new(Role::System, "Be brief."),
                Message::new(Role::User, "Hi"),
            ],
            false,
        );
        assert_eq!(
            with_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    /// Each expected text is what jinja2 rendered from Qwen3-0.6B's own chat template (as
    /// llama.cpp keeps it under models/templates) with `enable_thinking=false`, for the same
    /// messages; the template source itself is not ours to commit, and only its
    /// `enable_thinking` switch selects this behaviour.
    #[test]
    fn qwen3_opens_each_new_reply_with_an_empty_think_block() {
        let t =
            ChatTemplate::from_source("{%- if enable_thinking is defined %}<think>{%- endif %}");
        assert_eq!((t.name(), t.end_of_turn()), ("qwen3", "<|im_end|>"));
        let (s, u, a) = (Role::System, Role::User, Role::Assistant);
        let m = |v: &[(Role, &str)]| {
            v.iter()
                .map(|&(r, c)| Message::new(r, c))
                .collect::<Vec<_>>()
        };
        let cases = [
            (
                m(&[(u, "Hi")]),
                true,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            ),
            // Earlier replies lose their block; the reply being written gets one.
            (
                m(&[(s, "Be brief."), (u, "Hi"), (a, "Hello."), (u, "And you?")]),
                true,
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nAnd you?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            ),
            // A conversation ending with a reply (how replies are measured) keeps that one's.
            (
                m(&[(s, "Be brief."), (u, "Hi"), (a, "Hello.")]),
                false,
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello.<|im_end|>\n",
            ),
            (
                m(&[(u, "Hi"), (a, "Hello."), (u, "Why?"), (a, "\nBecause.")]),
                false,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nBecause.<|im_end|>\n",
            ),
            // A think block the model wrote anyway is dropped from the history.
            (
                m(&[
                    (u, "Hi"),
                    (a, "<think>\nhm\n</think>\n\nHello."),
                    (u, "Why?"),
                ]),
                true,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            ),
        ];
        for (messages, generation_prompt, want) in cases {
            assert_eq!(
                t.render_text(&messages, generation_prompt),
                want,
                "{messages:?}"
            );
        }
        assert_eq!(split_think("a<think>\nx\n</think>\n\nb"), ("x", "b"));
        assert_eq!(split_think("plain"), ("", "plain"));
    }

    #[test]
    fn gemma_places_the_system_prompt_in_the_first_user_turn() {
        let t = ChatTemplate::from_source("{{ '<start_of_turn>' + role + '\\n' }}");
        assert_eq!(t.kind, TemplateKind::Gemma);
        let text = t.render_text(
            &[
                Message::new(Role::System, " Be brief. "),
                Message::new(Role::User, "Hi "),
                Message::new(Role::Assistant, "Hello."),
                Message::new(Role::User, "Bye"),
            ],
            true,
        );
        assert_eq!(
            text,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
