//! How many rules of a set of definitions the server batches, for the share the
//! performance guide states (the adapter's examples, the seeds).

use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::sources::folder::parse_text;
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_apiserver::upstream::batchable;
use std::path::Path;

/// One compiled rule, as batching sees it.
#[derive(Debug)]
pub struct Batching {
    pub template: String,
    pub object: ObjectKind,
    /// Proven separable by object by the compiler.
    pub separable: bool,
    /// Asked together with other objects by the server.
    pub batched: bool,
}

/// The rules `manifests` compile to.
pub fn batching(manifests: &str) -> Vec<Batching> {
    let definitions: Vec<_> = parse_text(Path::new("definitions.yaml"), manifests)
        .unwrap_or_default()
        .into_iter()
        .map(|located| located.definition)
        .collect();
    let compiled = compile(&definitions, CompileOptions::default());
    let table = &compiled.table;
    table
        .discovery()
        .filter_map(|(kind, metric)| table.group(kind, metric))
        .flat_map(|group| group.cluster.iter().chain(group.namespaced.values()))
        .map(|rule| Batching {
            template: rule.template.render("<<.LabelMatchers>>", "<<.GroupBy>>"),
            object: rule.object,
            separable: rule.separable,
            batched: batchable(rule),
        })
        .collect()
}
