//! The incremental compiler against the snapshot oracle (its decisions worked out again
//! for the whole snapshot in one pass): after any sequence of batches, same table, same
//! verdicts, same rule groups, and a delta that names exactly what changed.

use super::snapshot_oracle::compile_snapshot;
use super::*;
use crate::definitions::DefinitionBody;
use crate::definitions::{DefinitionId, DefinitionKind};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_crds::{
    AllowedNamespaces, CustomPrometheusRulesSpec, ExternalSpec, MetricsBackendSpec,
    ResourceMetricsSpec, ResourceQueries, Rule, TenantHeader,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const KINDS: [DefinitionKind; 9] = [
    DefinitionKind::MetricsBackend,
    DefinitionKind::ResourceMetrics,
    DefinitionKind::ServiceMetric,
    DefinitionKind::ClusterServiceMetric,
    DefinitionKind::PodMetric,
    DefinitionKind::NamespaceMetric,
    DefinitionKind::ExternalMetric,
    DefinitionKind::ClusterExternalMetric,
    DefinitionKind::CustomPrometheusRules,
];

const QUERIES: [&str; 7] = [
    // An external metric's query (no <<.GroupBy>>); a metric kind's refuses it.
    "sum(q{<<.LabelMatchers>>}) by (queue)",
    "sum(a{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    "max(b{<<.LabelMatchers>>}) by (<<.GroupBy>>) / sum(c)",
    // Broken in different ways: parse error, no placeholder, other namespace.
    "sum(a{<<.LabelMatchers>>}",
    "sum(a)",
    "a{<<.LabelMatchers>>} + b{namespace=\"other\"}",
    "a{<<.LabelMatchers>>,<<.Nope>>}",
];

/// A small universe so that names, metric names and namespaces collide often.
fn definition() -> impl Strategy<Value = Definition> {
    (
        0..KINDS.len(),
        0..2usize,
        0..3usize,
        prop::option::of(0..3usize),
        0..QUERIES.len(),
        prop::option::of(0..3usize),
        0..3usize,
        0..3usize,
        0..4usize,
    )
        .prop_map(
            |(kind, namespace, name, metric, query, created, rule, namespaced, backend)| {
                // Definitions name the backends `d0` and `d1` (valid or not, allowing
                // `team-a` or every namespace), or none, or the default one.
                let backend =
                    [None, Some("d0"), Some("d1"), Some("default")][backend].map(str::to_string);
                let kind = KINDS[kind];
                let id = DefinitionId {
                    kind,
                    namespace: kind
                        .is_namespaced()
                        .then(|| ["team-a", "team-b"][namespace].to_string()),
                    name: format!("d{name}"),
                };
                let body = if kind == DefinitionKind::MetricsBackend {
                    DefinitionBody::Backend(Box::new(MetricsBackendSpec {
                        url: ["http://a:9090", "http://b:9090", "ftp://c"][rule].into(),
                        // A tenant per namespace, which a ResourceMetrics may not use.
                        tenant: (rule == 1).then(|| TenantHeader {
                            header: "X-Scope-OrgID".into(),
                            value: Some("<<.Namespace>>".into()),
                            namespace_label: None,
                        }),
                        allowed_namespaces: [
                            None,
                            Some(AllowedNamespaces {
                                names: vec!["team-a".into()],
                            }),
                            Some(AllowedNamespaces { names: vec![] }),
                        ][namespaced]
                            .clone(),
                        ..MetricsBackendSpec::default()
                    }))
                } else if kind == DefinitionKind::CustomPrometheusRules {
                    let record = [
                        "kube_adapter_metric_q1",
                        "kube_adapter_metric_q2",
                        "bad name",
                    ][rule];
                    DefinitionBody::Rules(CustomPrometheusRulesSpec {
                        groups: vec![RuleGroup {
                            name: "g".into(),
                            interval: None,
                            rules: vec![Rule {
                                record: Some(record.into()),
                                expr: IntOrString::String("sum(x)".into()),
                                ..Rule::default()
                            }],
                        }],
                        external_metrics_namespaced: [None, Some(true), Some(false)][namespaced],
                    })
                } else if kind == DefinitionKind::ResourceMetrics {
                    // Valid or not by the query drawn; several compete for one place.
                    let queries = ResourceQueries {
                        container_query: QUERIES[query].into(),
                        node_query: "sum by (<<.GroupBy>>) (n{<<.LabelMatchers>>})".into(),
                    };
                    DefinitionBody::Resources(ResourceMetricsSpec {
                        cpu: queries.clone(),
                        memory: queries,
                        backend,
                        ..ResourceMetricsSpec::default()
                    })
                } else if kind.object().is_none() {
                    DefinitionBody::External(ExternalSpec {
                        query: QUERIES[query].into(),
                        metric_name: metric.map(|m| format!("m{m}")),
                        namespace_label: None,
                        backend,
                        timeout: None,
                        max_age: None,
                    })
                } else {
                    DefinitionBody::Metric(MetricSpec {
                        query: QUERIES[query].into(),
                        metric_name: metric.map(|m| format!("m{m}")),
                        backend,
                        ..MetricSpec::default()
                    })
                };
                Definition {
                    id,
                    generation: Some(1),
                    created: created.map(|c| format!("2025-01-0{}T00:00:00Z", c + 1)),
                    body,
                }
            },
        )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => definition().prop_map(|d| Change::Upsert(Arc::new(d))),
        1 => definition().prop_map(|d| Change::Remove(d.id)),
    ]
}

fn verdicts(compiler: &IncrementalCompiler) -> BTreeMap<DefinitionId, Verdict> {
    compiler
        .verdicts()
        .map(|(id, v)| (id.clone(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_equals_the_snapshot_oracle(
        batches in prop::collection::vec(prop::collection::vec(change(), 1..6), 1..12),
        isolation in any::<bool>(),
        external_scope in prop::sample::select(vec![
            ExternalScope::Namespace,
            ExternalScope::NamespaceOrUnlabelled,
            ExternalScope::Cluster,
        ]),
    ) {
        let options = CompileOptions {
            namespace_isolation: isolation,
            external_scope,
        };
        let mut compiler = IncrementalCompiler::new(options);
        let mut current: BTreeMap<DefinitionId, Definition> = BTreeMap::new();
        for batch in batches {
            let table_before = compiler.table();
            let verdicts_before = verdicts(&compiler);
            let rules_before = compiler.rule_groups();
            for change in &batch {
                match change {
                    Change::Upsert(d) => { current.insert(d.id.clone(), (**d).clone()); }
                    Change::Remove(id) => { current.remove(id); }
                }
            }
            let delta = compiler.apply(batch);

            let snapshot: Vec<Definition> = current.values().cloned().collect();
            let full = compile_snapshot(&snapshot, options);
            prop_assert_eq!(&*compiler.table(), &full.table);
            let verdicts_after = verdicts(&compiler);
            prop_assert_eq!(&verdicts_after, &full.verdicts);
            prop_assert_eq!(&compiler.rule_groups(), &full.rule_groups);

            let ids: BTreeSet<&DefinitionId> =
                verdicts_before.keys().chain(verdicts_after.keys()).collect();
            let changed: BTreeSet<DefinitionId> = ids
                .into_iter()
                .filter(|id| verdicts_before.get(*id) != verdicts_after.get(*id))
                .cloned()
                .collect();
            prop_assert_eq!(&delta.changed, &changed);
            prop_assert_eq!(delta.table_changed, *table_before != *compiler.table());
            prop_assert_eq!(delta.rules_changed, rules_before != compiler.rule_groups());
        }
    }
}

#[test]
fn one_edit_touches_only_its_group() {
    use DefinitionKind::*;
    let good = "sum(a{<<.LabelMatchers>>}) by (<<.GroupBy>>)";
    let metric = |kind, namespace: Option<&str>, name: &str, query: &str| Definition {
        id: DefinitionId {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.into(),
        },
        generation: Some(1),
        created: None,
        body: DefinitionBody::Metric(MetricSpec {
            query: query.into(),
            ..MetricSpec::default()
        }),
    };
    let mut compiler = IncrementalCompiler::new(CompileOptions::default());
    let cluster = metric(ClusterServiceMetric, None, "latency", good);
    let other = metric(ClusterPodMetric, None, "workers", good);
    compiler.apply([
        Change::Upsert(Arc::new(cluster.clone())),
        Change::Upsert(Arc::new(other)),
    ]);
    let before = compiler.table();

    // A namespaced override changes its own verdict and the cluster one's (overriddenIn).
    let team = metric(ServiceMetric, Some("team-a"), "latency", good);
    let delta = compiler.upsert(team.clone());
    assert_eq!(
        delta.changed,
        BTreeSet::from([team.id.clone(), cluster.id.clone()])
    );
    assert!(delta.table_changed && !delta.rules_changed);
    assert_eq!(
        compiler.verdict(&cluster.id).unwrap().overridden_in,
        vec!["team-a".to_string()]
    );
    // The untouched group is shared with the earlier snapshot, not copied.
    let after = compiler.table();
    assert!(std::ptr::eq(
        before.group(ObjectKind::Pod, "workers").unwrap(),
        after.group(ObjectKind::Pod, "workers").unwrap()
    ));

    // The same definition again is no change at all.
    assert!(compiler.upsert(team.clone()).is_empty());
    // A broken edit: the definition loses its slot, the cluster one its override.
    let delta = compiler.upsert(metric(ServiceMetric, Some("team-a"), "latency", "sum(a)"));
    assert_eq!(delta.changed, BTreeSet::from([team.id.clone(), cluster.id]));
    assert_eq!(
        compiler
            .verdict(&team.id)
            .unwrap()
            .problem
            .as_ref()
            .unwrap()
            .reason,
        Reason::MissingPlaceholder
    );
    let delta = compiler.remove(&team.id);
    assert_eq!(delta.changed, BTreeSet::from([team.id.clone()]));
    assert!(!delta.table_changed);
    assert!(compiler.verdict(&team.id).is_none());
}
