//! Definitions read from a folder of YAML files (multi-document), the standalone
//! counterpart of watching the cluster.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use crate::definitions::{Definition, DefinitionId};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// A definition and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub file: PathBuf,
    pub definition: Definition,
}

/// Largest manifest file read; a ConfigMap holds at most 1 MiB, so this leaves room for
/// generated folders while keeping a stray dump from filling memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// YAML documents per file (the YAML library's default of 1,024 is too small for
/// generated files holding one definition per document).
pub const MAX_DOCUMENTS: usize = 100_000;
/// Nodes (scalars, mappings, sequences) per file; a definition has about 15.
pub const MAX_NODES: usize = 5_000_000;
/// Parser events per file; about twice the nodes.
pub const MAX_EVENTS: usize = 12_000_000;

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_nodes = MAX_NODES;
    budget.max_events = MAX_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Names the limit a file broke, so its author knows what to split.
fn yaml_error(error: serde_saphyr::Error) -> String {
    use serde_saphyr::budget::BudgetBreach;
    let mut original = &error;
    while let serde_saphyr::Error::WithSnippet { error, .. } = original {
        original = error;
    }
    let limit = match original {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Documents { .. } => {
                Some(format!("more than {MAX_DOCUMENTS} YAML documents"))
            }
            BudgetBreach::Nodes { .. } => Some(format!("more than {MAX_NODES} YAML nodes")),
            BudgetBreach::Events { .. } => {
                Some(format!("more than {MAX_EVENTS} YAML parser events"))
            }
            other => Some(format!("a YAML safety limit ({other:?})")),
        },
        _ => None,
    };
    match limit {
        Some(limit) => {
            format!("the file has {limit}, the per-file limit; split it into several files")
        }
        None => format!("invalid YAML: {error}"),
    }
}

/// Whether a folder entry's name marks it as a manifest. Hidden entries are skipped, which
/// also skips the `..data` folders of mounted ConfigMaps (their files appear as symlinks).
pub fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !hidden && matches!(extension, "yaml" | "yml" | "json")
}

/// Reads every definition in one file; other Kubernetes objects are skipped.
pub fn read_file(path: &Path) -> Result<Vec<Located>, Vec<ManifestError>> {
    let error = |message: String| {
        vec![ManifestError {
            file: path.to_path_buf(),
            message,
        }]
    };
    let text = read_text(path).map_err(error)?;
    parse_text(path, &text)
}

/// The file's text, refusing files over [`MAX_FILE_BYTES`].
pub fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "the file is larger than {} MiB, the per-file limit; split it into several files",
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    Ok(text)
}

/// Every definition in the text of one file (`path` names it in errors).
pub fn parse_text(path: &Path, text: &str) -> Result<Vec<Located>, Vec<ManifestError>> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
            vec![ManifestError {
                file: path.to_path_buf(),
                message: yaml_error(e),
            }]
        })?;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        if document.is_null() {
            continue;
        }
        if !document.is_object() {
            problems.push(ManifestError {
                file: path.to_path_buf(),
                message: format!("document {} is not a Kubernetes object", index + 1),
            });
            continue;
        }
        match Definition::from_object(document) {
            Ok(Some(definition)) => found.push(Located {
                file: path.to_path_buf(),
                definition,
            }),
            Ok(None) => {}
            Err(e) => problems.push(ManifestError {
                file: path.to_path_buf(),
                message: format!("document {}: {e}", index + 1),
            }),
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// The files of a folder that hold manifests, sorted (see [`is_manifest`]).
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ManifestError {
        file: dir.to_path_buf(),
        message: format!("cannot read folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_manifest(path) && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the given files; a definition named twice is an error.
pub fn read_files(files: &[PathBuf]) -> Result<Vec<Located>, Vec<ManifestError>> {
    let (all, problems) = read_all(files);
    if problems.is_empty() {
        Ok(all)
    } else {
        Err(problems)
    }
}

/// Every definition the files hold and every problem with them (unreadable files,
/// invalid documents, a definition named twice), for callers that report rather than stop.
pub fn read_all(files: &[PathBuf]) -> (Vec<Located>, Vec<ManifestError>) {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match read_file(file) {
            Ok(found) => all.extend(found),
            Err(errors) => problems.extend(errors),
        }
    }
    let mut seen: BTreeMap<DefinitionId, PathBuf> = BTreeMap::new();
    for located in &all {
        if let Some(first) = seen.insert(located.definition.id.clone(), located.file.clone()) {
            problems.push(ManifestError {
                file: located.file.clone(),
                message: format!(
                    "{} is also defined in {}",
                    located.definition.id,
                    first.display()
                ),
            });
        }
    }
    (all, problems)
}

/// Reads a whole folder.
pub fn read_dir(dir: &Path) -> Result<Vec<Located>, Vec<ManifestError>> {
    let files = manifest_files(dir).map_err(|e| vec![e])?;
    read_files(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_files_with_other_objects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.yaml"),
            r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: rmq-queue-forum-messages, namespace: mynamespace}
spec:
  query: sum (avg_over_time(rabbitmq_queue_messages{«.LabelMatchers»,queue=~"send_forum_message",vhost="/"}[5m])) by («.GroupBy»)
---
kind: HorizontalPodAutoscaler
apiVersion: autoscaling/v2
metadata: {name: myhpa, namespace: mynamespace}
---
"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let found = read_dir(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].definition.id.to_string(),
            "ServiceMetric mynamespace/rmq-queue-forum-messages"
        );
    }

    #[test]
    fn broken_yaml_and_duplicates_are_reported_per_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: [unclosed").unwrap();
        let errors = read_dir(dir.path()).unwrap_err();
        assert!(
            errors[0].to_string().contains("a.yaml: invalid YAML"),
            "{}",
            errors[0]
        );

        let dir = tempfile::tempdir().unwrap();
        let doc = "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {name: m}\nspec: {query: 'x{<<.LabelMatchers>>}'}\n";
        std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
        std::fs::write(dir.path().join("b.yaml"), doc).unwrap();
        let errors = read_dir(dir.path()).unwrap_err();
        assert!(
            errors[0].message.contains("also defined in"),
            "{}",
            errors[0]
        );
    }

    fn definitions_yaml(count: usize) -> String {
        (0..count)
            .map(|i| format!("apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {{name: m{i}}}\nspec: {{query: 'x{{<<.LabelMatchers>>}}'}}\n---\n"))
            .collect()
    }

    #[test]
    fn big_generated_files_fit_the_budget() {
        // The YAML library's default budget stops at 1,024 documents.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("many.yaml"), definitions_yaml(5_000)).unwrap();
        assert_eq!(read_dir(dir.path()).unwrap().len(), 5_000);
    }

    #[test]
    fn a_file_over_a_budget_names_the_limit() {
        let text = "---\n".repeat(MAX_DOCUMENTS + 5);
        let errors = parse_text(Path::new("huge.yaml"), &text).unwrap_err();
        let message = &errors[0].message;
        assert!(
            message.contains(&format!("more than {MAX_DOCUMENTS} YAML documents")),
            "{message}"
        );
        assert!(message.contains("split it"), "{message}");
    }
}
