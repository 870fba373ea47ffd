//! `metrics-registry crds`: every CRD as YAML, the same text that is checked in under
//! `charts/metrics-registry/crds/`.

use crate::definitions::DefinitionKind;

/// File name and YAML text of each CRD.
pub fn crd_files() -> Vec<(String, String)> {
    DefinitionKind::crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_saphyr::to_string(&crd).expect("CRDs serialise");
            (format!("{name}.yaml"), yaml)
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The chart ships generated CRDs; this fails when the types change without them.
    #[test]
    fn checked_in_crds_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/metrics-registry/crds");
        let files = crd_files();
        let mut stale = Vec::new();
        for (name, yaml) in &files {
            let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            if &on_disk != yaml {
                stale.push(name.clone());
            }
        }
        let extra: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| !files.iter().any(|(f, _)| f == n))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            stale.is_empty() && extra.is_empty(),
            "charts/metrics-registry/crds is out of date (stale: {stale:?}, unknown: {extra:?}); \
             regenerate with: cargo run -p metrics-registry -- crds --output-dir charts/metrics-registry/crds"
        );
    }

    #[test]
    fn stream_holds_eighteen_documents() {
        let text = crds_yaml();
        assert_eq!(text.matches("---\n").count(), 18);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        assert_eq!(docs.len(), 18);
        assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
    }
}
