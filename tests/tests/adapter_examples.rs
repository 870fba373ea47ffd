//! Integration (needs the prometheus-adapter build, `scripts/build-adapter.sh`): every
//! example configuration in prometheus-adapter v0.12.0's documentation and deploy
//! manifests, read from its module source, converted without a Prometheus. Each one either
//! converts into definitions `check` accepts or is refused with the reason; the two the
//! adapter itself cannot load are shown to be refused by the adapter binary too.

use metrics_registry::check::check;
use metrics_registry::compiler::CompileOptions;
use metrics_registry::convert::discovery::Discovery;
use metrics_registry::convert::{
    Conversion, ExternalRulesAs, Options, Scope, config, convert, output,
};
use metrics_registry::definitions::DefinitionKind;
use metrics_registry_tests::adapter::{module_source, refusal};
use metrics_registry_tests::adapter_examples::{Example, examples, repair_quoting};
use metrics_registry_tests::batchable::batching;

/// What converting an example gives: how many objects, and lines the notes must hold.
struct Expected {
    origin: &'static str,
    objects: usize,
    notes: &'static [&'static str],
}

const INVALID_YAML: usize = usize::MAX;

const EXPECTED: &[Expected] = &[
    Expected {
        origin: "README.md yaml block 1",
        objects: 0,
        notes: &["rules[0]: not converted: the adapter also serves these metrics on nodes"],
    },
    Expected {
        origin: "docs/config.md yaml block 1",
        objects: INVALID_YAML,
        notes: &[],
    },
    Expected {
        origin: "docs/config-walkthrough.md yaml block 1",
        objects: 0,
        notes: &["rules[0]: not converted: no seriesQuery"],
    },
    Expected {
        origin: "docs/config-walkthrough.md yaml block 2",
        objects: 0,
        notes: &["rules[0]: not converted: no metricsQuery"],
    },
    Expected {
        origin: "docs/config-walkthrough.md yaml block 3",
        objects: 0,
        notes: &["rules[0]: not converted: no metricsQuery"],
    },
    Expected {
        origin: "docs/config-walkthrough.md yaml block 4",
        objects: 0,
        notes: &["rules[0]: not converted: no metricsQuery"],
    },
    Expected {
        origin: "docs/config-walkthrough.md yaml block 5",
        objects: 1,
        notes: &[
            "rules[0]: assumed: without --prometheus-url, assumed the series name http_requests_total and series carrying the label(s) kubernetes_namespace, kubernetes_pod_name",
            "rules[0]: not converted: namespaces/http_requests_per_second: metrics-registry has no cluster-wide NamespaceMetric",
        ],
    },
    Expected {
        origin: "docs/externalmetrics.md yaml block 1",
        objects: 1,
        notes: &[
            // Live queries filter as the adapter does: nothing about the selector moves.
            "externalRules: differs: every kube_adapter_metric_* series is an external metric here",
        ],
    },
    Expected {
        origin: "docs/externalmetrics.md yaml block 2",
        objects: 1,
        notes: &[
            // Live queries filter as the adapter does: nothing about the selector moves.
            "externalRules: differs: every kube_adapter_metric_* series is an external metric here",
        ],
    },
    Expected {
        origin: "docs/walkthrough.md yaml block 5",
        objects: 0,
        notes: &["rules[0]: not converted: metric names come from the names of the series"],
    },
    Expected {
        origin: "docs/sample-config.yaml",
        objects: INVALID_YAML,
        notes: &[],
    },
    Expected {
        origin: "deploy/manifests/config-map.yaml",
        // Its resourceRules, as one ResourceMetrics.
        objects: 1,
        notes: &[],
    },
];

fn run(text: &str) -> Result<Conversion, String> {
    let (adapter_config, source) = config::parse(text).map_err(|e| e.to_string())?;
    let options = Options {
        scope: Scope::Cluster,
        namespaces: vec![],
        external_rules_as: ExternalRulesAs::LiveQueries,
    };
    Ok(convert(
        &adapter_config,
        &source,
        Discovery::Assumed,
        &options,
    ))
}

/// The documents pass `metrics-registry check` once written to a file.
fn assert_checked(example: &Example, conversion: &Conversion) {
    if conversion.documents.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("converted.yaml");
    std::fs::write(&file, output::to_yaml("test", &conversion.documents)).unwrap();
    let report = check(&[file], CompileOptions::default());
    assert_eq!(
        (report.definitions, report.problems.clone()),
        (conversion.documents.len(), vec![]),
        "{}",
        example.origin
    );
}

fn notes(conversion: &Conversion) -> String {
    conversion
        .notes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
#[ignore = "needs prometheus-adapter's Go module (scripts/build-adapter.sh): run through scripts/test.sh"]
async fn every_example_configuration_of_the_adapter_converts_or_says_why_not() {
    let source = module_source()
        .await
        .expect("prometheus-adapter module source");
    let examples = examples(&source).expect("the adapter's docs");
    let origins: Vec<&str> = examples.iter().map(|e| e.origin.as_str()).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.origin).collect();
    assert_eq!(
        origins, expected,
        "the adapter's docs hold other examples now"
    );

    for (example, expected) in examples.iter().zip(EXPECTED) {
        let result = run(&example.text);
        if expected.objects == INVALID_YAML {
            let error = result.err().unwrap_or_default();
            assert!(
                error.contains("invalid YAML"),
                "{}: {error}",
                example.origin
            );
            println!(
                "{}: refused: {}",
                example.origin,
                error.lines().next().unwrap_or("")
            );
            continue;
        }
        let conversion = result.unwrap_or_else(|e| panic!("{}: {e}", example.origin));
        let notes = notes(&conversion);
        println!(
            "{}: {} object(s)\n  {}",
            example.origin,
            conversion.documents.len(),
            notes.replace('\n', "\n  ")
        );
        assert_eq!(
            conversion.documents.len(),
            expected.objects,
            "{}: {notes}",
            example.origin
        );
        for line in expected.notes {
            assert!(
                notes.contains(line),
                "{}: missing {line:?} in\n{notes}",
                example.origin
            );
        }
        assert_checked(example, &conversion);
    }
}

#[tokio::test]
#[ignore = "needs prometheus-adapter built from its Go module (scripts/build-adapter.sh): run through scripts/test.sh"]
async fn the_sample_configuration_the_adapter_cannot_load_converts_once_its_quoting_is_fixed() {
    let source = module_source()
        .await
        .expect("prometheus-adapter module source");
    let sample = std::fs::read_to_string(source.join("docs/sample-config.yaml")).unwrap();
    let refused = refusal(&sample).await.expect("the adapter exits");
    assert!(
        refused.contains("unable to parse metrics discovery config"),
        "{refused}"
    );

    let repaired = repair_quoting(&sample);
    assert_ne!(repaired, sample);
    let conversion = run(&repaired).expect("the repaired sample reads");
    let notes = notes(&conversion);
    println!("{notes}");
    // The external rules as live queries, their selector placeholder kept.
    let queries: Vec<String> = conversion
        .documents
        .iter()
        .filter(|d| d.kind == DefinitionKind::ClusterExternalMetric)
        .map(|d| d.spec["query"].to_string())
        .collect();
    assert_eq!(
        queries,
        vec![
            "\"sum(queue_consumer_lag{<<.LabelMatchers>>}) by (name)\"",
            "\"sum(queue_depth{<<.LabelMatchers>>}) by (name)\""
        ],
        "{notes}"
    );
    for line in [
        "rules[0]: not converted: metric names come from the names of the series",
        "rules[3]: not converted: resources.overrides.brand: brand.cheese.io is not a built-in resource",
        "rules[3]: not converted: metricsQuery has no <<.LabelMatchers>>",
        "externalRules[0]: differs: the adapter fails every request for this rule",
    ] {
        assert!(notes.contains(line), "missing {line:?} in\n{notes}");
    }
    let example = Example {
        origin: "docs/sample-config.yaml, quoting repaired".into(),
        text: repaired,
    };
    assert_checked(&example, &conversion);
}

/// Every `metricsQuery` of the adapter's examples (the sample configuration with its
/// quoting repaired), as a cluster-wide pod metric reading one series: the share
/// docs/performance.md states of the adapter's own rules that the server still batches.
#[tokio::test]
#[ignore = "needs prometheus-adapter's Go module (scripts/build-adapter.sh): run through scripts/test.sh"]
async fn most_of_the_adapters_example_queries_stay_batched() {
    let source = module_source()
        .await
        .expect("prometheus-adapter module source");
    let mut texts: Vec<String> = examples(&source)
        .expect("the adapter's docs")
        .into_iter()
        .map(|example| example.text)
        .collect();
    let sample = std::fs::read_to_string(source.join("docs/sample-config.yaml")).unwrap();
    texts.push(repair_quoting(&sample));
    let queries: Vec<String> = texts
        .iter()
        .filter_map(|text| config::parse(text).ok())
        .flat_map(|(adapter_config, _)| adapter_config.rules)
        .map(|rule| rule.metrics_query)
        // Rules that only name series, for discovery.
        .filter(|query| !query.trim().is_empty())
        .collect();
    let manifests: String = queries
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let query = query.replace("<<.Series>>", "example_series");
            format!(
                "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {{name: example-{i}}}\nspec: {{metricName: example_{i}, query: {}}}\n---\n",
                serde_json::Value::String(query)
            )
        })
        .collect();
    let rules = batching(&manifests);
    let batched = rules.iter().filter(|rule| rule.batched).count();
    println!(
        "{batched} of the {} example queries that compile are batched ({} queries in all)",
        rules.len(),
        queries.len()
    );
    for rule in &rules {
        println!("  batched={}: {}", rule.batched, rule.template);
    }
    assert!(
        rules.len() >= 5,
        "only {} example queries compile",
        rules.len()
    );
    // Grouping by the object is what the adapter's docs teach; proving separability
    // must keep those batched.
    assert!(batched * 2 > rules.len(), "{rules:#?}");
}
