//! Definitions read from a folder of YAML files (multi-document), the standalone
//! counterpart of watching the cluster.

use crate::definitions::{Definition, DefinitionId};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with one file; any such problem keeps the last good table in place.
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

fn is_manifest(path: &Path) -> bool {
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
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| error(format!("invalid YAML: {e}")))?;
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

/// The files of a folder that hold manifests, sorted. Hidden entries are skipped, which
/// also skips the `..data` folders of mounted ConfigMaps (their files appear as symlinks).
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
}
