//! The house's rules over `src/`, read from its paths (`use crate::...`, `super::...` in code;
//! comments and the trailing `#[cfg(test)]` module of a file are skipped):
//! - the rooms' edges go one way: the engine imports neither the science nor the web, the
//!   science not the web, and in the web the page and the worker never import each other
//!   (both may import the protocol and the shared data);
//! - no import cycle between files, the CLI's included (a `mod.rs` only re-exports and a
//!   `main.rs` holds the command table, so paths that end at one are not followed);
//! - no file over 600 lines without a reason stated at its top ("Over 600 lines: ...");
//! - nothing in `src/` includes a file from `scripts/`, and no Python lives there.
//!
//! A failure names the files and the path that breaks the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The page's files and folders under `src/web/` (the leptos app and the bench page).
const PAGE: &[&str] = &["web/page/"];
/// The model worker's (the request loop, the host, downloads, the row helper, the bench run).
const WORKER: &[&str] = &["web/worker/"];

struct File {
    /// Relative to `src/`, with `/`.
    rel: String,
    /// Its module path: `engine/model.rs` -> ["engine", "model"].
    module: Vec<String>,
    /// The code without comments and tests.
    code: String,
    lines: usize,
    head: String,
}

/// Every file under `src/`, depth first.
fn walk() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(SRC)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn files() -> Vec<File> {
    let mut out: Vec<File> = walk()
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| read(p))
        .collect();
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn read(p: &Path) -> File {
    let text = std::fs::read_to_string(p).unwrap();
    let rel = p
        .strip_prefix(SRC)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/");
    let mut module: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        module.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        module.pop();
    }
    let body = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let code: String = body
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    File {
        rel,
        module,
        code,
        lines: text.lines().count(),
        head: text.lines().take(12).collect::<Vec<_>>().join("\n"),
    }
}

/// Every path that starts with `crate::` or `super::` (groups `{a, b::c}` expanded one level),
/// made absolute from the crate root.
fn paths(f: &File) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code = f.code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let start = if rest.starts_with(b"crate::") {
            // A binary's `crate` is its own folder (`bin/axiscope/main.rs`).
            let root = match f.module.as_slice() {
                [bin, name, ..] if bin == "bin" => vec![bin.clone(), name.clone()],
                _ => Vec::new(),
            };
            Some((root, 7))
        } else if rest.starts_with(b"super::") {
            // `super` of a file's module is its parent (a file's inline modules are its tests).
            let mut base = f.module.clone();
            let mut n = 0;
            while code[i + n..].starts_with(b"super::") {
                base.pop();
                n += 7;
            }
            Some((base, n))
        } else {
            None
        };
        let preceded = i > 0 && (ident(code[i - 1]) || code[i - 1] == b':');
        match start {
            Some((base, n)) if !preceded => {
                let mut j = i + n;
                let mut segs = base;
                loop {
                    let k = j + code[j..].iter().take_while(|&&b| ident(b)).count();
                    if k == j {
                        break;
                    }
                    segs.push(f.code[j..k].to_string());
                    j = k;
                    if code[j..].starts_with(b"::") {
                        j += 2;
                    } else {
                        break;
                    }
                }
                if code[j..].starts_with(b"{") {
                    // One level of a group: `super::{a::B, c}`.
                    let end = j + f.code[j..].find('}').unwrap_or(1);
                    for item in f.code[j + 1..end].split(',') {
                        let mut p = segs.clone();
                        p.extend(
                            item.trim()
                                .split("::")
                                .map(|s| s.trim().trim_start_matches('{').to_string())
                                .filter(|s| !s.is_empty() && s.bytes().all(ident)),
                        );
                        out.push(p);
                    }
                } else {
                    out.push(segs);
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// The file a path lands in: the longest prefix that is a file's module. `None` for the crate
/// root and for a folder's `mod.rs` (it only re-exports).
fn target<'a>(p: &[String], by_module: &'a BTreeMap<Vec<String>, &'a File>) -> Option<&'a File> {
    (1..=p.len())
        .rev()
        .find_map(|k| by_module.get(&p[..k]))
        .copied()
        .filter(|t| {
            !["mod.rs", "lib.rs", "main.rs"]
                .iter()
                .any(|r| t.rel.ends_with(r))
        })
}

fn room(rel: &str) -> &'static str {
    if rel.starts_with("engine/") {
        "engine"
    } else if rel.starts_with("science/") {
        "science"
    } else if PAGE.iter().any(|p| rel.starts_with(p)) {
        "page"
    } else if WORKER.iter().any(|p| rel.starts_with(p)) {
        "worker"
    } else if rel.starts_with("web/") {
        "web"
    } else {
        "top"
    }
}

/// Which rooms each room may import.
fn allowed(from: &str, to: &str) -> bool {
    match from {
        "engine" => to == "engine",
        "science" => matches!(to, "engine" | "science"),
        "web" => matches!(to, "engine" | "science" | "web"),
        "page" => matches!(to, "engine" | "science" | "web" | "page"),
        "worker" => matches!(to, "engine" | "science" | "web" | "worker"),
        _ => true,
    }
}

#[test]
fn rooms_import_one_way() {
    let files = files();
    let mut bad = Vec::new();
    for f in &files {
        for p in paths(f) {
            // The room of the path itself, as written: `crate::web::page::...`.
            let as_rel = format!("{}/", p.join("/"));
            let to = room(&as_rel);
            if !allowed(room(&f.rel), to) {
                bad.push(format!("src/{} imports {} ({to})", f.rel, p.join("::")));
            }
        }
    }
    bad.dedup();
    assert!(
        bad.is_empty(),
        "imports against the rooms' direction:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_import_cycle_between_files() {
    let files = files();
    let by_module: BTreeMap<Vec<String>, &File> =
        files.iter().map(|f| (f.module.clone(), f)).collect();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in &files {
        let out = edges.entry(&f.rel).or_default();
        for p in paths(f) {
            if let Some(t) = target(&p, &by_module)
                && t.rel != f.rel
            {
                out.insert(&t.rel);
            }
        }
    }
    // Tarjan's strongly connected components.
    struct Walk<'a> {
        edges: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, (usize, usize)>,
        stack: Vec<&'a str>,
        cycles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, (n, n));
        w.stack.push(v);
        for &t in w.edges.get(v).into_iter().flatten() {
            let low = match w.index.get(t) {
                None => {
                    visit(w, t);
                    w.index[t].1
                }
                Some(&(i, _)) if w.stack.contains(&t) => i,
                Some(_) => continue,
            };
            let e = w.index.get_mut(v).unwrap();
            e.1 = e.1.min(low);
        }
        if w.index[v].0 == w.index[v].1 {
            let k = w.stack.iter().rposition(|&x| x == v).unwrap();
            let comp = w.stack.split_off(k);
            if comp.len() > 1 {
                w.cycles.push(comp);
            }
        }
    }
    let mut w = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        cycles: Vec::new(),
    };
    for &v in edges.keys() {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    let shown: Vec<String> = w
        .cycles
        .iter()
        .map(|c| {
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("  {a} -> {b}"))
                })
                .collect();
            format!("files importing each other:\n{}", inside.join("\n"))
        })
        .collect();
    assert!(shown.is_empty(), "{}", shown.join("\n"));
}

#[test]
fn long_files_say_why() {
    let long: Vec<String> = files()
        .iter()
        .filter(|f| f.lines > 600 && !f.head.contains("Over 600 lines:"))
        .map(|f| format!("src/{} ({} lines)", f.rel, f.lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over 600 lines without an \"Over 600 lines: <why>\" note at the top:\n{}",
        long.join("\n")
    );
}

#[test]
fn src_includes_nothing_from_scripts_and_holds_no_python() {
    let mut bad: Vec<String> = walk()
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .map(|p| format!("{} is Python in src/", p.display()))
        .collect();
    for f in files() {
        for (i, l) in f.code.lines().enumerate() {
            if l.contains("include_") && (l.contains("/scripts/") || l.contains("\"scripts/")) {
                bad.push(format!(
                    "src/{}:{} includes a file from scripts/",
                    f.rel,
                    i + 1
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The checker itself: the paths it reads.
#[test]
fn the_reader_sees_grouped_and_relative_paths() {
    let f = File {
        rel: "web/worker/host.rs".into(),
        module: vec!["web".into(), "worker".into(), "host".into()],
        code: "use super::super::protocol::{Event, BuildSize};\nuse crate::engine::{model::CpuModel, Error};\nlet x = super::bench::run();".into(),
        lines: 3,
        head: String::new(),
    };
    let got: Vec<String> = paths(&f).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "web::protocol::Event",
            "web::protocol::BuildSize",
            "engine::model::CpuModel",
            "engine::Error",
            "web::worker::bench::run",
        ]
    );
}
