//! The import graph of the product's crates, read from their source: which module uses
//! which. It is printed into `docs/architecture.md` (so the picture there cannot drift:
//! the test fails when it differs; `METRICS_REGISTRY_UPDATE_DOCS=1` rewrites it), and no
//! module may be part of a circle with its siblings — each module sits below its callers,
//! at every level (the top-level modules of a crate, the children of each module).
//!
//! Paths are read with a small parser of its own (`crate::`, `super::`, `self::` paths,
//! `use` trees with braces), not with the compiler: test code (`tests.rs`, `*_tests.rs`,
//! inline `#[cfg(test)] mod tests { … }`) is left out, as tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 3] = ["crds", "apiserver", "operator"];
const START: &str = "<!-- module-graph:start -->";
const END: &str = "<!-- module-graph:end -->";

type ModulePath = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with the module path it defines.
fn modules(src: &Path) -> BTreeMap<ModulePath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut segments: ModulePath = relative
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let last = segments.last().cloned().unwrap_or_default();
            if matches!(last.as_str(), "mod" | "lib" | "main") {
                segments.pop();
            }
            // src/bin/*.rs are binaries of their own, not modules of the library.
            if segments.first().is_some_and(|s| s == "bin") {
                continue;
            }
            found.insert(segments, path);
        }
    }
    found
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().unwrap().to_string_lossy();
    name == "tests" || name.ends_with("_tests") || name == "test_pki" || name == "mock_api"
}

/// Where an inline `#[cfg(test)] mod … {` starts (test modules come last in a file).
fn inline_tests(text: &str) -> Option<usize> {
    text.match_indices("#[cfg(test)]")
        .map(|(at, _)| at)
        .find(|at| {
            let after = text[at + "#[cfg(test)]".len()..].trim_start();
            after.starts_with("mod ")
                && after
                    .find(['{', ';'])
                    .is_some_and(|end| after.as_bytes()[end] == b'{')
        })
}

/// The text without comments, string contents and inline test modules.
fn code(text: &str) -> String {
    let text = &text[..inline_tests(text).unwrap_or(text.len())];
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(raw) = rest.strip_prefix("r#\"") {
            i += raw.find("\"#").map_or(rest.len(), |e| e + 5);
            out.push_str("\"\"");
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            i += (j + 1).min(rest.len());
            out.push_str("\"\"");
        } else if rest.starts_with('\'') && rest.len() > 2 && rest.as_bytes()[2] == b'\'' {
            // A char literal such as '{' (not a lifetime).
            i += 3;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push(Token::Colons);
                i += 2;
                continue;
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '*' => out.push(Token::Ident("*".into())),
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
        i += 1;
    }
    out
}

/// Parses the rest of a path after `prefix::` at `tokens[at]`: every full path it names
/// (a `use` tree with braces names several).
fn paths(tokens: &[Token], at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut i = at;
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                i += 1;
                if tokens.get(i) == Some(&Token::Colons) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some(Token::Close) => return i + 1,
                        Some(Token::Comma) => i += 1,
                        Some(_) => i = paths(tokens, i, path.clone(), out),
                        None => return i,
                    }
                }
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// The modules `file` (module `me`) refers to, resolved against `known`.
fn references(text: &str, me: &ModulePath, known: &BTreeSet<ModulePath>) -> BTreeSet<ModulePath> {
    let tokens = tokens(&code(text));
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(word) = token else { continue };
        if tokens.get(i + 1) != Some(&Token::Colons) {
            continue;
        }
        // The start of a path only: `a::crate::` does not occur, `x::super` neither.
        if i > 0 && tokens[i - 1] == Token::Colons {
            continue;
        }
        let base: ModulePath = match word.as_str() {
            "crate" => Vec::new(),
            "super" | "self" => me.clone(),
            _ => continue,
        };
        // `super::` from a file's module is its parent; paths may climb further.
        let mut raw = Vec::new();
        paths(&tokens, i + 2, Vec::new(), &mut raw);
        for segments in raw {
            let mut resolved = base.clone();
            if word == "super" {
                resolved.pop();
            }
            for segment in segments {
                if segment == "super" {
                    resolved.pop();
                } else if segment != "self" {
                    resolved.push(segment);
                }
            }
            // The longest prefix that is a module: the rest names an item in it.
            while !resolved.is_empty() && !known.contains(&resolved) {
                resolved.pop();
            }
            found.push(resolved);
        }
    }
    found.into_iter().collect()
}

/// Edges between siblings: (parent, from child, to child), for every reference from a
/// module to one that is neither its ancestor nor its descendant.
type Edges = BTreeSet<(ModulePath, String, String)>;

fn crate_edges(krate: &str) -> Edges {
    let src = root().join(krate).join("src");
    let modules = modules(&src);
    let known: BTreeSet<ModulePath> = modules.keys().cloned().collect();
    let mut edges = Edges::new();
    for (me, path) in &modules {
        if me.is_empty() || is_test_file(path) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for target in references(&text, me, &known) {
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < me.len() && common < target.len() {
                edges.insert((
                    me[..common].to_vec(),
                    me[common].clone(),
                    target[common].clone(),
                ));
            }
        }
    }
    edges
}

/// Circles among the children of each module: strongly connected sets of more than one.
fn circles(edges: &Edges) -> Vec<(ModulePath, BTreeSet<String>)> {
    let mut by_parent: BTreeMap<&ModulePath, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for (parent, from, to) in edges {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    let mut found = Vec::new();
    for (parent, graph) in by_parent {
        let nodes: BTreeSet<&str> = graph
            .iter()
            .flat_map(|(from, tos)| std::iter::once(*from).chain(tos.iter().copied()))
            .collect();
        let reaches = |start: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(node) = stack.pop() {
                for next in graph.get(node).into_iter().flatten() {
                    if seen.insert(*next) {
                        stack.push(next);
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&str, BTreeSet<&str>> =
            nodes.iter().map(|n| (*n, reaches(n))).collect();
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        for node in &nodes {
            if placed.contains(node) {
                continue;
            }
            let circle: BTreeSet<String> = nodes
                .iter()
                .filter(|other| reach[node].contains(*other) && reach[*other].contains(node))
                .map(|s| s.to_string())
                .collect();
            if circle.len() > 1 {
                placed.extend(nodes.iter().filter(|n| circle.contains(**n)));
                found.push((parent.clone(), circle));
            }
        }
    }
    found
}

/// The top-level modules of each crate and what each uses, as a Markdown list.
fn graph_text(all: &BTreeMap<&str, Edges>) -> String {
    let mut text = String::new();
    for (krate, edges) in all {
        text.push_str(&format!("- `{krate}`\n"));
        let mut uses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (parent, from, to) in edges {
            if parent.is_empty() {
                uses.entry(from).or_default().insert(to);
            }
        }
        for (from, tos) in uses {
            let tos: Vec<String> = tos.iter().map(|t| format!("`{t}`")).collect();
            text.push_str(&format!("  - `{from}` → {}\n", tos.join(", ")));
        }
    }
    text
}

#[test]
fn no_module_is_in_a_circle_and_the_documented_graph_is_current() {
    let all: BTreeMap<&str, Edges> = CRATES.iter().map(|c| (*c, crate_edges(c))).collect();
    let mut problems = Vec::new();
    for (krate, edges) in &all {
        for (parent, circle) in circles(edges) {
            let at = if parent.is_empty() {
                krate.to_string()
            } else {
                format!("{krate}::{}", parent.join("::"))
            };
            let members: Vec<&String> = circle.iter().collect();
            let uses: Vec<String> = edges
                .iter()
                .filter(|(p, from, to)| {
                    *p == parent && circle.contains(from) && circle.contains(to)
                })
                .map(|(_, from, to)| format!("{from} → {to}"))
                .collect();
            problems.push(format!(
                "in {at}: {members:?} use each other ({})",
                uses.join(", ")
            ));
        }
    }

    let doc_path = root().join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let generated = graph_text(&all);
    let (before, rest) = doc
        .split_once(START)
        .expect("the module-graph start marker");
    let (current, after) = rest.split_once(END).expect("the module-graph end marker");
    let wanted = format!("\n{generated}");
    if current != wanted {
        if std::env::var_os("METRICS_REGISTRY_UPDATE_DOCS").is_some() {
            std::fs::write(&doc_path, format!("{before}{START}{wanted}{END}{after}")).unwrap();
        } else {
            problems.push(format!(
                "docs/architecture.md's module graph is not the code's (run with METRICS_REGISTRY_UPDATE_DOCS=1 to rewrite it):\n{generated}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_paths_in_every_form() {
    let known: BTreeSet<ModulePath> = [
        vec![],
        vec!["a".to_string()],
        vec!["a".to_string(), "b".to_string()],
        vec!["c".to_string()],
        vec!["d".to_string()],
    ]
    .into_iter()
    .collect();
    let text = r#"
        use crate::{c::Thing, d};
        use super::b::Other; // crate::nope in a comment
        fn f() { let _ = "crate::d in a string"; crate::c::call(); }
        #[cfg(test)]
        mod tests { use crate::e; }
    "#;
    let me = vec!["a".to_string(), "x".to_string()];
    let found = references(text, &me, &known);
    let expected: BTreeSet<ModulePath> = [
        vec!["c".to_string()],
        vec!["d".to_string()],
        vec!["a".to_string(), "b".to_string()],
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
    // A circle is found at the level it is at, and only there.
    let edges: Edges = [
        (vec![], "a".to_string(), "c".to_string()),
        (vec![], "c".to_string(), "a".to_string()),
        (vec![], "c".to_string(), "d".to_string()),
    ]
    .into_iter()
    .collect();
    let found = circles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, ["a".to_string(), "c".to_string()].into());
}
