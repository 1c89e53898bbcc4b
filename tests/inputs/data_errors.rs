//! Role, question and transcript files through the CLI: malformed JSON, missing fields, empty
//! roles, wrong types, huge files. Each run must exit non-zero with one line that names the
//! file (and the line where the text has one), never a panic. The tiny model keeps it fast.
//! Also: a 1,000-rollout build does not grow the process beyond what it stores.

use crate::common;
use common::cli;
use common::tiny::tiny_model;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A scratch folder for this test binary, with the tiny model in it.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("axiscope-data-errors-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tiny.gguf"), tiny_model()).unwrap();
        d
    })
}

fn model() -> String {
    scratch().join("tiny.gguf").display().to_string()
}

fn write(rel: &str, text: impl AsRef<[u8]>) -> String {
    let p = scratch().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A role folder: `default.json` and the given `(name, file text)` roles.
fn roles(dir: &str, files: &[(&str, &str)]) -> String {
    write(
        &format!("{dir}/default.json"),
        r#"{"instruction": [{"pos": "Be kind."}]}"#,
    );
    for (name, text) in files {
        write(&format!("{dir}/{name}.json"), text);
    }
    scratch().join(dir).display().to_string()
}

fn questions(name: &str, n: usize) -> String {
    let text: String = (0..n)
        .map(|i| format!("{{\"question\": \"Q{i}?\", \"id\": {i}}}\n"))
        .collect();
    write(name, text)
}

const GOOD_ROLE: &str = r#"{"instruction": [{"pos": "Be a cat."}]}"#;
const DOG_ROLE: &str = r#"{"instruction": [{"pos": "Be a dog."}]}"#;

/// The run fails with exactly one line, holding every one of `expect`.
fn fails_with(args: &[&str], expect: &[&str]) {
    let (ok, err) = cli(args);
    assert!(!ok, "{args:?} should fail: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        err.trim()
            .lines()
            .all(|l| l == last || l.starts_with("building:")),
        "{args:?}: one error line expected: {err}"
    );
    for e in expect {
        assert!(last.contains(e), "{args:?}: expected '{e}' in: {last}");
    }
}

/// A tiny-model build of `roles` and `questions` under `preset` (`--quick`, or none for the
/// default plan), 2-token replies; the output path comes last, for a caller to replace.
fn build(roles: &str, questions: &str, preset: &[&str]) -> Vec<String> {
    let out = scratch().join("never.axb").display().to_string();
    let head = [
        "build",
        "--model",
        &model(),
        "--roles",
        roles,
        "--questions",
        questions,
    ];
    let tail = ["--max-tokens", "2", "--out", &out];
    head.iter()
        .chain(preset)
        .chain(&tail)
        .map(|a| a.to_string())
        .collect()
}

fn fails_building(roles: &str, questions: &str, expect: &[&str]) {
    let args = build(roles, questions, &["--quick"]);
    fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), expect);
}

#[test]
fn bad_role_files() {
    let q = questions("q.jsonl", 3);
    let cases: &[(&str, &str, &[&str])] = &[
        // Malformed JSON: file, line and column of the fault.
        (
            "syntax",
            "{\"instruction\": [\n  {\"pos\": \"a\"},\n  {\"pos\": }\n]}",
            &["bad.json:3:", "expected value"],
        ),
        (
            "missing",
            "{\"instructions\": [{\"pos\": \"a\"}]}",
            &["bad.json:1:", "missing field `instruction`"],
        ),
        (
            "wrongtype",
            "{\"instruction\": [{\"pos\": 3}]}",
            &["bad.json:1:", "expected a string"],
        ),
        (
            "noprompt",
            "{\"instruction\": []}",
            &["bad.json", "holds no prompt"],
        ),
        (
            "emptypos",
            "{\"instruction\": [{\"pos\": \"  \"}]}",
            &["bad.json", "instruction[0].pos is empty"],
        ),
        ("emptyfile", "", &["bad.json:1:", "EOF"]),
        (
            "notjson",
            "pos: a pirate\n",
            &["bad.json:1:", "expected value"],
        ),
    ];
    for (dir, text, expect) in cases {
        let r = roles(
            &format!("roles-{dir}"),
            &[("cat", GOOD_ROLE), ("bad", text)],
        );
        fails_building(&r, &q, expect);
    }
    // Not UTF-8: the line of the first bad byte.
    let r = roles(
        "roles-latin1",
        &[("bad", "{\"instruction\":\n [{\"pos\": \"caf\u{e9}\"}]}")],
    );
    write(
        "roles-latin1/bad.json",
        b"{\"instruction\":\n [{\"pos\": \"caf\xe9\"}]}",
    );
    fails_building(&r, &q, &["bad.json:2: not UTF-8"]);
    // A folder without roles, without default.json, a missing folder.
    let empty = scratch().join("roles-empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_building(
        &empty.display().to_string(),
        &q,
        &["roles-empty", "no role files"],
    );
    write("roles-nodefault/cat.json", GOOD_ROLE);
    let nd = scratch().join("roles-nodefault").display().to_string();
    fails_building(&nd, &q, &["roles-nodefault", "no default.json"]);
    let only_default = roles("roles-onlydefault", &[]);
    fails_building(
        &only_default,
        &q,
        &["roles-onlydefault", "no role files besides default.json"],
    );
    fails_building(
        "/nonexistent/roles",
        &q,
        &["/nonexistent/roles", "No such file"],
    );
}

/// The default plan asks for 80 questions; a smaller file is taken whole, while an explicit
/// `--questions-per-role` beyond the file is refused, naming both counts.
#[test]
fn a_preset_takes_a_smaller_question_file_whole() {
    let r = roles("roles-fewq", &[("cat", GOOD_ROLE), ("dog", DOG_ROLE)]);
    let q = questions("three.jsonl", 3);
    let mut args = build(&r, &q, &[]);
    *args.last_mut().unwrap() = scratch().join("fewq.axb").display().to_string();
    let (ok, err) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(err.contains(", 3 questions each,"), "{err}");
    let explicit = build(&r, &q, &["--questions-per-role", "4"]);
    fails_with(
        &explicit.iter().map(String::as_str).collect::<Vec<_>>(),
        &["4 questions per role asked, the file has 3"],
    );
}

#[test]
fn bad_question_files() {
    let r = roles("roles-ok", &[("cat", GOOD_ROLE)]);
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "syntax.jsonl",
            "{\"question\": \"a?\", \"id\": 0}\n{\"question\": \"b?\" \"id\": 1}\n",
            &["syntax.jsonl:2:", "expected"],
        ),
        (
            "noid.jsonl",
            "{\"question\": \"a?\", \"id\": 0}\n\n{\"question\": \"b?\"}\n",
            &["noid.jsonl:3:", "missing field `id`"],
        ),
        (
            "negid.jsonl",
            "{\"question\": \"a?\", \"id\": -1}\n",
            &["negid.jsonl:1:", "invalid value"],
        ),
        (
            "dup.jsonl",
            "{\"question\": \"a?\", \"id\": 0}\n{\"question\": \"b?\", \"id\": 0}\n",
            &["dup.jsonl:2:", "used twice"],
        ),
        (
            "empty.jsonl",
            "{\"question\": \" \", \"id\": 0}\n",
            &["empty.jsonl:1:", "the question is empty"],
        ),
        ("blank.jsonl", "\n\n", &["blank.jsonl", "no questions"]),
        (
            "array.json",
            "[{\"question\": \"a?\", \"id\": 0}]\n",
            &["array.json:1:", "invalid type"],
        ),
    ];
    for (name, text, expect) in cases {
        let q = write(name, text);
        fails_building(&r, &q, expect);
    }
    fails_building(
        &r,
        "/nonexistent/q.jsonl",
        &["/nonexistent/q.jsonl", "No such file"],
    );
}

/// A huge file is refused from its size, before it is read: a sparse 5 GB file costs no disk
/// and would take seconds (and 5 GB of memory) to read.
#[test]
fn huge_data_files_are_refused_before_reading() {
    let r = roles("roles-ok2", &[("cat", GOOD_ROLE)]);
    let huge = scratch().join("huge.jsonl");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(5_000_000_000)
        .unwrap();
    let t0 = std::time::Instant::now();
    fails_building(
        &r,
        &huge.display().to_string(),
        &["huge.jsonl", "4769 MB is too big", "at most 16 MB"],
    );
    assert!(
        t0.elapsed().as_secs() < 20,
        "{:?}: was the file read?",
        t0.elapsed()
    );
    let big_role = scratch().join("roles-huge");
    roles("roles-huge", &[("cat", GOOD_ROLE)]);
    std::fs::File::create(big_role.join("giant.json"))
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    fails_building(
        &big_role.display().to_string(),
        &questions("q2.jsonl", 2),
        &["giant.json", "17 MB is too big"],
    );
    // Just under the limit is read (and then fails as JSON, at its first byte).
    let mut near = vec![b' '; (16 << 20) - 1];
    near.push(b'x');
    let q = write("near.jsonl", near);
    fails_building(&r, &q, &["near.jsonl:1:", "expected value"]);
}

/// A bundle for the tiny model, built once (the project tests need one).
fn tiny_bundle() -> &'static str {
    static B: OnceLock<String> = OnceLock::new();
    B.get_or_init(|| {
        let r = roles("roles-bundle", &[("cat", GOOD_ROLE), ("dog", DOG_ROLE)]);
        let q = questions("qb.jsonl", 2);
        let out = scratch().join("tiny.axb").display().to_string();
        let mut args = build(&r, &q, &["--quick"]);
        *args.last_mut().unwrap() = out.clone();
        let (ok, err) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "tiny build failed: {err}");
        out
    })
}

#[test]
fn bad_transcripts() {
    let b = tiny_bundle();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "syntax.json",
            "{\"conversation\": [\n {\"role\": \"user\", \"content\": \"hi\"},,\n]}",
            &["syntax.json:2:", "expected value"],
        ),
        (
            "nofield.json",
            "{\"messages\": []}",
            &["nofield.json:1:", "missing field `conversation`"],
        ),
        (
            "nocontent.json",
            "{\"conversation\": [{\"role\": \"user\"}]}",
            &["nocontent.json:1:", "missing field `content`"],
        ),
        (
            "badrole.json",
            "{\"conversation\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
            &["badrole.json", "conversation[0]", "\"robot\""],
        ),
        (
            "emptyturn.json",
            "{\"conversation\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"\"}]}",
            &["emptyturn.json", "conversation[1]: empty content"],
        ),
        (
            "assistantfirst.json",
            "{\"conversation\": [{\"role\": \"assistant\", \"content\": \"hi\"}]}",
            &["assistantfirst.json", "must start with a user turn"],
        ),
        (
            "nouser.json",
            "{\"conversation\": []}",
            &["nouser.json", "no user turn"],
        ),
        (
            "latesystem.json",
            "{\"conversation\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"b\"}]}",
            &["latesystem.json", "may only come first"],
        ),
    ];
    for (name, text, expect) in cases {
        let t = write(name, text);
        fails_with(
            &[
                "project",
                "--model",
                &model(),
                "--bundle",
                b,
                "--transcript",
                &t,
            ],
            expect,
        );
    }
    // Placing new roles reads role files the same way.
    let r = roles(
        "roles-place",
        &[("bad", "{\"instruction\": [{\"pos\": 1}]}")],
    );
    let q = questions("qp.jsonl", 2);
    fails_with(
        &[
            "project",
            "--model",
            &model(),
            "--bundle",
            b,
            "--roles",
            &r,
            "--questions",
            &q,
        ],
        &["bad.json:1:", "expected a string"],
    );
    // And a good transcript projects: the failures above are the files' fault.
    let t = write(
        "good.json",
        "{\"conversation\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
    );
    let (ok, err) = cli(&[
        "project",
        "--model",
        &model(),
        "--bundle",
        b,
        "--transcript",
        &t,
    ]);
    assert!(ok, "{err}");
}

/// Peak resident memory (VmHWM) of `axiscope args`, polled from /proc while it runs.
#[cfg(target_os = "linux")]
fn peak_rss_kb(args: &[&str]) -> u64 {
    // The build's progress goes to a file: a pipe nobody reads while it runs would fill up
    // and stall it.
    let log = scratch().join(format!("rss-{}.log", args.len()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_axiscope"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            peak = peak.max(kb);
        }
        if let Some(st) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(st.success(), "{args:?}: {err}");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// 100 and 1,000 rollouts (20 conditions x 5 or 50 questions, 4-token replies): the peak
/// memory may grow by what the build keeps per rollout (its plan, 2 layers x 64 mean
/// activations, the reply, the bundle's records: measured 1.4-1.6 KB each), not by what a
/// generation uses and should free: a KV cache (2 x 2 layers x 64 positions x 32 floats = 32 KB)
/// or the logits of its 4 tokens (4 KB). 2 MB over 900 rollouts allows 2.3 KB each.
#[cfg(target_os = "linux")]
#[test]
fn a_thousand_rollouts_do_not_grow_memory() {
    let names: Vec<(String, String)> = (0..19)
        .map(|i| {
            (
                format!("r{i:02}"),
                format!("{{\"instruction\": [{{\"pos\": \"Be r{i}.\"}}]}}"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let r = roles("roles-soak", &files);
    let q = questions("qsoak.jsonl", 50);
    let run = |per_role: &str| {
        let out = scratch()
            .join(format!("soak-{per_role}.axb"))
            .display()
            .to_string();
        peak_rss_kb(&[
            "build",
            "--model",
            &model(),
            "--roles",
            &r,
            "--questions",
            &q,
            "--prompts-per-role",
            "1",
            "--questions-per-role",
            per_role,
            // One reply per default condition, so the plan stays 100 and 1,000 rollouts.
            "--default-seeds",
            "1",
            "--max-tokens",
            "4",
            "--out",
            &out,
        ])
    };
    let (small, large) = (run("5"), run("50"));
    eprintln!(
        "tiny-model build peak RSS: 100 rollouts {small} kB, 1000 rollouts {large} kB, growth {} kB",
        large as i64 - small as i64
    );
    assert!(small > 1000, "RSS not measured: {small} kB");
    assert!(
        large <= small + 2048,
        "peak RSS grew {small} -> {large} kB over 900 more rollouts"
    );
}
