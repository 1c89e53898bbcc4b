//! Persona data in the reference implementation's formats (docs/method.md, "Persona data"):
//! role files `{"instruction": [{"pos": "..."}, ...]}` (other keys ignored), questions as
//! JSON Lines `{"question": "...", "id": N}`, transcripts
//! `{"conversation": [{"role": "user"|"assistant", "content": "..."}]}`.
//!
//! Parsers take the text and a name to blame (a file path), so the browser can feed them
//! uploaded files; the folder readers are native only. Every error names the file, and the
//! line where the text says one (JSON syntax and type errors, each line of a JSON Lines file)
//! or the JSON path of the offending item otherwise.

use serde::Deserialize;

use super::vectors::DEFAULT_ROLE;
use super::{Error, Result};
use crate::engine::chat::{Message, Role};

/// Category given to roles whose file does not name one.
pub const UNKNOWN_CATEGORY: &str = "other";

/// One role (or the default condition): its name, category and system prompts.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub name: String,
    pub category: String,
    /// System prompts in file order. Only the default may hold `""` (no system turn).
    pub prompts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub id: u32,
    pub text: String,
}

/// A conversation to project: user turns, and possibly assistant turns and one leading
/// system turn.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub name: String,
    pub messages: Vec<Message>,
}

impl Transcript {
    /// True when the transcript holds no assistant turn: the replies must be generated.
    pub fn user_only(&self) -> bool {
        !self.messages.iter().any(|m| m.role == Role::Assistant)
    }
}

fn at(file: &str, e: serde_json::Error) -> Error {
    Error::Invalid(format!(
        "{file}:{}:{}: {}",
        e.line(),
        e.column(),
        strip_position(&e)
    ))
}

/// serde_json appends " at line L column C" to its messages; we print the position first.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[derive(Deserialize)]
struct RawInstruction {
    pos: String,
}

#[derive(Deserialize)]
struct RawRole {
    instruction: Vec<RawInstruction>,
    #[serde(default)]
    category: Option<serde_json::Value>,
}

/// Parses one role file. `name` is the role's name (the file stem); `file` is blamed in
/// errors. `{model_name}` in a prompt is replaced by `model_name`. Only the default role
/// may have an empty prompt, which means "no system prompt".
pub fn parse_role(name: &str, file: &str, text: &str, model_name: &str) -> Result<RoleSpec> {
    let raw: RawRole = serde_json::from_str(text).map_err(|e| at(file, e))?;
    if raw.instruction.is_empty() {
        return Err(Error::Invalid(format!(
            "{file}: \"instruction\" holds no prompt"
        )));
    }
    let is_default = name == DEFAULT_ROLE;
    let mut prompts = Vec::with_capacity(raw.instruction.len());
    for (i, ins) in raw.instruction.into_iter().enumerate() {
        if ins.pos.trim().is_empty() && !is_default {
            return Err(Error::Invalid(format!(
                "{file}: instruction[{i}].pos is empty (only {DEFAULT_ROLE}.json may use the empty prompt, meaning no system prompt)"
            )));
        }
        prompts.push(ins.pos.replace("{model_name}", model_name));
    }
    let category = match raw.category {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        _ => UNKNOWN_CATEGORY.to_string(),
    };
    Ok(RoleSpec {
        name: name.to_string(),
        category,
        prompts,
    })
}

#[derive(Deserialize)]
struct RawQuestion {
    question: String,
    id: u32,
}

/// Parses a JSON Lines question file; blank lines are skipped. Ids must be unique.
pub fn parse_questions(file: &str, text: &str) -> Result<Vec<Question>> {
    let mut out: Vec<Question> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let q: RawQuestion = serde_json::from_str(line).map_err(|e| {
            Error::Invalid(format!("{file}:{n}:{}: {}", e.column(), strip_position(&e)))
        })?;
        if q.question.trim().is_empty() {
            return Err(Error::Invalid(format!("{file}:{n}: the question is empty")));
        }
        if out.iter().any(|o| o.id == q.id) {
            return Err(Error::Invalid(format!(
                "{file}:{n}: question id {} is used twice",
                q.id
            )));
        }
        out.push(Question {
            id: q.id,
            text: q.question,
        });
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("{file}: no questions")));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RawTurn {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct RawTranscript {
    conversation: Vec<RawTurn>,
}

/// Parses a transcript. Roles are `user` and `assistant`, plus an optional `system` turn
/// first; the first other turn must be the user's, and no content may be empty.
pub fn parse_transcript(name: &str, file: &str, text: &str) -> Result<Transcript> {
    let raw: RawTranscript = serde_json::from_str(text).map_err(|e| at(file, e))?;
    let mut messages = Vec::with_capacity(raw.conversation.len());
    for (i, t) in raw.conversation.into_iter().enumerate() {
        let bad = |msg: String| Error::Invalid(format!("{file}: conversation[{i}]: {msg}"));
        let role = match t.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" if i == 0 => Role::System,
            "system" => return Err(bad("a system turn may only come first".into())),
            other => return Err(bad(format!("role \"{other}\" is not user or assistant"))),
        };
        if t.content.trim().is_empty() {
            return Err(bad("empty content".into()));
        }
        let first_turn = messages.iter().all(|m: &Message| m.role == Role::System);
        if first_turn && role == Role::Assistant {
            return Err(bad("the conversation must start with a user turn".into()));
        }
        messages.push(Message::new(role, t.content));
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(Error::Invalid(format!(
            "{file}: the conversation has no user turn"
        )));
    }
    Ok(Transcript {
        name: name.to_string(),
        messages,
    })
}

/// A folder of role files: every `<role>.json` but `default.json`, sorted by name, and the
/// default condition from `default.json`.
#[derive(Clone, Debug)]
pub struct RoleSet {
    pub roles: Vec<RoleSpec>,
    pub default: Option<RoleSpec>,
}

/// File stem if `path` is a `.json` file.
#[cfg(not(target_arch = "wasm32"))]
fn json_stem(path: &std::path::Path) -> Option<String> {
    (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(str::to_string))?
}

/// Largest role, question or transcript file read: the reference data's biggest file is about
/// 30 KB and a whole conversation fits in a model's context, so anything this big is a mistake
/// (a model or a dump picked by accident), refused before it is read into memory.
pub const MAX_DATA_FILE_BYTES: u64 = 16 << 20;

#[cfg(not(target_arch = "wasm32"))]
fn read_text(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let fail = |e: std::io::Error| Error::Invalid(format!("{}: {e}", path.display()));
    let too_big = |n: u64| {
        Error::Invalid(format!(
            "{}: {} MB is too big for a role, question or transcript file (at most {} MB)",
            path.display(),
            n.div_ceil(1 << 20),
            MAX_DATA_FILE_BYTES >> 20
        ))
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let size = file.metadata().map_err(fail)?.len();
    if size > MAX_DATA_FILE_BYTES {
        return Err(too_big(size));
    }
    // The size may lie (a pipe, a growing file): never read past the limit.
    let mut bytes = Vec::new();
    file.take(MAX_DATA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_DATA_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Invalid(format!(
            "{}:{line}: not UTF-8 text (byte {at})",
            path.display()
        ))
    })
}

/// Reads every role file of `dir` (not its subfolders).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_role_dir(dir: &std::path::Path, model_name: &str) -> Result<RoleSet> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
        let path = e.path();
        if path.is_file()
            && let Some(stem) = json_stem(&path)
        {
            paths.push((stem, path));
        }
    }
    paths.sort();
    let mut roles = Vec::new();
    let mut default = None;
    for (stem, path) in paths {
        let role = parse_role(
            &stem,
            &path.display().to_string(),
            &read_text(&path)?,
            model_name,
        )?;
        if stem == DEFAULT_ROLE {
            default = Some(role);
        } else {
            roles.push(role);
        }
    }
    if roles.is_empty() && default.is_none() {
        return Err(Error::Invalid(format!(
            "{}: no role files (<role>.json)",
            dir.display()
        )));
    }
    Ok(RoleSet { roles, default })
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_questions(path: &std::path::Path) -> Result<Vec<Question>> {
    parse_questions(&path.display().to_string(), &read_text(path)?)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_transcript(path: &std::path::Path) -> Result<Transcript> {
    let name = json_stem(path).unwrap_or_else(|| path.display().to_string());
    parse_transcript(&name, &path.display().to_string(), &read_text(path)?)
}

/// The model's name for `{model_name}` in role prompts, from its file name (the CLI's and the
/// page's): the name without its extension and quantization suffix ("SmolLM2-135M-Instruct.Q4_1.gguf" ->
/// "SmolLM2-135M-Instruct"). `None` when nothing is left.
pub fn short_model_name(file_name: &str) -> Option<String> {
    let stem = file_name.split(['?', '#']).next().unwrap_or_default();
    let stem = stem.strip_suffix(".gguf").unwrap_or(stem);
    let base = match stem.rsplit_once('.') {
        Some((base, q))
            if q.to_ascii_uppercase().starts_with(['Q', 'F', 'I', 'B'])
                && q.chars().any(|c| c.is_ascii_digit()) =>
        {
            base
        }
        _ => stem,
    };
    (!base.is_empty()).then(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_files_in_the_reference_format() {
        let r = parse_role(
            "ghost",
            "ghost.json",
            r#"{"instruction": [{"pos": "You are a ghost.", "neg": "x"}], "questions": []}"#,
            "M",
        )
        .unwrap();
        assert_eq!(r.prompts, vec!["You are a ghost."]);
        assert_eq!(r.category, UNKNOWN_CATEGORY);
        let r = parse_role(
            "x",
            "x.json",
            r#"{"category": "human", "instruction": [{"pos": "A"}, {"pos": "B"}]}"#,
            "M",
        )
        .unwrap();
        assert_eq!((r.category.as_str(), r.prompts.len()), ("human", 2));
        let d = parse_role(
            "default",
            "default.json",
            r#"{"instruction": [{"pos": ""}, {"pos": "You are {model_name}."}]}"#,
            "SmolLM",
        )
        .unwrap();
        assert_eq!(d.prompts, vec!["", "You are SmolLM."]);
    }

    #[test]
    fn role_errors_name_file_and_line() {
        let e = parse_role(
            "x",
            "roles/x.json",
            "{\"instruction\": [\n {\"pos\": 5}\n]}",
            "M",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("roles/x.json:2:"), "{e}");
        let e = parse_role("x", "roles/x.json", "{\"role\": \"x\"}", "M")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("roles/x.json:1:") && e.contains("instruction"),
            "{e}"
        );
        let e = parse_role(
            "x",
            "roles/x.json",
            r#"{"instruction": [{"pos": "a"}, {"pos": " "}]}"#,
            "M",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("roles/x.json: instruction[1].pos is empty"),
            "{e}"
        );
        assert!(parse_role("x", "x.json", r#"{"instruction": []}"#, "M").is_err());
        assert!(parse_role("x", "x.json", "{", "M").is_err());
    }

    #[test]
    fn questions_jsonl() {
        let q = parse_questions("q.jsonl", "{\"question\": \"Why?\", \"id\": 3}\n\n{\"question\": \"How?\", \"id\": 0, \"x\": 1}\n").unwrap();
        assert_eq!(
            q,
            vec![
                Question {
                    id: 3,
                    text: "Why?".into()
                },
                Question {
                    id: 0,
                    text: "How?".into()
                }
            ]
        );
        let e = parse_questions(
            "q.jsonl",
            "{\"question\": \"a\", \"id\": 1}\n{\"question\": \"b\", \"id\": 1}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("q.jsonl:2: question id 1"), "{e}");
        let e = parse_questions("q.jsonl", "{\"question\": \"a\", \"id\": 1}\n\n{\"id\": 2}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("q.jsonl:3:") && e.contains("question"), "{e}");
        let e = parse_questions("q.jsonl", "{\"question\": \"a\", \"id\": -1}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("q.jsonl:1:"), "{e}");
        assert!(parse_questions("q.jsonl", "\n\n").is_err());
        assert!(parse_questions("q.jsonl", "{\"question\": \"  \", \"id\": 1}").is_err());
    }

    #[test]
    fn transcripts() {
        let t = parse_transcript("t", "t.json", r#"{"title": "x", "conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]}"#).unwrap();
        assert_eq!(t.messages.len(), 3);
        assert!(!t.user_only());
        let t = parse_transcript("t", "t.json", r#"{"conversation": [{"role": "system", "content": "Be a pirate."}, {"role": "user", "content": "Hi"}]}"#).unwrap();
        assert!(t.user_only());
        let bad = [
            (
                r#"{"conversation": [{"role": "assistant", "content": "Hi"}]}"#,
                "conversation[0]",
            ),
            (
                r#"{"conversation": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]}"#,
                "conversation[1]",
            ),
            (
                r#"{"conversation": [{"role": "user", "content": ""}]}"#,
                "empty",
            ),
            (
                r#"{"conversation": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}"#,
                "first",
            ),
            (r#"{"conversation": []}"#, "no user turn"),
            ("{\"conversation\": [\n{\"role\": \"user\"}]}", "t.json:2:"),
        ];
        for (text, want) in bad {
            let e = parse_transcript("t", "t.json", text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn our_data_folder_reads() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let set = read_role_dir(&root.join("roles"), "SmolLM").unwrap();
        assert!(set.roles.len() >= 60, "{}", set.roles.len());
        assert!(
            set.roles
                .iter()
                .all(|r| r.prompts.len() == 5 && r.category != UNKNOWN_CATEGORY)
        );
        let d = set.default.unwrap();
        assert_eq!(d.prompts[0], "");
        assert!(d.prompts.contains(&"You are SmolLM.".to_string()));
        assert!(read_questions(&root.join("questions.jsonl")).unwrap().len() >= 60);
        for kind in ["coding", "writing", "therapy", "philosophy"] {
            let t = read_transcript(&root.join(format!("transcripts/{kind}.json"))).unwrap();
            assert!(t.user_only() && t.messages.len() >= 10, "{kind}");
        }
    }

    #[test]
    fn model_names_drop_extension_and_quantization_like_the_cli() {
        let n = |f| short_model_name(f);
        assert_eq!(
            n("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("SmolLM2-135M-Instruct")
        );
        assert_eq!(
            n("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").as_deref(),
            Some("qwen2.5-coder-0.5b-instruct-q4_k_m")
        );
        assert_eq!(n("model.F16.gguf?download=1").as_deref(), Some("model"));
        assert_eq!(n("plain").as_deref(), Some("plain"));
        assert_eq!(n(".gguf"), None);
    }
}
