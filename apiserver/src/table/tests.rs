use super::*;

fn rule(object: ObjectKind, metric: &str, source: &str) -> MetricRule {
    MetricRule {
        object,
        metric: metric.into(),
        template: QueryTemplate::new(vec![Segment::Literal("up".into())]),
        object_label: object.default_label().into(),
        namespace_label: "namespace".into(),
        window_seconds: None,
        separable: true,
        backend: "default".into(),
        bounds: Default::default(),
        source: source.into(),
    }
}

/// A table of one group of `rule`s (the compiler decides which rule a slot gets).
fn table_of(object: ObjectKind, metric: &str, rules: Vec<(Scope, MetricRule)>) -> RuleTable {
    let mut group = MetricGroup::default();
    for (scope, rule) in rules {
        match scope {
            Scope::Cluster => group.cluster = Some(Arc::new(rule)),
            Scope::Namespace(namespace) => {
                group.namespaced.insert(namespace, Arc::new(rule));
            }
        }
    }
    let mut table = RuleTable::default();
    table.set_group(object, metric, group);
    table
}

#[test]
fn namespaced_definition_wins_only_in_its_namespace() {
    let table = table_of(
        ObjectKind::Service,
        "latency",
        vec![
            (
                Scope::Cluster,
                rule(ObjectKind::Service, "latency", "cluster"),
            ),
            (
                Scope::Namespace("team-a".into()),
                rule(ObjectKind::Service, "latency", "team-a"),
            ),
        ],
    );
    assert_eq!(
        table
            .lookup(ObjectKind::Service, "latency", "team-a")
            .unwrap()
            .source,
        "team-a"
    );
    assert_eq!(
        table
            .lookup(ObjectKind::Service, "latency", "team-b")
            .unwrap()
            .source,
        "cluster"
    );
    assert!(table.lookup(ObjectKind::Pod, "latency", "team-a").is_none());
    assert!(
        table
            .lookup(ObjectKind::Service, "other", "team-a")
            .is_none()
    );
    assert_eq!(table.discovery().count(), 1);
    assert_eq!(table.len(), 2);
}

#[test]
fn namespaced_only_metric_is_absent_elsewhere() {
    let table = table_of(
        ObjectKind::Pod,
        "workers",
        vec![(
            Scope::Namespace("a".into()),
            rule(ObjectKind::Pod, "workers", "a"),
        )],
    );
    assert!(table.lookup(ObjectKind::Pod, "workers", "a").is_some());
    assert!(table.lookup(ObjectKind::Pod, "workers", "b").is_none());
    assert_eq!(
        table.namespaces_defining(ObjectKind::Pod, "workers"),
        vec!["a".to_string()]
    );
}

#[test]
fn resources_resolve_in_every_spelling() {
    for kind in ObjectKind::ALL {
        assert_eq!(ObjectKind::from_resource(kind.resource()), Some(kind));
        assert_eq!(ObjectKind::from_resource(kind.default_label()), Some(kind));
        assert_eq!(ObjectKind::from_resource(kind.kind()), Some(kind));
    }
    assert_eq!(
        ObjectKind::from_resource("deployments"),
        Some(ObjectKind::Deployment)
    );
    assert_eq!(ObjectKind::from_resource("jobs.batch"), None);
}

#[test]
fn template_renders_by_concatenation() {
    let template = QueryTemplate::new(vec![
        Segment::Literal("sum(x{".into()),
        Segment::LabelMatchers,
        Segment::Literal("}) by (".into()),
        Segment::GroupBy,
        Segment::Literal(")".into()),
    ]);
    assert_eq!(
        template.render(r#"namespace="a",pod="b""#, "pod"),
        r#"sum(x{namespace="a",pod="b"}) by (pod)"#
    );
}
