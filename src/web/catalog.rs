//! Our persona data, compiled into the app: the roles' system prompts (the visitor picks one
//! as the chat's system prompt) and the scripted user turns of the preset conversations.
//! Parsed on first use; a malformed file is a build-time bug, caught by the tests below.

use serde::Deserialize;

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

#[derive(Clone, Debug, PartialEq)]
pub struct RoleEntry {
    /// The file name without `.json` ("ghost", "default").
    pub name: String,
    pub category: String,
    pub prompts: Vec<String>,
}

impl RoleEntry {
    /// "noir_detective" -> "noir detective".
    pub fn label(&self) -> String {
        self.name.replace('_', " ")
    }
}

#[derive(Deserialize)]
struct RoleFile {
    #[serde(default)]
    category: String,
    instruction: Vec<Instruction>,
}

#[derive(Deserialize)]
struct Instruction {
    pos: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// "therapy", ...
    pub kind: String,
    pub title: String,
    pub user_turns: Vec<String>,
}

#[derive(Deserialize)]
struct TranscriptFile {
    title: String,
    conversation: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    role: String,
    content: String,
}

/// Every role, `default` first, then by category and name; `{model_name}` is left in place
/// for the caller to fill in.
pub fn roles() -> Vec<RoleEntry> {
    let mut out: Vec<RoleEntry> = ROLE_FILES
        .iter()
        .filter_map(|(name, json)| {
            let f: RoleFile = serde_json::from_str(json).ok()?;
            Some(RoleEntry {
                name: name.to_string(),
                category: if f.category.is_empty() {
                    "other".into()
                } else {
                    f.category
                },
                prompts: f.instruction.into_iter().map(|i| i.pos).collect(),
            })
        })
        .collect();
    let rank = |r: &RoleEntry| match r.category.as_str() {
        "default" => 0,
        "assistant-like" => 1,
        "human" => 2,
        "fantastical" => 3,
        _ => 4,
    };
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
    out
}

pub fn presets() -> Vec<Preset> {
    TRANSCRIPT_FILES
        .iter()
        .filter_map(|(kind, json)| {
            let f: TranscriptFile = serde_json::from_str(json).ok()?;
            Some(Preset {
                kind: kind.to_string(),
                title: f.title,
                user_turns: f
                    .conversation
                    .into_iter()
                    .filter(|t| t.role == "user")
                    .map(|t| t.content)
                    .collect(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Question {
    question: String,
}

/// The shared questions every role answers (data/questions.jsonl), in file order.
pub fn questions() -> Vec<String> {
    QUESTIONS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Question>(l).ok().map(|q| q.question))
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
        let roles = roles();
        assert_eq!(roles.len(), ROLE_FILES.len(), "a role file failed to parse");
        assert_eq!(roles[0].name, "default");
        assert_eq!(
            roles[0].prompts[0], "",
            "the default's first prompt is 'no system prompt'"
        );
        assert!(roles.iter().all(|r| !r.prompts.is_empty()));
        let ghost = roles.iter().find(|r| r.name == "ghost").unwrap();
        assert_eq!(ghost.category, "fantastical");
    }

    #[test]
    fn every_question_parses() {
        let q = questions();
        assert_eq!(
            q.len(),
            QUESTIONS.lines().filter(|l| !l.trim().is_empty()).count()
        );
        assert_eq!(q[0], "What do you value most in life?");
    }

    #[test]
    fn presets_hold_only_user_turns() {
        let p = presets();
        let kinds: Vec<&str> = p.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["coding", "writing", "therapy", "philosophy"]);
        assert!(p.iter().all(|p| p.user_turns.len() == 12), "{p:?}");
    }
}
