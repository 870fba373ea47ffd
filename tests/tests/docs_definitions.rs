//! Every definition the docs show is one the product accepts: each ```yaml block of the
//! README and docs/ that holds `metrics-registry.io` objects is written to a file and run
//! through `metrics-registry check` (the server's compiler). A doc that drifts from the
//! code — a renamed field, a refused query — fails here, naming the file and block.

use metrics_registry::check::check;
use metrics_registry::compiler::CompileOptions;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The ```yaml blocks of a Markdown file, with the line each starts on, without the
/// indentation of their fence (blocks inside list items are indented).
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => {
                let indent = line.len() - line.trim_start().len();
                current = Some((number + 1, indent, String::new()));
            }
            Some(_) if line.trim_start() == "```" => {
                blocks.extend(current.take().map(|(line, _, block)| (line, block)));
            }
            Some((_, indent, block)) => {
                block.push_str(line.get(*indent..).unwrap_or(line.trim_start()));
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_definition_in_the_docs_passes_check() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, block) in yaml_blocks(&text) {
            if !block.contains("apiVersion: metrics-registry.io/") {
                continue;
            }
            let name = format!(
                "{}-{line}.yaml",
                file.file_stem().unwrap().to_string_lossy()
            );
            let path = dir.path().join(&name);
            std::fs::write(&path, &block).unwrap();
            let report = check(&[path], CompileOptions::default());
            checked += report.definitions;
            let shown = format!(
                "{}:{line}",
                file.strip_prefix(&root).unwrap_or(file).display()
            );
            if report.definitions == 0 {
                failures.push(format!("{shown}: no definition read"));
            }
            failures.extend(report.problems.iter().map(|p| format!("{shown}: {p}")));
        }
    }
    // The docs show many definitions; finding few means the block search broke.
    assert!(checked >= 7, "only {checked} definitions found in the docs");
    println!("{checked} definitions in the docs pass check");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The chart's `resourceMetrics.spec` (what `resourceMetrics.enabled` installs) is a
/// `ResourceMetrics` the product accepts.
#[test]
fn the_charts_resource_metrics_passes_check() {
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("charts/metrics-registry/values.yaml")).unwrap(),
    )
    .unwrap();
    let object = serde_json::json!({
        "apiVersion": "metrics-registry.io/v1beta1",
        "kind": "ResourceMetrics",
        "metadata": {"name": "default"},
        "spec": values["resourceMetrics"]["spec"],
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resource-metrics.json");
    std::fs::write(&path, object.to_string()).unwrap();
    let report = check(&[path], CompileOptions::default());
    assert_eq!(
        (report.definitions, report.problems),
        (1, Vec::<String>::new())
    );
}
