//! Our persona data, compiled into the app: the roles' system prompts (the visitor picks one
//! as the chat's system prompt; the in-browser map build uses them all), the shared
//! questions, and the scripted user turns of the preset conversations. Parsed with the
//! science's own readers (`science::data`), as the CLI reads the same files; a malformed
//! file is a build-time bug, caught by the tests below.

use crate::engine::chat::Role;
use crate::science::DEFAULT_ROLE;
use crate::science::data::{Question, RoleSpec, parse_questions, parse_role, parse_transcript};

/// Embeds `data/roles/<name>.json` for every name; a test checks the list against the folder.
macro_rules! role_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../data/roles/", $name, ".json")))),*]
    };
}

const ROLE_FILES: &[(&str, &str)] = role_files![
    "accountant",
    "alien_ambassador",
    "analyst",
    "ancient_tree",
    "archivist",
    "aristocrat",
    "bard",
    "bohemian",
    "career_counselor",
    "child",
    "con_artist",
    "conspiracy_theorist",
    "consultant",
    "cowboy",
    "customer_support_agent",
    "default",
    "demon",
    "doctor",
    "dragon",
    "drill_sergeant",
    "editor",
    "eldritch_horror",
    "evaluator",
    "fact_checker",
    "fairy",
    "farmer",
    "gambler",
    "generalist",
    "ghost",
    "golem",
    "gossip",
    "grandmother",
    "hermit",
    "influencer",
    "lawyer",
    "leviathan",
    "librarian",
    "mediator",
    "mermaid",
    "monk",
    "nihilist",
    "noir_detective",
    "oracle",
    "phoenix",
    "pirate",
    "poet",
    "project_manager",
    "punk_rocker",
    "researcher",
    "reviewer",
    "robot_uprising_leader",
    "software_engineer",
    "sphinx",
    "stand_up_comedian",
    "statistician",
    "storm_spirit",
    "surfer",
    "swarm",
    "teacher",
    "teenager",
    "translator",
    "trickster_god",
    "tutor",
    "vampire",
    "werewolf",
    "witch",
    "wizard",
];

macro_rules! transcript_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../data/transcripts/", $name, ".json")))),*]
    };
}

const TRANSCRIPT_FILES: &[(&str, &str)] =
    transcript_files!["coding", "writing", "therapy", "philosophy"];

const QUESTIONS: &str = include_str!("../../data/questions.jsonl");

/// "noir_detective" -> "noir detective".
pub fn label(role_name: &str) -> String {
    role_name.replace('_', " ")
}

/// Every role, `default` first, then by category and name. `{model_name}` in a prompt is
/// replaced by `model_name` (pass `"{model_name}"` to keep it for later).
pub fn roles(model_name: &str) -> Vec<RoleSpec> {
    let mut out: Vec<RoleSpec> = ROLE_FILES
        .iter()
        .filter_map(|(name, json)| {
            parse_role(name, &format!("data/roles/{name}.json"), json, model_name).ok()
        })
        .collect();
    let rank = |r: &RoleSpec| match r.category.as_str() {
        "default" => 0,
        "assistant-like" => 1,
        "human" => 2,
        "fantastical" => 3,
        _ => 4,
    };
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The roles and the default condition apart, as the map build wants them.
pub fn role_set(model_name: &str) -> (Vec<RoleSpec>, Option<RoleSpec>) {
    let (default, roles): (Vec<RoleSpec>, Vec<RoleSpec>) = roles(model_name)
        .into_iter()
        .partition(|r| r.name == DEFAULT_ROLE);
    (roles, default.into_iter().next())
}

/// The shared questions every role answers (data/questions.jsonl), in file order.
pub fn questions() -> Vec<Question> {
    parse_questions("data/questions.jsonl", QUESTIONS).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// "therapy", ...
    pub kind: String,
    pub title: String,
    pub user_turns: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Title {
    #[serde(default)]
    title: String,
}

pub fn presets() -> Vec<Preset> {
    TRANSCRIPT_FILES
        .iter()
        .filter_map(|(kind, json)| {
            let t = parse_transcript(kind, &format!("data/transcripts/{kind}.json"), json).ok()?;
            let title = serde_json::from_str::<Title>(json)
                .map(|t| t.title)
                .unwrap_or_default();
            Some(Preset {
                kind: kind.to_string(),
                title,
                user_turns: t
                    .messages
                    .into_iter()
                    .filter(|m| m.role == Role::User)
                    .map(|m| m.content)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_file_is_embedded_and_parses() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/roles"))
                .unwrap()
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(String::from)
                })
                .collect();
        on_disk.sort();
        let embedded: Vec<&str> = ROLE_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            embedded, on_disk,
            "src/web/catalog.rs must list exactly data/roles/*.json"
        );
        let roles = roles("SmolLM2");
        assert_eq!(roles.len(), ROLE_FILES.len(), "a role file failed to parse");
        assert_eq!(roles[0].name, "default");
        assert_eq!(
            roles[0].prompts[0], "",
            "the default's first prompt is 'no system prompt'"
        );
        assert!(roles[0].prompts.contains(&"You are SmolLM2.".to_string()));
        let ghost = roles.iter().find(|r| r.name == "ghost").unwrap();
        assert_eq!(ghost.category, "fantastical");
        let (rs, default) = role_set("x");
        assert_eq!(
            (rs.len(), default.map(|d| d.name)),
            (ROLE_FILES.len() - 1, Some("default".into()))
        );
    }

    #[test]
    fn every_question_parses() {
        let q = questions();
        assert_eq!(
            q.len(),
            QUESTIONS.lines().filter(|l| !l.trim().is_empty()).count()
        );
        assert_eq!(
            (q[0].id, q[0].text.as_str()),
            (0, "What do you value most in life?")
        );
    }

    #[test]
    fn presets_hold_only_user_turns() {
        let p = presets();
        let kinds: Vec<&str> = p.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["coding", "writing", "therapy", "philosophy"]);
        assert!(
            p.iter()
                .all(|p| p.user_turns.len() == 12 && !p.title.is_empty()),
            "{p:?}"
        );
    }
}
