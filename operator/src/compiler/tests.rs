use super::*;
use crate::definitions::DefinitionBody;
use crate::definitions::{DefinitionId, DefinitionKind};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_crds::{CustomPrometheusRulesSpec, ExternalSpec, Rule};

fn metric(kind: DefinitionKind, namespace: Option<&str>, name: &str, query: &str) -> Definition {
    Definition {
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
    }
}

fn with_spec(mut definition: Definition, edit: impl FnOnce(&mut MetricSpec)) -> Definition {
    if let DefinitionBody::Metric(spec) = &mut definition.body {
        edit(spec);
    }
    definition
}

const GOOD: &str = "sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)";

fn problem(
    compiled: &CompiledSnapshot,
    kind: DefinitionKind,
    namespace: Option<&str>,
    name: &str,
) -> Option<Problem> {
    let id = DefinitionId {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.into(),
    };
    compiled
        .verdicts
        .get(&id)
        .expect("verdict for every definition")
        .problem
        .clone()
}

fn render(
    compiled: &CompiledSnapshot,
    object: ObjectKind,
    metric: &str,
    namespace: &str,
) -> Option<String> {
    compiled
        .table
        .lookup(object, metric, namespace)
        .map(|rule| {
            rule.template.render(
                &format!("namespace=\"{namespace}\",service=\"s\""),
                &rule.object_label,
            )
        })
}

#[test]
fn namespaced_definition_overrides_cluster_only_in_its_namespace() {
    use DefinitionKind::*;
    let compiled = compile(
        &[
            metric(
                ClusterServiceMetric,
                None,
                "latency",
                "cluster_q{<<.LabelMatchers>>}",
            ),
            metric(
                ServiceMetric,
                Some("team-a"),
                "latency",
                "team_q{<<.LabelMatchers>>}",
            ),
        ],
        CompileOptions::default(),
    );
    assert!(
        render(&compiled, ObjectKind::Service, "latency", "team-a")
            .unwrap()
            .starts_with("team_q")
    );
    assert!(
        render(&compiled, ObjectKind::Service, "latency", "team-b")
            .unwrap()
            .starts_with("cluster_q")
    );
    let cluster = &compiled.verdicts[&DefinitionId {
        kind: ClusterServiceMetric,
        namespace: None,
        name: "latency".into(),
    }];
    assert!(cluster.is_ready());
    assert_eq!(cluster.overridden_in, vec!["team-a".to_string()]);
}

#[test]
fn kinds_never_collide() {
    use DefinitionKind::*;
    let compiled = compile(
        &[
            metric(ClusterServiceMetric, None, "m", GOOD),
            metric(ClusterPodMetric, None, "m", GOOD),
        ],
        CompileOptions::default(),
    );
    assert_eq!(compiled.not_ready().count(), 0);
    assert!(compiled.table.lookup(ObjectKind::Pod, "m", "x").is_some());
    assert!(
        compiled
            .table
            .lookup(ObjectKind::Service, "m", "x")
            .is_some()
    );
}

#[test]
fn metric_name_overrides_object_name_and_conflicts_go_to_the_younger() {
    use DefinitionKind::*;
    let mut older = with_spec(metric(ClusterServiceMetric, None, "b-old", GOOD), |s| {
        s.metric_name = Some("shared".into())
    });
    older.created = Some("2024-01-01T00:00:00Z".into());
    let mut younger = with_spec(metric(ClusterServiceMetric, None, "a-new", GOOD), |s| {
        s.metric_name = Some("shared".into())
    });
    younger.created = Some("2025-01-01T00:00:00Z".into());
    let compiled = compile(&[younger, older], CompileOptions::default());
    assert_eq!(
        problem(&compiled, ClusterServiceMetric, None, "b-old"),
        None
    );
    let conflict = problem(&compiled, ClusterServiceMetric, None, "a-new").unwrap();
    assert_eq!(conflict.reason, Reason::Conflict);
    assert!(
        conflict.message.contains("ClusterServiceMetric b-old"),
        "{}",
        conflict.message
    );
    assert_eq!(
        compiled
            .table
            .lookup(ObjectKind::Service, "shared", "x")
            .unwrap()
            .source,
        "ClusterServiceMetric b-old"
    );
}

#[test]
fn each_error_reason() {
    use DefinitionKind::*;
    let cases: Vec<(Definition, Reason)> = vec![
        (
            metric(ClusterPodMetric, None, "a", "x{<<.Series>>}"),
            Reason::UnknownPlaceholder,
        ),
        (
            metric(ClusterPodMetric, None, "b", "sum(x)"),
            Reason::MissingPlaceholder,
        ),
        (
            metric(ClusterPodMetric, None, "c", "sum(x{<<.LabelMatchers>>}"),
            Reason::InvalidQuery,
        ),
        (
            metric(ClusterPodMetric, None, "d", "x{<<.LabelMatchers>>} +"),
            Reason::InvalidQuery,
        ),
        (
            metric(
                PodMetric,
                Some("team-a"),
                "e",
                r#"x{<<.LabelMatchers>>} / y{namespace="kube-system"}"#,
            ),
            Reason::NamespaceEscape,
        ),
        (
            with_spec(metric(ClusterPodMetric, None, "f", GOOD), |s| {
                s.metric_name = Some("bad/name".into())
            }),
            Reason::InvalidMetricName,
        ),
        (
            with_spec(metric(ClusterPodMetric, None, "g", GOOD), |s| {
                s.object_label = Some("app.kubernetes.io/name".into())
            }),
            Reason::InvalidLabel,
        ),
        (
            with_spec(metric(ClusterPodMetric, None, "h", GOOD), |s| {
                s.window_seconds = Some(0)
            }),
            Reason::InvalidWindow,
        ),
    ];
    let definitions: Vec<Definition> = cases.iter().map(|(d, _)| d.clone()).collect();
    let mut all = definitions.clone();
    all.push(metric(ClusterPodMetric, None, "fine", GOOD));
    let compiled = compile(&all, CompileOptions::default());
    for (definition, reason) in &cases {
        let verdict = &compiled.verdicts[&definition.id];
        let problem = verdict
            .problem
            .as_ref()
            .unwrap_or_else(|| panic!("{} should fail", definition.id));
        assert_eq!(
            problem.reason, *reason,
            "{}: {}",
            definition.id, problem.message
        );
        assert!(!problem.message.is_empty());
    }
    // The bad ones never stop the good one.
    assert!(
        compiled
            .table
            .lookup(ObjectKind::Pod, "fine", "any")
            .is_some()
    );
    assert_eq!(compiled.table.len(), 1);
}

#[test]
fn invalid_query_carries_the_parser_message() {
    let compiled = compile(
        &[metric(
            DefinitionKind::ClusterPodMetric,
            None,
            "c",
            "sum(rate(x{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>",
        )],
        CompileOptions::default(),
    );
    let problem = problem(&compiled, DefinitionKind::ClusterPodMetric, None, "c").unwrap();
    assert_eq!(problem.reason, Reason::InvalidQuery);
    assert!(
        problem.message.contains("in sum(rate(x{namespace="),
        "{}",
        problem.message
    );
}

#[test]
fn namespaced_queries_are_pinned_and_isolation_can_be_turned_off() {
    use DefinitionKind::*;
    let definitions = [metric(
        ServiceMetric,
        Some("team-a"),
        "m",
        "sum(x{<<.LabelMatchers>>}) / sum(total)",
    )];
    let compiled = compile(&definitions, CompileOptions::default());
    let rendered = render(&compiled, ObjectKind::Service, "m", "team-a").unwrap();
    assert!(
        rendered.contains(r#"total{namespace="team-a"}"#),
        "{rendered}"
    );
    let open = compile(
        &definitions,
        CompileOptions {
            namespace_isolation: false,
            ..CompileOptions::default()
        },
    );
    let rendered = render(&open, ObjectKind::Service, "m", "team-a").unwrap();
    assert!(rendered.ends_with("sum(total)"), "{rendered}");

    let escape = [metric(
        ServiceMetric,
        Some("team-a"),
        "m",
        r#"x{<<.LabelMatchers>>} + y{namespace="b"}"#,
    )];
    assert!(
        compile(
            &escape,
            CompileOptions {
                namespace_isolation: false,
                ..CompileOptions::default()
            }
        )
        .verdicts
        .values()
        .all(Verdict::is_ready)
    );
    // Cluster kinds are trusted with any namespace.
    let cluster = [metric(
        ClusterServiceMetric,
        None,
        "m",
        r#"x{<<.LabelMatchers>>} + y{namespace="b"}"#,
    )];
    assert!(
        compile(&cluster, CompileOptions::default())
            .verdicts
            .values()
            .all(Verdict::is_ready)
    );
}

#[test]
fn namespace_metric_is_scoped_to_its_namespace() {
    let compiled = compile(
        &[metric(
            DefinitionKind::NamespaceMetric,
            Some("team-a"),
            "queue",
            "sum(q{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        )],
        CompileOptions::default(),
    );
    assert!(
        compiled
            .table
            .lookup(ObjectKind::Namespace, "queue", "team-a")
            .is_some()
    );
    assert!(
        compiled
            .table
            .lookup(ObjectKind::Namespace, "queue", "team-b")
            .is_none()
    );
    assert_eq!(
        compiled.table.discovery().collect::<Vec<_>>(),
        vec![(ObjectKind::Namespace, "queue")]
    );
}

#[test]
fn same_snapshot_same_table_in_any_order() {
    use DefinitionKind::*;
    let a = with_spec(metric(ClusterServiceMetric, None, "a", GOOD), |s| {
        s.metric_name = Some("m".into())
    });
    let b = with_spec(
        metric(ClusterServiceMetric, None, "b", "other{<<.LabelMatchers>>}"),
        |s| s.metric_name = Some("m".into()),
    );
    let one = compile(&[a.clone(), b.clone()], CompileOptions::default());
    let two = compile(&[b, a], CompileOptions::default());
    assert_eq!(one.table, two.table);
    assert_eq!(one.verdicts, two.verdicts);
}

fn rules(name: &str, rules: Vec<Rule>) -> Definition {
    Definition {
        id: DefinitionId {
            kind: DefinitionKind::CustomPrometheusRules,
            namespace: None,
            name: name.into(),
        },
        generation: None,
        created: None,
        body: DefinitionBody::Rules(CustomPrometheusRulesSpec {
            groups: vec![RuleGroup {
                name: "g".into(),
                interval: Some("30s".into()),
                rules,
            }],
            external_metrics_namespaced: None,
        }),
    }
}

fn record(record: &str, expr: &str) -> Rule {
    Rule {
        record: Some(record.into()),
        expr: IntOrString::String(expr.into()),
        ..Rule::default()
    }
}

#[test]
fn recording_rules_declare_external_metrics() {
    let compiled = compile(
        &[
            rules(
                "sqs",
                vec![record(
                    "kube_adapter_metric_sqs_messages_visible",
                    "sum(sqs_messages_visible) by (queue)",
                )],
            ),
            rules("bad", vec![record("kube_adapter_metric_x", "sum(")]),
            rules(
                "both",
                vec![Rule {
                    alert: Some("A".into()),
                    ..record("r", "up")
                }],
            ),
        ],
        CompileOptions::default(),
    );
    let sqs = &compiled.verdicts[&DefinitionId {
        kind: DefinitionKind::CustomPrometheusRules,
        namespace: None,
        name: "sqs".into(),
    }];
    assert_eq!(
        sqs.external_metrics,
        vec!["sqs_messages_visible".to_string()]
    );
    assert!(
        compiled
            .table
            .external_metrics()
            .contains("sqs_messages_visible")
    );
    assert!(!compiled.table.external_metrics().contains("x"));
    let bad = problem(
        &compiled,
        DefinitionKind::CustomPrometheusRules,
        None,
        "bad",
    )
    .unwrap();
    assert_eq!(bad.reason, Reason::InvalidRule);
    assert!(
        bad.message.contains("rule 1: invalid expr"),
        "{}",
        bad.message
    );
    let both = problem(
        &compiled,
        DefinitionKind::CustomPrometheusRules,
        None,
        "both",
    )
    .unwrap();
    assert!(
        both.message.contains("exactly one of record and alert"),
        "{}",
        both.message
    );
    assert_eq!(compiled.rule_groups.len(), 1);
}

#[test]
fn external_metrics_are_namespaced_by_their_rules_else_by_the_flag() {
    let pinned_by = |name: &str, namespaced: Option<bool>, metric: &str| {
        let mut definition = rules(
            name,
            vec![record(&format!("kube_adapter_metric_{metric}"), "sum(x)")],
        );
        if let DefinitionBody::Rules(spec) = &mut definition.body {
            spec.external_metrics_namespaced = namespaced;
        }
        definition
    };
    let definitions = [
        pinned_by("pinned", Some(true), "pinned"),
        pinned_by("open", Some(false), "open"),
        pinned_by("inherits", None, "inherits"),
        // Two objects recording one metric disagree: pinning wins.
        pinned_by("shared-open", Some(false), "shared"),
        pinned_by("shared-pinned", Some(true), "shared"),
    ];
    for flag in [
        ExternalScope::Namespace,
        ExternalScope::NamespaceOrUnlabelled,
        ExternalScope::Cluster,
    ] {
        let options = CompileOptions {
            external_scope: flag,
            ..CompileOptions::default()
        };
        let table = compile(&definitions, options).table;
        let scope = |metric| table.external_scope(metric);
        assert_eq!(scope("pinned"), ExternalScope::Namespace, "flag {flag:?}");
        assert_eq!(scope("open"), ExternalScope::Cluster, "flag {flag:?}");
        assert_eq!(scope("shared"), ExternalScope::Namespace, "flag {flag:?}");
        assert_eq!(scope("inherits"), flag);
        // A series no definition records follows the flag.
        assert_eq!(scope("only_in_prometheus"), flag);
    }
    // An invalid object decides nothing.
    let mut invalid = pinned_by("invalid", Some(true), "broken");
    if let DefinitionBody::Rules(spec) = &mut invalid.body {
        spec.groups[0].rules[0].expr = IntOrString::String("sum(".into());
    }
    let table = compile(&[invalid], CompileOptions::default()).table;
    assert_eq!(
        table.external_scope("broken"),
        ExternalScope::NamespaceOrUnlabelled
    );
}

fn external(kind: DefinitionKind, namespace: Option<&str>, name: &str, query: &str) -> Definition {
    Definition {
        id: DefinitionId {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.into(),
        },
        generation: Some(1),
        created: None,
        body: DefinitionBody::External(ExternalSpec {
            query: query.into(),
            metric_name: Some("queue_depth".into()),
            namespace_label: None,
            backend: None,
            timeout: None,
            max_age: None,
        }),
    }
}

fn with_namespace_label(mut definition: Definition, label: &str) -> Definition {
    if let DefinitionBody::External(spec) = &mut definition.body {
        spec.namespace_label = Some(label.into());
    }
    definition
}

#[test]
fn external_metrics_from_live_queries_are_pinned_and_take_precedence_by_namespace() {
    let query = "sum by (queue) (rabbitmq_queue_messages{<<.LabelMatchers>>})";
    let compiled = compile(
        &[
            external(DefinitionKind::ExternalMetric, Some("team-a"), "q", query),
            external(DefinitionKind::ClusterExternalMetric, None, "q", query),
        ],
        CompileOptions::default(),
    );
    assert_eq!(compiled.not_ready().count(), 0);
    let selector = vec![r#"queue="orders""#.to_string()];
    let team_a = compiled
        .table
        .external_rule("queue_depth", "team-a")
        .unwrap();
    assert_eq!(team_a.source, "ExternalMetric team-a/q");
    let rendered = team_a.query(&selector, "team-a");
    assert!(
        rendered.contains(r#"namespace="team-a""#) && rendered.contains(r#"queue="orders""#),
        "{rendered}"
    );
    // Other namespaces get the cluster definition, unpinned.
    let other = compiled
        .table
        .external_rule("queue_depth", "team-b")
        .unwrap();
    assert_eq!(other.source, "ClusterExternalMetric q");
    assert_eq!(
        other.query(&selector, "team-b"),
        r#"sum by (queue) (rabbitmq_queue_messages{queue="orders"})"#
    );
    // Without a selector the query is still valid PromQL.
    assert!(
        promql::parse(&other.query(&[], "team-b")).is_ok(),
        "{}",
        other.query(&[], "team-b")
    );
    assert!(
        promql::parse(&team_a.query(&[], "team-a")).is_ok(),
        "{}",
        team_a.query(&[], "team-a")
    );
    let cluster =
        &compiled.verdicts[&external(DefinitionKind::ClusterExternalMetric, None, "q", query).id];
    assert_eq!(cluster.overridden_in, vec!["team-a".to_string()]);
    // With a namespaceLabel, one cluster definition answers each namespace from its own
    // series: the request's namespace joins the selector, escaped.
    let per_namespace = compile(
        &[with_namespace_label(
            external(DefinitionKind::ClusterExternalMetric, None, "q", query),
            "exported_namespace",
        )],
        CompileOptions::default(),
    );
    let rule = per_namespace
        .table
        .external_rule("queue_depth", "x")
        .unwrap();
    assert_eq!(
        rule.query(&selector, "team-\"b"),
        r#"sum by (queue) (rabbitmq_queue_messages{queue="orders",exported_namespace="team-\"b"})"#
    );
    assert_eq!(
        rule.query(&[], "team-b"),
        r#"sum by (queue) (rabbitmq_queue_messages{exported_namespace="team-b"})"#
    );
    let bad_label = compile(
        &[with_namespace_label(
            external(DefinitionKind::ClusterExternalMetric, None, "q", query),
            "not a label",
        )],
        CompileOptions::default(),
    );
    assert_eq!(
        bad_label.not_ready().next().map(|(_, p)| p.reason),
        Some(Reason::InvalidLabel)
    );
    // External names live apart from object metrics: no Conflict with a ServiceMetric.
    assert!(
        compiled
            .table
            .lookup(ObjectKind::Service, "queue_depth", "team-a")
            .is_none()
    );
}

#[test]
fn external_metrics_refuse_what_they_cannot_serve() {
    let reason = |kind, namespace, query: &str| {
        let compiled = compile(
            &[external(kind, namespace, "q", query)],
            CompileOptions::default(),
        );
        compiled
            .not_ready()
            .next()
            .map(|(_, p)| (p.reason, p.message.clone()))
    };
    let (why, message) = reason(
        DefinitionKind::ExternalMetric,
        Some("team-a"),
        r#"sum(q{namespace="team-b",<<.LabelMatchers>>})"#,
    )
    .unwrap();
    assert_eq!(why, Reason::NamespaceEscape, "{message}");
    let (why, message) = reason(
        DefinitionKind::ClusterExternalMetric,
        None,
        "sum(q{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    )
    .unwrap();
    assert_eq!(why, Reason::UnknownPlaceholder);
    assert!(message.contains("no object to group by"), "{message}");
    let (why, _) = reason(
        DefinitionKind::ClusterExternalMetric,
        None,
        "sum(q{<<.LabelMatchers>>}",
    )
    .unwrap();
    assert_eq!(why, Reason::InvalidQuery);
    // A selector placeholder that alone makes the selector: fine with a selector, but no
    // valid PromQL without one — refused up front, not at the first request.
    let (why, message) = reason(
        DefinitionKind::ClusterExternalMetric,
        None,
        "sum({<<.LabelMatchers>>})",
    )
    .unwrap();
    assert_eq!(why, Reason::InvalidQuery, "{message}");
    // The cluster kind may read every namespace; a query without the placeholder is fine.
    assert_eq!(
        reason(
            DefinitionKind::ClusterExternalMetric,
            None,
            r#"sum(q{namespace="x"})"#
        ),
        None
    );
    // Two of the same name in one namespace: the older is served.
    let compiled = compile(
        &[
            external(DefinitionKind::ExternalMetric, Some("a"), "one", "q"),
            external(DefinitionKind::ExternalMetric, Some("a"), "two", "q"),
        ],
        CompileOptions::default(),
    );
    let problems: Vec<_> = compiled.not_ready().collect();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].1.reason, Reason::Conflict);
    assert!(
        problems[0]
            .1
            .message
            .contains("external metric \"queue_depth\" is already defined by ExternalMetric a/one"),
        "{}",
        problems[0].1.message
    );
}

#[test]
fn timeout_and_max_age_are_durations_carried_to_the_rule() {
    let bounded = with_spec(
        metric(DefinitionKind::ServiceMetric, Some("a"), "ok", GOOD),
        |spec| {
            spec.timeout = Some("1500ms".into());
            spec.max_age = Some("1m".into());
        },
    );
    let bad_timeout = with_spec(
        metric(DefinitionKind::ServiceMetric, Some("a"), "slow", GOOD),
        |spec| spec.timeout = Some("2 seconds".into()),
    );
    let bad_age = with_spec(
        metric(DefinitionKind::ServiceMetric, Some("a"), "old", GOOD),
        |spec| spec.max_age = Some("0s".into()),
    );
    let compiled = compile(&[bounded, bad_timeout, bad_age], CompileOptions::default());
    let rule = compiled
        .table
        .lookup(ObjectKind::Service, "ok", "a")
        .expect("served");
    assert_eq!(
        rule.bounds,
        QueryBounds {
            timeout: Some(std::time::Duration::from_millis(1500)),
            max_age: Some(std::time::Duration::from_secs(60)),
        }
    );
    for (name, field) in [("slow", "timeout \"2 seconds\""), ("old", "maxAge \"0s\"")] {
        let problem = problem(&compiled, DefinitionKind::ServiceMetric, Some("a"), name).unwrap();
        assert_eq!(problem.reason, Reason::InvalidDuration);
        assert!(problem.message.starts_with(field), "{}", problem.message);
    }
}
