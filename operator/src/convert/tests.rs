use super::discovery::Series;
use super::*;
use crate::definitions::DefinitionKind;
use serde_json::json;
use std::collections::BTreeMap;

fn cluster() -> Options {
    Options {
        scope: Scope::Cluster,
        namespaces: vec![],
        external_rules_as: ExternalRulesAs::LiveQueries,
    }
}

/// `--external-rules-as recording-rules`.
fn recorded() -> Options {
    Options {
        external_rules_as: ExternalRulesAs::RecordingRules,
        ..cluster()
    }
}

fn run(yaml: &str, discovery: Discovery<'_>, options: &Options) -> Conversion {
    let (config, source) = config::parse(yaml).expect("valid configuration");
    convert(&config, &source, discovery, options)
}

fn series(name: &str, labels: &[&str]) -> Series {
    Series {
        name: name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    }
}

fn notes(conversion: &Conversion) -> String {
    conversion
        .notes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn kinds(conversion: &Conversion) -> Vec<(DefinitionKind, Option<&str>, &str)> {
    conversion
        .documents
        .iter()
        .map(|d| (d.kind, d.namespace.as_deref(), d.name.as_str()))
        .collect()
}

const TEMPLATE_RULE: &str = r#"
rules:
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total", as: ""}
  metricsQuery: sum by (<<.GroupBy>>) (irate(<<.Series>>{<<.LabelMatchers>>}[1m]))
"#;

#[test]
fn listed_series_become_one_definition_per_metric_and_resource() {
    let listed = BTreeMap::from([(
        r#"{namespace!="",__name__!~"^container_.*"}"#.to_string(),
        vec![
            series(
                "http_requests_total",
                &["namespace", "pod", "job", "instance"],
            ),
            series("queue_length", &["namespace", "service"]),
            series("jobs_done_total", &["namespace", "deployment"]),
        ],
    )]);
    let conversion = run(TEMPLATE_RULE, Discovery::Listed(&listed), &cluster());
    assert_eq!(
        kinds(&conversion),
        vec![
            (DefinitionKind::ClusterPodMetric, None, "http-requests"),
            (DefinitionKind::ClusterDeploymentMetric, None, "jobs-done"),
        ]
    );
    let pod = conversion.documents[0].object();
    assert_eq!(
        pod["spec"]["query"],
        "sum by (<<.GroupBy>>) (irate(http_requests_total{<<.LabelMatchers>>}[1m]))"
    );
    assert_eq!(pod["spec"]["metricName"], "http_requests");
    assert!(pod["spec"].get("objectLabel").is_none());
    let notes = notes(&conversion);
    assert!(
        notes.contains(
            "rules[0]: not converted: the adapter also serves these metrics on jobs.batch"
        ),
        "{notes}"
    );
    assert!(
        notes.contains(
            "namespaces/http_requests: metrics-registry has no cluster-wide NamespaceMetric"
        ),
        "{notes}"
    );
    assert!(!notes.contains("assumed"), "{notes}");
}

#[test]
fn namespaced_scope_writes_into_each_namespace() {
    let options = Options {
        scope: Scope::Namespaced,
        namespaces: vec!["a".into(), "b".into()],
        ..cluster()
    };
    let conversion = run(
        r#"
rules:
- seriesQuery: 'nginx_http_requests_total{namespace!="", pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: '^(.*)_total', as: '${1}_per_second'}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#,
        Discovery::Assumed,
        &options,
    );
    let placed: Vec<_> = kinds(&conversion)
        .into_iter()
        .map(|(kind, ns, _)| (kind, ns))
        .collect();
    assert_eq!(
        placed,
        vec![
            (DefinitionKind::NamespaceMetric, Some("a")),
            (DefinitionKind::NamespaceMetric, Some("b")),
            (DefinitionKind::PodMetric, Some("a")),
            (DefinitionKind::PodMetric, Some("b")),
        ]
    );
    let namespace_metric = conversion.documents[0].object();
    assert!(namespace_metric["spec"].get("objectLabel").is_none());
    assert!(notes(&conversion).contains("rules[0]: assumed: without --prometheus-url, assumed the series name nginx_http_requests_total"));
}

#[test]
fn namespaced_scope_says_where_isolation_changes_the_answer() {
    let options = Options {
        scope: Scope::Namespaced,
        namespaces: vec!["kong".into()],
        ..cluster()
    };
    let conversion = run(
        r#"
rules:
- seriesQuery: '{__name__=~"^kong_upstream_latency_ms_(sum|count)"}'
  resources: {overrides: {exported_namespace: {resource: namespace}, exported_service: {resource: service}}}
  name: {as: kong_latency}
  metricsQuery: sum by (exported_service) (rate(kong_upstream_latency_ms_sum{<<.LabelMatchers>>}[1m])) / scalar(sum(kong_total))
"#,
        Discovery::Assumed,
        &options,
    );
    let notes = notes(&conversion);
    assert!(
        notes.contains("kong_latency: namespaced definitions (NamespaceMetrics always) are pinned to namespace=\"<their namespace>\", but these series keep the namespace in exported_namespace"),
        "{notes}"
    );
    assert!(
        notes.contains("1 selector(s) of the query read series beyond <<.LabelMatchers>>"),
        "{notes}"
    );
    assert_eq!(conversion.documents.len(), 2, "{notes}");
}

#[test]
fn namespace_metrics_are_isolated_in_cluster_scope_too() {
    let options = Options {
        scope: Scope::Cluster,
        namespaces: vec!["production".into()],
        ..cluster()
    };
    let conversion = run(
        r#"
rules:
- seriesQuery: 'http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}'
  resources:
    overrides:
      kubernetes_namespace: {resource: "namespace"}
      kubernetes_pod_name: {resource: "pod"}
  name: {matches: "^(.*)_total", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#,
        Discovery::Assumed,
        &options,
    );
    assert_eq!(
        kinds(&conversion),
        vec![
            (
                DefinitionKind::NamespaceMetric,
                Some("production"),
                "http-requests-per-second"
            ),
            (
                DefinitionKind::ClusterPodMetric,
                None,
                "http-requests-per-second"
            ),
        ]
    );
    let notes = notes(&conversion);
    assert!(
        notes.contains("rules[0]: differs: http_requests_per_second: namespaced definitions (NamespaceMetrics always) are pinned to namespace=\"<their namespace>\", but these series keep the namespace in kubernetes_namespace"),
        "{notes}"
    );
    assert_eq!(notes.matches("pinned").count(), 1, "{notes}");
}

#[test]
fn external_rules_become_live_queries_filtered_as_the_adapter_filters() {
    let conversion = run(
        r#"
externalRules:
- seriesQuery: '{__name__="queue_consumer_lag",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    overrides: { namespace: {resource: "namespace"} }
- seriesQuery: '{__name__="queue_depth",topic!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    namespaced: false
- seriesQuery: '{__name__="lag",exported_namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>,x!="y"}) by (<<.GroupBy>>)
  resources:
    overrides: { exported_namespace: {resource: "namespace"} }
- seriesQuery: '{__name__="ignores",name!=""}'
  metricsQuery: sum(<<.Series>>) by (name)
"#,
        Discovery::Assumed,
        &cluster(),
    );
    let specs: Vec<_> = conversion
        .documents
        .iter()
        .map(|d| {
            assert_eq!(d.kind, DefinitionKind::ClusterExternalMetric);
            d.spec.clone()
        })
        .collect();
    assert_eq!(
        specs,
        vec![
            json!({"metricName": "queue_consumer_lag", "namespaceLabel": "namespace",
                   "query": "sum(queue_consumer_lag{<<.LabelMatchers>>}) by (name)"}),
            json!({"metricName": "queue_depth",
                   "query": "sum(queue_depth{<<.LabelMatchers>>}) by (name)"}),
            // The adapter's external group-by is empty.
            json!({"metricName": "lag", "namespaceLabel": "exported_namespace",
                   "query": "sum(lag{<<.LabelMatchers>>,x!=\"y\"}) by ()"}),
            json!({"metricName": "ignores", "query": "sum(ignores) by (name)"}),
        ]
    );
    let notes = notes(&conversion);
    // Nothing moves: no note about filtering after aggregation.
    assert!(!notes.contains("filters the recorded series"), "{notes}");
    assert!(
        notes.contains("externalRules[3]: differs: the adapter fails every request for this rule"),
        "{notes}"
    );
    // The output is compiled before it is written: every document is valid.
    assert!(!notes.contains("not converted"), "{notes}");
}

#[test]
fn external_rules_become_recording_rules_that_keep_the_namespace() {
    let conversion = run(
        r#"
externalRules:
- seriesQuery: '{__name__="queue_consumer_lag",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    overrides: { namespace: {resource: "namespace"} }
- seriesQuery: '{__name__="queue_depth",topic!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    namespaced: false
- seriesQuery: '{__name__="lag",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>,x!="y"}) by (name)
"#,
        Discovery::Assumed,
        &recorded(),
    );
    let rules: Vec<_> = conversion
        .documents
        .iter()
        .map(|d| {
            assert_eq!(d.kind, DefinitionKind::CustomPrometheusRules);
            let rule = &d.spec["groups"][0]["rules"][0];
            (
                rule["record"].as_str().unwrap().to_string(),
                rule["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                "kube_adapter_metric_queue_consumer_lag".to_string(),
                "sum by (name, namespace) (queue_consumer_lag)".to_string()
            ),
            (
                "kube_adapter_metric_queue_depth".to_string(),
                "sum by (name) (queue_depth)".to_string()
            ),
            (
                "kube_adapter_metric_lag".to_string(),
                r#"sum by (name) (lag{x!="y"})"#.to_string()
            ),
        ]
    );
    // The adapter's namespaced rule reads the HPA's namespace here too; the others, every one.
    let namespaced: Vec<_> = conversion
        .documents
        .iter()
        .map(|d| d.spec["externalMetricsNamespaced"].clone())
        .collect();
    assert_eq!(namespaced, vec![json!(true), json!(false), json!(false)]);
    let notes = notes(&conversion);
    assert!(
        !notes.contains("queue_consumer_lag: the adapter reads only"),
        "{notes}"
    );
    assert!(
        notes.contains("externalRules[2]: differs: the adapter fails every request for this rule"),
        "{notes}"
    );
    assert!(notes.contains("keep only the label(s) name"), "{notes}");
}

#[test]
fn a_namespace_kept_in_another_label_is_copied_to_namespace() {
    let conversion = run(
        r#"
externalRules:
- seriesQuery: '{__name__="lag",exported_namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (topic)
  resources:
    overrides: { exported_namespace: {resource: "namespace"} }
- seriesQuery: '{__name__="depth",exported_namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (topic, namespace)
  resources:
    overrides: { exported_namespace: {resource: "namespace"} }
"#,
        Discovery::Assumed,
        &recorded(),
    );
    let specs: Vec<_> = conversion.documents.iter().map(|d| &d.spec).collect();
    assert_eq!(
        specs[0]["groups"][0]["rules"][0]["expr"],
        r#"label_replace(sum by (topic, exported_namespace) (lag), "namespace", "$1", "exported_namespace", "(.*)")"#
    );
    assert_eq!(specs[0]["externalMetricsNamespaced"], true);
    // Its own `namespace` would be overwritten: kept as it is, and the note says what to add.
    assert_eq!(
        specs[1]["groups"][0]["rules"][0]["expr"],
        "sum by (topic, namespace, exported_namespace) (depth)"
    );
    assert_eq!(specs[1]["externalMetricsNamespaced"], false);
    let notes = notes(&conversion);
    assert!(
        notes.contains("externalRules[0]: differs: lag: an HPA's labelSelector filters the recorded series, which keep only the label(s) topic, exported_namespace, namespace"),
        "{notes}"
    );
    assert!(notes.contains("externalRules[1]: differs: depth: the adapter reads only the HPA's namespace; the recording keeps the label exported_namespace but cannot copy it to namespace"), "{notes}");
    // What the server's default does with series no object records.
    assert!(
        notes.contains(
            "externalRules: differs: every kube_adapter_metric_* series is an external metric here"
        ),
        "{notes}"
    );
}

#[test]
fn what_cannot_be_expressed_gets_one_line_each() {
    let conversion = run(
        r#"
rules:
- seriesQuery: 'cheddar{sharp="true"}'
  name: {as: "cheesy_goodness"}
  resources:
    overrides:
      brand: {group: "cheese.io", resource: "brand"}
  metricsQuery: 'count(cheddar{sharp="true"})'
- seriesQuery: 'x{pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(x{<<.LabelMatchers>>}) by (<<range .GroupBySlice>><<.>><<end>>)'
- seriesQuery: 'y{pod!=""}'
  resources: {template: "<<.Resource>>"}
- seriesQuery: 'z{pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(z{<<.LabelMatchers>>} by (<<.GroupBy>>)'
resourceRules:
  window: 5m
"#,
        Discovery::Assumed,
        &cluster(),
    );
    assert!(conversion.documents.is_empty());
    let notes = notes(&conversion);
    let expected = [
        "resourceRules: not converted: needs both cpu and memory",
        "rules[0]: not converted: resources.overrides.brand: brand.cheese.io is not a built-in resource",
        "rules[0]: not converted: metricsQuery has no <<.LabelMatchers>>",
        "rules[1]: not converted: metricsQuery: unsupported template action <<range .GroupBySlice>>",
        "rules[2]: not converted: no metricsQuery",
        "rules[3]: not converted: ClusterPodMetric z: InvalidQuery:",
    ];
    for line in expected {
        assert!(notes.contains(line), "missing {line:?} in\n{notes}");
    }
    assert_eq!(conversion.notes.len(), expected.len() + 1, "{notes}");
}

#[test]
fn the_last_series_listed_wins_as_in_the_adapter() {
    let listed = BTreeMap::from([(
        r#"{__name__=~"a_.*",pod!=""}"#.to_string(),
        vec![series("a_one", &["pod"]), series("a_two", &["pod"])],
    )]);
    let conversion = run(
        r#"
rules:
- seriesQuery: '{__name__=~"a_.*",pod!=""}'
  resources: {overrides: {pod: {resource: pod}}}
  name: {as: a}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
"#,
        Discovery::Listed(&listed),
        &cluster(),
    );
    assert_eq!(conversion.documents.len(), 1);
    assert_eq!(
        conversion.documents[0].spec["query"],
        "sum(a_two{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
    );
    let notes = notes(&conversion);
    assert!(
        notes.contains("rules[0]: overlap: pods/a: series a_one and a_two both map to this name"),
        "{notes}"
    );
    assert!(notes.contains("no label maps to namespaces"), "{notes}");
}

#[test]
fn the_last_rule_producing_a_metric_wins_as_in_the_adapter() {
    let conversion = run(
        r#"
rules:
- seriesQuery: 'a_total{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {as: requests}
  metricsQuery: sum(first{<<.LabelMatchers>>}) by (<<.GroupBy>>)
- seriesQuery: 'b_total{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {as: requests}
  metricsQuery: sum(second{<<.LabelMatchers>>}) by (<<.GroupBy>>)
externalRules:
- seriesQuery: 'q{name!=""}'
  resources: {namespaced: false}
  metricsQuery: sum(q) by (name)
- seriesQuery: 'r{name!=""}'
  resources: {namespaced: false}
  name: {as: q}
  metricsQuery: max(r) by (name)
"#,
        Discovery::Assumed,
        &cluster(),
    );
    let specs: Vec<String> = conversion
        .documents
        .iter()
        .map(|d| d.spec.to_string())
        .collect();
    assert_eq!(specs.len(), 2, "{specs:?}");
    assert!(specs[0].contains("second"), "{specs:?}");
    assert!(specs[1].contains("max(r) by (name)"), "{specs:?}");
    let notes = notes(&conversion);
    assert!(
        notes.contains("rules[0]: overlap: ClusterPodMetric requests: rules[1] produces it too"),
        "{notes}"
    );
    assert!(
        notes.contains(
            "externalRules[0]: overlap: ClusterExternalMetric q: externalRules[1] produces it too"
        ),
        "{notes}"
    );
}

#[test]
fn helm_values_with_the_chart_defaults_say_so() {
    let conversion = run("rules: {custom: []}", Discovery::Assumed, &cluster());
    assert!(
        notes(&conversion)
            .contains("rules.default: not converted: the chart adds its built-in rules")
    );
}

#[test]
fn series_queries_are_asked_once_each() {
    let (config, _) = config::parse(
        "rules:\n- seriesQuery: a\n- seriesQuery: a\nexternalRules:\n- seriesQuery: b\n",
    )
    .unwrap();
    assert_eq!(
        series_queries(&config),
        vec!["a".to_string(), "b".to_string()]
    );
}

#[test]
fn resource_rules_become_one_resource_metrics() {
    let conversion = run(
        r#"
resourceRules:
  cpu:
    containerQuery: sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[3m])) by (<<.GroupBy>>)
    nodeQuery: sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>, id='/'}[3m])) by (<<.GroupBy>>)
    resources:
      overrides:
        instance: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  memory:
    containerQuery: sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)
    nodeQuery: sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id='/'}) by (<<.GroupBy>>)
    resources:
      overrides:
        instance: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  window: 3m
"#,
        Discovery::Assumed,
        &cluster(),
    );
    assert_eq!(conversion.documents.len(), 1, "{}", notes(&conversion));
    let document = &conversion.documents[0];
    assert_eq!(document.kind, DefinitionKind::ResourceMetrics);
    assert_eq!(
        document.spec,
        json!({
            "cpu": {
                "containerQuery": "sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=\"\"}[3m])) by (<<.GroupBy>>)",
                "nodeQuery": "sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>, id='/'}[3m])) by (<<.GroupBy>>)",
            },
            "memory": {
                "containerQuery": "sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=\"\"}) by (<<.GroupBy>>)",
                "nodeQuery": "sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id='/'}) by (<<.GroupBy>>)",
            },
            "podLabel": "pod",
            "namespaceLabel": "namespace",
            "nodeLabel": "instance",
            "containerLabel": "container",
            "windowSeconds": 180,
        })
    );
    // Compiled before it is written: valid, so nothing says otherwise.
    assert!(
        !notes(&conversion).contains("not converted"),
        "{}",
        notes(&conversion)
    );
}
