//! `metrics-registry check FILE...`: the compiler run offline, one line per problem.

use crate::compiler::{CompileOptions, compile};
use crate::definitions::DefinitionId;
use crate::sources::folder as manifests;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Outcome of checking files: how many definitions were read and every problem found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub definitions: usize,
    pub problems: Vec<String>,
}

pub fn check(files: &[PathBuf], options: CompileOptions) -> CheckReport {
    let mut report = CheckReport::default();
    let (located, problems) = manifests::read_all(files);
    report
        .problems
        .extend(problems.iter().map(ToString::to_string));
    let origin: BTreeMap<&DefinitionId, &PathBuf> = located
        .iter()
        .map(|item| (&item.definition.id, &item.file))
        .collect();
    let definitions: Vec<_> = located.iter().map(|l| l.definition.clone()).collect();
    report.definitions = definitions.len();
    let compiled = compile(&definitions, options);
    for (id, problem) in compiled.not_ready() {
        let file = origin
            .get(id)
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        report.problems.push(format!(
            "{file}: {id}: {}: {}",
            problem.reason, problem.message
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_problem_with_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&good, "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {name: ok}\nspec: {query: 'x{<<.LabelMatchers>>}'}\n").unwrap();
        std::fs::write(&bad, "apiVersion: metrics-registry.io/v1beta1\nkind: PodMetric\nmetadata: {name: p, namespace: a}\nspec: {query: 'x{<<.Series>>}'}\n---\napiVersion: metrics-registry.io/v1beta1\nkind: PodMetric\nmetadata: {name: q, namespace: a}\nspec: {query: 'sum(x{<<.LabelMatchers>>}'}\n").unwrap();
        let report = check(std::slice::from_ref(&good), CompileOptions::default());
        assert_eq!((report.definitions, report.problems.len()), (1, 0));
        let report = check(&[good, bad], CompileOptions::default());
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("bad.yaml: PodMetric a/p: UnknownPlaceholder:"),
            "{}",
            report.problems[0]
        );
        assert!(
            report.problems[1].contains("PodMetric a/q: InvalidQuery:"),
            "{}",
            report.problems[1]
        );
    }
}
