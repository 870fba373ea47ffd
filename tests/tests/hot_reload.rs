//! Manifest changes are served within a second; a broken file keeps its last good
//! definitions and holds back no other file.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::stack::Stack;
use std::time::Duration;

const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency";

fn definition(series: &str) -> String {
    format!(
        "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {{name: latency}}\nspec: {{query: 'max({series}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'}}\n"
    )
}

fn publish(exporter: &Exporter) {
    exporter.set(
        "latency_a",
        &[("namespace", "shop"), ("service", "cart")],
        1.0,
    );
    exporter.set(
        "latency_b",
        &[("namespace", "shop"), ("service", "cart")],
        2.0,
    );
}

/// One definition reading `latency_a` (1), with `latency_b` (2) in Prometheus too.
async fn start_serving_latency_a() -> Stack {
    let stack = Stack::start(
        &[("latency.yaml", &definition("latency_a"))],
        publish,
        "latency_b",
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(stack.registry.get(PATH).await.value(0), "1");
    stack
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn edits_are_served_within_a_second() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;

    let mut latencies = Vec::new();
    for (round, (series, expected)) in [("latency_b", "2"), ("latency_a", "1"), ("latency_b", "2")]
        .into_iter()
        .enumerate()
    {
        registry.write("latency.yaml", &definition(series));
        let took = registry
            .wait_until(PATH, Duration::from_secs(1), |a| {
                a.status == 200 && a.value(0) == expected
            })
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        latencies.push(took);
    }
    println!("reload latency (write → new value served): {latencies:?}");

    // A new file adds a metric; removing it takes the metric away.
    registry.write(
        "extra.yaml",
        &definition("latency_a").replace("name: latency", "name: extra"),
    );
    let extra = PATH.replace("/latency", "/extra");
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.status == 200)
        .await
        .unwrap();
    registry.remove("extra.yaml");
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.status == 404)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn broken_files_keep_their_last_good_definitions_and_hold_back_nothing_else() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;
    let extra = PATH.replace("/latency", "/extra");
    registry.write(
        "extra.yaml",
        &definition("latency_a").replace("name: latency", "name: extra"),
    );
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.value(0) == "1")
        .await
        .unwrap();

    // Broken YAML in one file: its definitions stay, and an edit elsewhere goes live.
    registry.write("extra.yaml", "kind: [unclosed");
    registry.write("latency.yaml", &definition("latency_b"));
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "2")
        .await
        .unwrap();
    assert_eq!(registry.get(&extra).await.value(0), "1");

    // Emptied (as an in-place rewrite leaves it for a moment): still the last good ones.
    registry.write("extra.yaml", "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.get(&extra).await.value(0), "1");

    // Deleting the file is what takes its definitions away.
    registry.remove("extra.yaml");
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.status == 404)
        .await
        .unwrap();

    // A valid file with a bad query: that definition is not served, the others are.
    registry.write(
        "bad-query.yaml",
        "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {name: bad}\nspec: {query: 'sum(x{<<.LabelMatchers>>}'}\n",
    );
    let bad = PATH.replace("/latency", "/bad");
    registry
        .wait_until(&bad, Duration::from_secs(1), |a| a.status == 404)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.get(PATH).await.value(0), "2");
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn a_broken_file_at_start_up_holds_back_nothing() {
    let stack = Stack::start(
        &[
            ("latency.yaml", &definition("latency_a")),
            ("broken.yaml", "kind: [unclosed"),
        ],
        publish,
        "latency_b",
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(stack.registry.get(PATH).await.value(0), "1");
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn a_replaced_folder_stays_watched() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;
    registry.replace_folder(&[("latency.yaml", &definition("latency_b"))]);
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "2")
        .await
        .unwrap();
    // Edits in the new folder are seen by the watch, not by the periodic rescan.
    registry.write("latency.yaml", &definition("latency_a"));
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "1")
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn a_re_pointed_symlinked_folder_is_followed() {
    let stack = Stack::start(
        &[("latency.yaml", &definition("latency_a"))],
        publish,
        "latency_b",
        |options| options.manifests_via_symlink = true,
    )
    .await
    .unwrap();
    let registry = &stack.registry;
    assert_eq!(registry.get(PATH).await.value(0), "1");
    registry.repoint(&[("latency.yaml", &definition("latency_b"))]);
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "2")
        .await
        .unwrap();
    registry.write("latency.yaml", &definition("latency_a"));
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "1")
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn a_config_map_update_is_served() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;
    registry.remove("latency.yaml");
    // kubelet's layout: files are links through `..data` to a timestamped folder.
    let root = registry.manifests();
    let version = |name: &str, series: &str| {
        std::fs::create_dir(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("latency.yaml"), definition(series)).unwrap();
        std::os::unix::fs::symlink(name, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    };
    version("..2026_01", "latency_b");
    std::os::unix::fs::symlink("..data/latency.yaml", root.join("latency.yaml")).unwrap();
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "2")
        .await
        .unwrap();
    version("..2026_02", "latency_a");
    std::fs::remove_dir_all(root.join("..2026_01")).unwrap();
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "1")
        .await
        .unwrap();
}
