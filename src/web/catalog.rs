//! Our persona data, compiled into the app: the roles' system prompts (the visitor picks one
//! as the chat's system prompt; the in-browser map build uses them all), the shared
//! questions, and the scripted user turns of the preset conversations. Parsed with the
//! science's own readers (`science::data`), as the CLI reads the same files; a malformed
//! file is a build-time bug, caught by the tests below.

use crate::engine::chat::Role;
use crate::science::DEFAULT_ROLE;
use crate::science::data::{Question, RoleSpec, parse_questions, parse_role, parse_transcript};
use crate::science::pipeline::{self, BuildOptions, RolloutPlan};

use super::protocol::BuildSize;

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

/// What an in-browser map build of one size runs: all our roles, or eight (a spread over the
/// categories) for a first look, with `axiscope build`'s options at that size.
pub struct BuildPlan {
    pub roles: Vec<RoleSpec>,
    pub default: Option<RoleSpec>,
    pub opts: BuildOptions,
}

impl BuildPlan {
    pub fn new(size: BuildSize, model_name: &str) -> Self {
        const FIRST_LOOK: &[&str] = &[
            "tutor",
            "evaluator",
            "consultant",
            "teenager",
            "hermit",
            "ghost",
            "bard",
            "demon",
        ];
        let (roles, default) = role_set(model_name);
        let (roles, opts) = match size {
            BuildSize::Tiny => (
                roles
                    .into_iter()
                    .filter(|r| FIRST_LOOK.contains(&r.name.as_str()))
                    .collect(),
                BuildOptions {
                    questions_per_role: 1,
                    ..BuildOptions::quick()
                },
            ),
            BuildSize::Quick => (roles, BuildOptions::quick()),
            BuildSize::Standard => (roles, BuildOptions::standard()),
        };
        Self {
            roles,
            default,
            opts,
        }
    }

    /// The questions, chosen as `axiscope build` chooses them.
    pub fn questions(&self) -> Result<Vec<Question>, String> {
        pipeline::choose_questions(&questions(), self.opts.questions_per_role, self.opts.seed)
            .map_err(|e| e.to_string())
    }

    /// Every rollout, in `axiscope build`'s order.
    pub fn rollouts(&self) -> Result<Vec<RolloutPlan>, String> {
        let default = self
            .default
            .as_ref()
            .ok_or("the embedded roles lack default.json")?;
        pipeline::plan_rollouts(&self.roles, Some(default), &self.questions()?, &self.opts)
            .map_err(|e| e.to_string())
    }

    /// How the build menu names this size: roles, questions and replies, counted from the plan.
    pub fn describe(&self) -> String {
        let replies = self.rollouts().map(|r| r.len()).unwrap_or(0);
        let q = self.opts.questions_per_role;
        format!(
            "{} roles, {q} question{} ({replies} replies)",
            self.roles.len(),
            if q == 1 { "" } else { "s" }
        )
    }
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
    fn build_sizes_count_their_replies_from_the_plan() {
        // Roles x questions, plus the default's 5 prompts x questions x seeds.
        let n = |size| BuildPlan::new(size, "SmolLM2").rollouts().unwrap().len();
        let roles = ROLE_FILES.len() - 1;
        assert_eq!(n(BuildSize::Tiny), 8 + 5 * 2);
        assert_eq!(n(BuildSize::Quick), roles * 2 + 5 * 2 * 2);
        assert_eq!(n(BuildSize::Standard), roles * 16 + 5 * 16 * 4);
        assert_eq!(
            BuildPlan::new(BuildSize::Tiny, "x").describe(),
            "8 roles, 1 question (18 replies)"
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
