//! docs/troubleshooting.md names every message the product can answer, report or log:
//! this test takes the reasons from the product's catalogue (`catalogue::reasons`: each
//! reason with the section of the guide that must explain it) and reads the messages from
//! the source — the messages of API errors, definition problems, error types, CLI errors
//! of `run`/`check`/`convert`, warnings and errors logged, and every sentence of the files
//! that say they hold messages only — and fails naming each one (file, line, the message
//! as written in the code) that the guide does not hold. No file is named here, so moving
//! code around cannot hide a message.
//!
//! A message matches when one line of the guide holds its fixed text in order; what the
//! code fills in (`{metric}`, `{}`) may be anything there, e.g. `<metric>`.

use std::path::{Path, PathBuf};

/// Where messages are made, and how to find them.
enum Rule {
    /// Every string literal among the arguments of calls starting with one of these.
    Calls(&'static [&'static str]),
    /// Every string literal of at least three words, in files whose module documentation
    /// holds [`MESSAGES_FILE`] (files that hold messages only).
    Sentences,
}

/// What a file that holds only messages says about itself.
const MESSAGES_FILE: &str = "//! Every sentence in this file is a message users see";

const SOURCES: &[&str] = &["apiserver/src", "operator/src"];

/// (what, rule)
const RULES: &[(&str, Rule)] = &[
    (
        "API error",
        Rule::Calls(&[
            "ApiError::new(",
            "ApiError::not_found(",
            "ApiError::bad_request(",
            "ApiError::unauthorized(",
            "ApiError::forbidden(",
            "ApiError::not_implemented(",
            "ApiError::unavailable(",
            "ApiError::timeout(",
            "ApiError::too_many_requests(",
            "Self::new(",
        ]),
    ),
    ("error type", Rule::Calls(&["#[error("])),
    (
        "definition problem",
        Rule::Calls(&["Problem::new(", "problems.push("]),
    ),
    (
        "object cache",
        Rule::Calls(&[
            "ObjectIndexError::NotReady(",
            "ObjectIndexError::NoCluster(",
        ]),
    ),
    (
        "CLI error",
        Rule::Calls(&["bail!(", "anyhow!(", ".context(", ".with_context("]),
    ),
    (
        "check --prometheus-url",
        Rule::Calls(&["Outcome::NoData(", "remarks.push("]),
    ),
    ("log", Rule::Calls(&["warn!(", "error!("])),
    ("message", Rule::Sentences),
];

/// One message as the code writes it.
#[derive(Debug)]
struct Message {
    what: &'static str,
    file: String,
    line: usize,
    template: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            rust_files(&entry, out);
        } else if entry.extension().is_some_and(|e| e == "rs") {
            out.push(entry);
        }
    }
}

/// The source without its tests: test files, and `#[cfg(test)]` modules at the end.
fn product_source(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") || name.starts_with("test_") {
        return None;
    }
    if name == "mock_api.rs" {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(match text.find("#[cfg(test)]\nmod tests") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    })
}

/// A string literal starting at `at` (`"…"` or `r#"…"#`): its text and where it ends.
fn literal_at(source: &str, at: usize) -> Option<(String, usize)> {
    let bytes = source.as_bytes();
    if bytes[at] == b'r' {
        let mut i = at + 1;
        let mut hashes = 0;
        while bytes.get(i) == Some(&b'#') {
            hashes += 1;
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let close = format!("\"{}", "#".repeat(hashes));
        let end = source[i + 1..].find(&close)? + i + 1;
        return Some((source[i + 1..end].to_string(), end + close.len()));
    }
    let mut text = String::new();
    let mut chars = source[at + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return Some((text, at + 1 + offset + 1)),
            '\\' => match chars.next()?.1 {
                // A line continuation drops the newline and the next line's indentation.
                '\n' => {
                    let rest = &source[at + 1 + offset + 2..];
                    let skip = rest.len() - rest.trim_start().len();
                    for _ in 0..rest[..skip].chars().count() {
                        chars.next();
                    }
                }
                'n' => text.push('\n'),
                't' => text.push('\t'),
                other => text.push(other),
            },
            c => text.push(c),
        }
    }
    None
}

/// String literals between the `(` at `open` and its matching `)`.
fn literals_in_call(source: &str, open: usize) -> Vec<(String, usize)> {
    scan_literals(source, open, true)
}

/// Every string literal of the file, with its position.
fn all_literals(source: &str) -> Vec<(String, usize)> {
    scan_literals(source, 0, false)
}

/// String literals from `from` on, past comments and char literals; with `one_call`, up
/// to the bracket closing the one at `from`.
fn scan_literals(source: &str, from: usize, one_call: bool) -> Vec<(String, usize)> {
    let bytes = source.as_bytes();
    let mut depth = 0;
    let mut i = from;
    let mut found = Vec::new();
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            continue;
        }
        let starts_raw = rest[0] == b'r'
            && matches!(rest.get(1), Some(b'"' | b'#'))
            && i > 0
            && !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if (rest[0] == b'"' || starts_raw)
            && let Some((text, end)) = literal_at(source, i)
        {
            found.push((text, i));
            i = end;
            continue;
        }
        match rest[0] {
            b'\'' => {
                // A char literal ('x', '\'', '\n', 'é'); otherwise a lifetime.
                let len = if rest.starts_with(b"'\\") {
                    rest[2..].iter().position(|b| *b == b'\'').map(|p| p + 3)
                } else {
                    source[i + 1..]
                        .chars()
                        .next()
                        .map(char::len_utf8)
                        .filter(|n| rest.get(n + 1) == Some(&b'\''))
                        .map(|n| n + 2)
                };
                i += len.unwrap_or(1);
                continue;
            }
            b'(' | b'[' | b'{' if one_call => depth += 1,
            b')' | b']' | b'}' if one_call => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Splits a format string into its fixed parts: `{…}` is filled in, `{{`/`}}` are braces.
fn fixed_parts(template: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                parts.last_mut().unwrap().push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                parts.last_mut().unwrap().push('}');
            }
            '{' => {
                for inner in chars.by_ref() {
                    if inner == '}' {
                        break;
                    }
                }
                parts.push(String::new());
            }
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// A message worth documenting says something beyond what is filled in.
fn is_message(template: &str) -> bool {
    fixed_parts(template).iter().any(|part| {
        part.split(|c: char| !c.is_ascii_alphabetic())
            .any(|word| word.len() >= 3)
    })
}

/// Whether one line of the guide holds the fixed parts in order.
fn documented(guide: &str, template: &str) -> bool {
    let parts = fixed_parts(template);
    guide.lines().any(|line| {
        let mut rest = line;
        parts.iter().all(|part| match rest.find(part.as_str()) {
            Some(at) => {
                rest = &rest[at + part.len()..];
                true
            }
            None => false,
        })
    })
}

fn messages() -> Vec<Message> {
    let root = root();
    let mut messages = Vec::new();
    let mut files = Vec::new();
    for place in SOURCES {
        rust_files(&root.join(place), &mut files);
    }
    for (what, rule) in RULES {
        for file in &files {
            let Some(source) = product_source(file) else {
                continue;
            };
            if matches!(rule, Rule::Sentences) && !source.contains(MESSAGES_FILE) {
                continue;
            }
            let found: Vec<(String, usize)> = match rule {
                Rule::Calls(calls) => calls
                    .iter()
                    .flat_map(|call| {
                        source
                            .match_indices(call)
                            .flat_map(|(at, _)| literals_in_call(&source, at + call.len() - 1))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
                Rule::Sentences => all_literals(&source)
                    .into_iter()
                    .filter(|(text, at)| {
                        // Invariants the code asserts are not messages anyone meets.
                        let before = source[..*at].trim_end();
                        text.split_whitespace().count() >= 3
                            && !["expect(", "panic!(", "unreachable!("]
                                .iter()
                                .any(|call| before.ends_with(call))
                    })
                    .collect(),
            };
            let relative = file
                .strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string();
            for (template, at) in found {
                if is_message(&template) {
                    messages.push(Message {
                        what,
                        file: relative.clone(),
                        line: source[..at].lines().count(),
                        template,
                    });
                }
            }
        }
    }
    messages
}

/// A heading's anchor as Markdown renderers make it: lower case, punctuation dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text under the heading with this anchor, up to the next heading of its level or
/// above; `None` when no heading has it.
fn section<'a>(guide: &'a str, wanted: &str) -> Option<&'a str> {
    let mut offset = 0;
    let mut start: Option<(usize, usize)> = None;
    for line in guide.split_inclusive('\n') {
        let level = line.chars().take_while(|c| *c == '#').count();
        if level > 0 && line.chars().nth(level) == Some(' ') {
            if let Some((from, open_level)) = start
                && level <= open_level
            {
                return Some(&guide[from..offset]);
            }
            if start.is_none() && anchor(line.trim_end()) == wanted {
                start = Some((offset, level));
            }
        }
        offset += line.len();
    }
    start.map(|(from, _)| &guide[from..])
}

#[test]
fn every_message_of_the_product_is_in_the_troubleshooting_guide() {
    let guide_path = root().join("docs/troubleshooting.md");
    let guide = std::fs::read_to_string(&guide_path)
        .expect("docs/troubleshooting.md")
        // Tables escape the pipe.
        .replace("\\|", "|");
    let messages = messages();
    // The extraction itself must keep working as the code changes shape.
    assert!(
        messages.len() > 100,
        "only {} messages found",
        messages.len()
    );
    let mut missing: Vec<String> = messages
        .iter()
        .filter(|m| !documented(&guide, &m.template))
        .map(|m| format!("  {}:{} ({}): {}", m.file, m.line, m.what, m.template))
        .collect();
    // The reasons come from the product's own catalogue, each with the section that
    // must explain it.
    for entry in metrics_registry::catalogue::reasons() {
        match section(&guide, &entry.doc_anchor) {
            None => missing.push(format!(
                "  {:?} `{}`: no heading with the anchor #{}",
                entry.shown_in, entry.reason, entry.doc_anchor
            )),
            Some(text) if !text.contains(&format!("`{}`", entry.reason)) => missing.push(format!(
                "  {:?} `{}`: not in section #{}",
                entry.shown_in, entry.reason, entry.doc_anchor
            )),
            Some(_) => {}
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md lacks {} of the product's messages (add each with its cause and fix; \
         what the code fills in may be written <like-this>):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_matching_is_neither_too_strict_nor_too_loose() {
    let guide = "| `the server could not find the metric <metric> for <resource>: there is no definition` | … |";
    assert!(documented(
        guide,
        "the server could not find the metric {metric} for {}{place}"
    ));
    assert!(!documented(
        guide,
        "the server could not find the external metric {metric}"
    ));
    // Parts must be on one line and in order.
    assert!(!documented("the metric\nfor", "the metric {} for {}"));
    assert!(!documented("for x the metric", "the metric {} for {}"));
    assert_eq!(
        fixed_parts("ask for /namespaces/{{namespace}}/{}/{name}"),
        vec!["ask for /namespaces/{namespace}/", "/", ""]
    );
    assert_eq!(
        anchor("## 2. Definition status (`Ready` reasons)"),
        "2-definition-status-ready-reasons"
    );
    assert_eq!(anchor("### 404 `NotFound`"), "404-notfound");
    let guide =
        "# T\n## 1. A\n### 404 `NotFound`\nx `NotFound`\n### 400 `BadRequest`\ny\n## 2. B\nz\n";
    assert_eq!(
        section(guide, "404-notfound"),
        Some("### 404 `NotFound`\nx `NotFound`\n")
    );
    assert_eq!(section(guide, "1-a").map(|s| s.lines().count()), Some(5));
    assert_eq!(section(guide, "2-b"), Some("## 2. B\nz\n"));
    assert_eq!(section(guide, "3-c"), None);
    assert!(!is_message("{}: {}"));
    assert!(is_message("{at} appears twice"));
    let source = "ApiError::not_found(format!(\"no {} {}match \\\n        labelSelector {:?}\", a, b('x'), \"in namespace\"))";
    let found: Vec<String> = literals_in_call(source, source.find('(').unwrap())
        .into_iter()
        .map(|(text, _)| text)
        .collect();
    assert_eq!(
        found,
        vec!["no {} {}match labelSelector {:?}", "in namespace"]
    );
}
