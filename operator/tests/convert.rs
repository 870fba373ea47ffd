//! `metrics-registry convert` on the prometheus-adapter configurations of seeds 001–003, run
//! as the binary: what it writes, what it says on stderr, and that `check` accepts it.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metrics-registry"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adapter")
        .join(name)
}

fn convert(args: &[&str]) -> Output {
    binary()
        .arg("convert")
        .args(args)
        .output()
        .expect("metrics-registry runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("convert prints YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `metrics-registry check` on the given files: (exit code, stdout).
fn check(files: &[PathBuf]) -> (i32, String) {
    let output = binary()
        .arg("check")
        .args(files)
        .output()
        .expect("metrics-registry runs");
    (output.status.code().unwrap_or(-1), text(&output.stdout))
}

fn kong_service_metric() -> Value {
    json!({
        "apiVersion": "metrics-registry.io/v1beta1",
        "kind": "ClusterServiceMetric",
        "metadata": {"name": "kong-upstream-latency-ms-60s-average"},
        "spec": {
            "metricName": "kong_upstream_latency_ms_60s_average",
            "objectLabel": "exported_service",
            "namespaceLabel": "exported_namespace",
            "query": "sum by (exported_service) (rate(kong_upstream_latency_ms_sum{<<.LabelMatchers>>}[60s:10s]))\n  /\nsum by (exported_service) (rate(kong_upstream_latency_ms_count{<<.LabelMatchers>>}[60s:10s]))\n",
        }
    })
}

#[test]
fn seeds_001_and_002_become_the_kong_service_metric() {
    let dir = tempfile::tempdir().unwrap();
    for seed in ["seed-001-values.yaml", "seed-002-values.yaml"] {
        let output = convert(&[fixture(seed).to_str().unwrap()]);
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{seed}: {stderr}");
        assert_eq!(
            documents(&text(&output.stdout)),
            vec![kong_service_metric()],
            "{seed}"
        );
        for line in [
            "rules[0]: assumed: without --prometheus-url, assumed series carrying the label(s) exported_namespace, exported_service",
            "rules[0]: not converted: namespaces/kong_upstream_latency_ms_60s_average: metrics-registry has no cluster-wide NamespaceMetric",
            "converted 1 definition(s) and 0 external metric recording(s)",
        ] {
            assert!(
                stderr.contains(line),
                "{seed}: missing {line:?} in\n{stderr}"
            );
        }
        let file = dir.path().join(seed);
        std::fs::write(&file, &output.stdout).unwrap();
        assert_eq!(
            check(&[file]),
            (0, "1 definitions OK\n".to_string()),
            "{seed}"
        );
    }
}

#[test]
fn seed_003_becomes_a_pod_metric_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("defs");
    let output = convert(&[
        fixture("seed-003-values.yaml").to_str().unwrap(),
        "--scope",
        "namespaced",
        "--namespace",
        "nginx",
        "--namespace",
        "web",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("rules[0]: assumed: without --prometheus-url, assumed the series name nginx_http_requests_total and series carrying the label(s) namespace, pod"),
        "{stderr}"
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "namespacemetric-nginx-nginx-http-requests-per-second.yaml",
            "namespacemetric-web-nginx-http-requests-per-second.yaml",
            "podmetric-nginx-nginx-http-requests-per-second.yaml",
            "podmetric-web-nginx-http-requests-per-second.yaml",
        ]
    );
    let pod = documents(&std::fs::read_to_string(&files[2]).unwrap());
    assert_eq!(
        pod,
        vec![json!({
            "apiVersion": "metrics-registry.io/v1beta1",
            "kind": "PodMetric",
            "metadata": {"name": "nginx-http-requests-per-second", "namespace": "nginx"},
            "spec": {
                "metricName": "nginx_http_requests_per_second",
                "query": "sum(rate(nginx_http_requests_total{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
            }
        })]
    );
    assert_eq!(check(&files), (0, "4 definitions OK\n".to_string()));
}

#[test]
fn nothing_to_convert_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let only_resources = dir.path().join("config.yaml");
    std::fs::write(
        &only_resources,
        "resourceRules:\n  cpu: {containerQuery: x, nodeQuery: z, containerLabel: container}\n  window: 5m\n",
    )
    .unwrap();
    let output = convert(&[only_resources.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("resourceRules: not converted: needs both cpu and memory"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing in "), "{stderr}");
    assert!(output.stdout.is_empty());

    let missing = convert(&[dir.path().join("absent.yaml").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read"));

    let no_namespace = convert(&[
        fixture("seed-003-values.yaml").to_str().unwrap(),
        "--scope",
        "namespaced",
    ]);
    assert_eq!(no_namespace.status.code(), Some(1));
    assert!(
        text(&no_namespace.stderr).contains("--scope namespaced needs at least one --namespace")
    );
}
