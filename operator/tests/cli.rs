//! The stable command-line interface, run as the real binary.

use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metrics-registry"))
}

#[test]
fn check_exits_1_with_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&good, "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {name: ok}\nspec: {query: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}\n").unwrap();
    std::fs::write(
        &bad,
        "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {name: a, namespace: team}\nspec: {query: 'x{<<.LabelMatchers>>} + y{namespace=\"other\"}'}\n---\napiVersion: metrics-registry.io/v1beta1\nkind: PodMetric\nmetadata: {name: b, namespace: team}\nspec: {query: 'x{<<.Series>>}'}\n",
    )
    .unwrap();

    let ok = binary().arg("check").arg(&good).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "1 definitions OK"
    );

    let failed = binary().arg("check").arg(&good).arg(&bad).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.yaml: ServiceMetric team/a: NamespaceEscape:")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.yaml: PodMetric team/b: UnknownPlaceholder:")),
        "{stdout}"
    );

    // Isolation can be turned off offline too.
    let open = binary()
        .args(["check", "--disable-namespace-isolation"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&open.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let missing = binary()
        .args(["check", "/nonexistent/file.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read"));
}

#[test]
fn crds_prints_every_definition() {
    let out = binary().arg("crds").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 18);
    for name in [
        "podmetrics.metrics-registry.io",
        "clusterservicemetrics.metrics-registry.io",
        "externalmetrics.metrics-registry.io",
        "clusterexternalmetrics.metrics-registry.io",
        "resourcemetrics.metrics-registry.io",
        "customprometheusrules.metrics-registry.io",
    ] {
        assert!(text.contains(name), "{name}");
    }
}

#[test]
fn insecure_listen_refuses_non_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["run", "--insecure-listen", "0.0.0.0:0", "--manifests"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[test]
fn missing_manifests_folder_is_named() {
    let out = binary()
        .args([
            "run",
            "--insecure-listen",
            "127.0.0.1:0",
            "--manifests",
            "/nonexistent/defs",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/defs: folder not found"));
}
