//! The layering, checked. Between crates the compiler forbids an import upwards (a crate can use
//! only the crates its `Cargo.toml` names, and cargo refuses a cycle); these tests check what
//! the compiler does not: that each crate names only crates below it in the layer order of
//! ARCHITECTURE.md, that the pure crates (`fit`, `model`) name none and `fit`'s dependency tree
//! holds neither candle nor SQLite, and that inside each crate (`crates/*/src`, and the
//! command line's `src/cli`) the files and sub-directories import each other one way only, so
//! each can be read after the ones it uses.
//!
//! A file's imports are the paths it names as `super::NAME…` or `crate::NAME…` at a crate's
//! root, `crate::MODULE::NAME…` in a module directory (grouped `{…}` imports included), resolved
//! to the sibling file or directory `NAME`; a name re-exported by the root file (`lib.rs` or
//! `mod.rs`: `pub use x::{NAME}`) resolves to the file it comes from, any other item of the
//! root file to the root file itself. Doc comments and a file's `#[cfg(test)]` tail are not
//! imports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The first path segment of every `prefix…` path in `line`, expanding one `{…}` group.
fn names_after(line: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at + prefix.len()..];
        if let Some(group) = tail.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(ch),
                }
            }
            items.push(item);
            for item in items {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    out.push(first);
                }
            }
        } else {
            let first: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !first.is_empty() {
                out.push(first);
            }
        }
        rest = &rest[at + prefix.len()..];
    }
    out
}

/// A file's code lines: no comment lines, nothing from its `#[cfg(test)]` module on.
fn code_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).expect("a source file");
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(str::to_string)
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The import graph among the entries (files and sub-directories) of module directory `dir`,
/// whose module path is `crate_prefix` (`crate::` for a crate's `src`, `crate::cli::` for a
/// module) and whose root file is `root` (`lib` or `mod`).
fn graph(dir: &Path, crate_prefix: &str, root: &str) -> BTreeMap<String, BTreeSet<String>> {
    let entry_of = |path: &Path| -> String {
        let rel = path.strip_prefix(dir).expect("under dir");
        let first = rel.components().next().expect("non-empty");
        let name = first.as_os_str().to_string_lossy().to_string();
        name.trim_end_matches(".rs").to_string()
    };
    let entries: BTreeSet<String> = fs::read_dir(dir)
        .expect("a module directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| entry_of(&p))
        .collect();
    // Names `mod.rs` re-exports, and the entry each comes from.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    let mod_rs = dir.join(format!("{root}.rs"));
    if mod_rs.exists() {
        let text = code_lines(&mod_rs).join(" ");
        for stmt in text.split(';') {
            let stmt = stmt.trim();
            let Some(path) = stmt.strip_prefix("pub use ") else {
                continue;
            };
            let source: String = path
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !entries.contains(&source) {
                continue;
            }
            let names = path[source.len()..].trim_start_matches("::");
            let names = names.trim_start_matches('{').trim_end_matches('}');
            for name in names.split(',') {
                let last = name.trim().rsplit("::").next().unwrap_or("").trim();
                let last = last.split(" as ").last().unwrap_or(last).trim();
                if !last.is_empty() {
                    reexports.insert(last.to_string(), source.clone());
                }
            }
        }
    }
    let resolve = |name: &str| -> Option<String> {
        if entries.contains(name) {
            Some(name.to_string())
        } else if name == "self" || name == "super" || name == "*" {
            None
        } else {
            Some(
                reexports
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| root.to_string()),
            )
        }
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(dir) {
        let from = entry_of(&file);
        let depth = file.strip_prefix(dir).unwrap().components().count();
        // `super::` from a file directly in `dir` (or a sub-directory's mod.rs) names an entry
        // of `dir`; from deeper, `super::super::` does.
        let is_sub_mod = depth == 2 && file.file_name().is_some_and(|n| n == "mod.rs");
        let parent_prefix = if depth == 1 || is_sub_mod {
            "super::"
        } else {
            "super::super::"
        };
        for line in code_lines(&file) {
            let mut names = names_after(&line, crate_prefix);
            if from != root {
                let line = if parent_prefix == "super::" {
                    line.replace("super::super::", "")
                } else {
                    line.clone()
                };
                names.extend(names_after(&line, parent_prefix));
            }
            for name in names {
                if let Some(to) = resolve(&name)
                    && to != from
                {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    edges
}

/// One circle in `edges`, as the path that closes it, or `None`.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// The workspace's crates, top to bottom: each may depend only on crates after it.
const LAYERS: [&str; 13] = [
    "loopscale",
    "serve",
    "report",
    "plot",
    "analysis",
    "fit",
    "engine",
    "sweep",
    "store",
    "train",
    "config",
    "model",
    "chart",
];
/// Crates that depend on no other loopscale crate.
const PURE: [&str; 3] = ["fit", "model", "chart"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The loopscale crates named in the `[dependencies]` table of a crate's `Cargo.toml`.
fn loopscale_dependencies(manifest: &Path) -> Vec<String> {
    let text = fs::read_to_string(manifest).expect("a Cargo.toml");
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && let Some(name) = line.strip_prefix("loopscale-") {
            out.push(name.split([' ', '=']).next().unwrap_or("").to_string());
        }
    }
    out
}

#[test]
fn each_crate_depends_only_on_crates_below_it() {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut upward = Vec::new();
    let mut crates: Vec<(String, PathBuf)> = vec![("loopscale".into(), root().join("Cargo.toml"))];
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            rank(&name).is_some(),
            "crates/{name} is not in LAYERS: place it in the order"
        );
        crates.push((name, dir.join("Cargo.toml")));
    }
    assert_eq!(crates.len(), LAYERS.len(), "every layer is a crate");
    for (name, manifest) in &crates {
        for dep in loopscale_dependencies(manifest) {
            if PURE.contains(&name.as_str()) {
                upward.push(format!("{name} is pure but depends on loopscale-{dep}"));
            } else if rank(&dep).is_none_or(|d| d <= rank(name).unwrap()) {
                upward.push(format!(
                    "{name} depends on loopscale-{dep}, which is not below it"
                ));
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn the_fit_crate_depends_on_neither_candle_nor_sqlite() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "loopscale-fit",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("argmin"), "the tree was read: {tree}");
    for banned in ["candle", "rusqlite", "libsqlite3", "polars", "plotters"] {
        assert!(
            !tree.contains(banned),
            "loopscale-fit's tree holds {banned}:\n{tree}"
        );
    }
}

#[test]
fn no_crate_or_module_directory_has_an_import_circle() {
    let mut dirs: Vec<(PathBuf, String, String)> =
        vec![(root().join("src/cli"), "crate::cli::".into(), "mod".into())];
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        dirs.push((src.clone(), "crate::".into(), "lib".into()));
        for sub in fs::read_dir(&src).unwrap() {
            let sub = sub.unwrap().path();
            if sub.is_dir() {
                let module = sub.file_name().unwrap().to_string_lossy().to_string();
                dirs.push((sub, format!("crate::{module}::"), "mod".into()));
            }
        }
    }
    let mut circles = Vec::new();
    for (dir, prefix, root_file) in &dirs {
        if let Some(cycle) = find_cycle(&graph(dir, prefix, root_file)) {
            circles.push(format!("{}: {}", dir.display(), cycle.join(" → ")));
        }
    }
    assert!(
        circles.is_empty(),
        "files that import each other in a loop (break each so data flows one way):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_a_circle_and_reads_grouped_imports() {
    assert_eq!(
        names_after("use super::{a::X, b, c::{d, e}};", "super::"),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        names_after("let x = crate::m::f::g();", "crate::m::"),
        vec!["f"]
    );
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
