use super::*;
use metrics_registry_apiserver::table::{QueryTemplate, Segment};

fn rule(object: ObjectKind, object_label: &str, namespace_label: &str) -> MetricRule {
    MetricRule {
        object,
        metric: "m".into(),
        template: QueryTemplate::new(vec![
            Segment::Literal("sum(x{".into()),
            Segment::LabelMatchers,
            Segment::Literal("}) by (".into()),
            Segment::GroupBy,
            Segment::Literal(")".into()),
        ]),
        object_label: object_label.into(),
        namespace_label: namespace_label.into(),
        window_seconds: None,
        separable: true,
        backend: "default".into(),
        bounds: Default::default(),
        source: "test".into(),
    }
}

/// Labels sorted by name, as Prometheus sends them.
fn sample(labels: &[(&str, &str)], value: &str) -> Sample {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    Sample {
        labels: labels.into_iter().collect(),
        timestamp: 1.0,
        value: value.into(),
    }
}

#[test]
fn sample_requests_ask_for_every_object() {
    let service = rule(
        ObjectKind::Service,
        "exported_service",
        "exported_namespace",
    );
    assert_eq!(
        sample_query(&service, Some("kong")),
        r#"sum(x{exported_namespace="kong",exported_service!=""}) by (exported_service)"#
    );
    assert_eq!(
        sample_query(&service, None),
        r#"sum(x{exported_namespace!="",exported_service!=""}) by (exported_service,exported_namespace)"#
    );
    let namespace = rule(ObjectKind::Namespace, "namespace", "namespace");
    assert_eq!(
        sample_query(&namespace, Some("team")),
        r#"sum(x{namespace="team"}) by (namespace)"#
    );
    // The namespace given on the command line is escaped like a request's.
    assert_eq!(
        sample_query(&service, Some(r#"a"}"#)),
        r#"sum(x{exported_namespace="a\"}",exported_service!=""}) by (exported_service)"#
    );
}

#[test]
fn values_are_shown_as_served() {
    let service = rule(ObjectKind::Service, "service", "namespace");
    let samples = vec![
        sample(&[("service", "a"), ("namespace", "n")], "102.312"),
        sample(&[("service", "b"), ("namespace", "n")], "NaN"),
        sample(&[("namespace", "n")], "1"),
    ];
    let Outcome::Data { lines, remarks } = metric_outcome(&service, None, &samples, 20) else {
        panic!()
    };
    assert_eq!(lines[0], "n/a: 102312m");
    assert!(lines[1].starts_with("n/b: not served ("), "{}", lines[1]);
    assert_eq!(
        remarks,
        vec!["1 series without a service label are not served: group the query by (<<.GroupBy>>)"]
    );
    let only_nan = &samples[1..2];
    assert!(matches!(
        metric_outcome(&service, Some("n"), only_nan, 20),
        Outcome::NoData(why) if why.contains("none of them servable")
    ));
    assert!(matches!(
        metric_outcome(&service, Some("n"), &[], 20),
        Outcome::NoData(_)
    ));
}

#[test]
fn long_answers_are_cut() {
    let pod = rule(ObjectKind::Pod, "pod", "namespace");
    let samples: Vec<Sample> = (0..25)
        .map(|i| sample(&[("pod", &format!("p{i:02}"))], "1"))
        .collect();
    let Outcome::Data { lines, remarks } = metric_outcome(&pod, Some("n"), &samples, 20) else {
        panic!()
    };
    assert_eq!(lines.len(), 20);
    assert_eq!(remarks, vec!["… and 5 more"]);
}

#[test]
fn namespaced_external_series_need_a_namespace() {
    let samples = vec![
        sample(&[("queue", "q"), ("namespace", "a")], "3"),
        sample(&[("queue", "r")], "4"),
    ];
    let Outcome::Data { lines, remarks } = external_outcome(ExternalScope::Namespace, &samples, 20)
    else {
        panic!()
    };
    assert_eq!(
        lines,
        vec![r#"{namespace="a",queue="q"}: 3"#, r#"{queue="r"}: 4"#]
    );
    assert_eq!(remarks.len(), 1, "{remarks:?}");
    for scope in [ExternalScope::NamespaceOrUnlabelled, ExternalScope::Cluster] {
        let Outcome::Data { remarks, .. } = external_outcome(scope, &samples, 20) else {
            panic!()
        };
        assert!(remarks.is_empty());
    }
}
