use super::custom::*;
use super::values::*;
use crate::prometheus::Sample;
use crate::render::{MAX_REGEX_OBJECTS, ObjectSelection};
use crate::table::{ObjectKind, RuleTable};

#[test]
fn paths_map_to_targets() {
    assert_eq!(
        parse_custom_path("namespaces/default/services/echo/latency").unwrap(),
        Target::Namespaced {
            kind: ObjectKind::Service,
            namespace: "default",
            name: "echo",
            metric: "latency"
        }
    );
    assert_eq!(
        parse_custom_path("namespaces/a/deployments.apps/*/m").unwrap(),
        Target::Namespaced {
            kind: ObjectKind::Deployment,
            namespace: "a",
            name: "*",
            metric: "m"
        }
    );
    assert_eq!(
        parse_custom_path("namespaces/a/metrics/m").unwrap(),
        Target::NamespaceObject {
            namespace: "a",
            metric: "m"
        }
    );
    assert_eq!(
        parse_custom_path("namespaces/a/m").unwrap(),
        Target::NamespaceObject {
            namespace: "a",
            metric: "m"
        }
    );
    assert_eq!(parse_custom_path("pods/x/m").unwrap_err().code, 404);
    assert_eq!(
        parse_custom_path("namespaces/a/pods/b").unwrap_err().code,
        404
    );
    assert_eq!(
        parse_custom_path("namespaces/a/jobs.batch/b/m")
            .unwrap_err()
            .code,
        404
    );
    assert_eq!(
        parse_custom_path("namespaces//pods/b/m").unwrap_err().code,
        404
    );
    assert_eq!(parse_custom_path("blah").unwrap_err().code, 404);
}

#[test]
fn many_objects_never_become_a_long_regex() {
    let names = |n: usize| (0..n).map(|i| format!("pod-{i}")).collect::<Vec<_>>();
    assert!(matches!(
        ObjectSelection::of(Some(&names(1))),
        ObjectSelection::One("pod-0")
    ));
    assert!(matches!(
        ObjectSelection::of(Some(&names(MAX_REGEX_OBJECTS))),
        ObjectSelection::Many(_)
    ));
    assert!(matches!(
        ObjectSelection::of(Some(&names(MAX_REGEX_OBJECTS + 1))),
        ObjectSelection::All
    ));
    assert!(matches!(ObjectSelection::of(None), ObjectSelection::All));
}

#[test]
fn a_metric_of_another_namespace_is_not_revealed() {
    use crate::table::{MetricGroup, MetricRule, QueryTemplate, Segment};
    let rule = MetricRule {
        object: ObjectKind::Service,
        metric: "secret_sauce".into(),
        template: QueryTemplate::new(vec![Segment::Literal("x".into())]),
        object_label: "service".into(),
        namespace_label: "namespace".into(),
        window_seconds: None,
        separable: true,
        backend: "default".into(),
        bounds: Default::default(),
        source: "ServiceMetric tenant-b/secret-sauce".into(),
    };
    let mut table = RuleTable::default();
    table.set_group(
        ObjectKind::Service,
        "secret_sauce",
        MetricGroup {
            cluster: None,
            namespaced: [("tenant-b".to_string(), std::sync::Arc::new(rule))].into(),
        },
    );
    let defined_elsewhere = lookup(&table, ObjectKind::Service, "secret_sauce", "tenant-a")
        .unwrap_err()
        .message;
    let defined_nowhere = lookup(&table, ObjectKind::Service, "nothing_here", "tenant-a")
        .unwrap_err()
        .message;
    assert!(
        !defined_elsewhere.contains("tenant-b"),
        "{defined_elsewhere}"
    );
    assert_eq!(
        defined_elsewhere.replace("secret_sauce", "nothing_here"),
        defined_nowhere
    );
    assert!(
        defined_nowhere.contains("in namespace tenant-a"),
        "{defined_nowhere}"
    );
    assert!(lookup(&table, ObjectKind::Service, "secret_sauce", "tenant-b").is_ok());
}

fn sample(labels: &[(&str, &str)], value: &str) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timestamp: 1.0,
        value: value.into(),
    }
}

#[test]
fn single_object_sample_is_found_by_label_or_alone() {
    let samples = vec![
        sample(&[("service", "a")], "1"),
        sample(&[("service", "b")], "2"),
    ];
    assert_eq!(
        pick_sample(&samples, "service", "b", "q").unwrap().value,
        "2"
    );
    let err = pick_sample(&samples, "service", "c", "q").unwrap_err();
    assert_eq!(err.code, 404);
    assert!(err.message.contains("2 series"), "{}", err.message);
    let unlabelled = vec![sample(&[], "5")];
    assert_eq!(
        pick_sample(&unlabelled, "service", "c", "q").unwrap().value,
        "5"
    );
    assert!(
        pick_sample(&[], "service", "c", "q")
            .unwrap_err()
            .message
            .contains("no data")
    );
}
