//! Faults of the cluster around metrics-registry, with the real control plane: kube-apiserver
//! restarted (connections drop, watches come back with "too old resource version" and
//! relist) and, in the same restart, the front-proxy CA rotated. kube-apiserver adds the new
//! CA to kube-system/extension-apiserver-authentication next to the old one (it merges, so
//! that API servers of an HA control plane with different CAs all work); an operator then
//! retires the old one by editing the ConfigMap. No wrong value may be served, the server must
//! follow the ConfigMap live both ways, and definitions changed after the restart must be
//! served.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use metrics_registry_tests::e2e::E2e;
use metrics_registry_tests::fixtures::KONG_LATENCY;
use metrics_registry_tests::scenarios::{KONG_PATH, set_latency};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MASTERS: [(&str, &str); 2] = [
    ("X-Remote-User", "alice"),
    ("X-Remote-Group", "system:masters"),
];

/// Answers seen by a poller: status code → count, and any 200 whose value was not `want`.
#[derive(Default, Debug)]
struct Seen {
    statuses: BTreeMap<u16, usize>,
    wrong_values: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn apiserver_restart_with_a_rotated_front_proxy_ca() {
    let mut e2e = E2e::start(|exporter| set_latency(exporter, 100.0))
        .await
        .expect("end-to-end stack starts");
    e2e.apply_yaml(&format!(
        "{KONG_LATENCY}\n---\n{}",
        e2e.workload("kong", "command", 1)
    ))
    .await
    .unwrap();
    e2e.wait_raw(KONG_PATH, Duration::from_secs(5), |b| {
        b["items"][0]["value"] == "100"
    })
    .await
    .expect("served through the aggregator");

    // The aggregator's identity before the rotation, as a client of our own.
    let old_cert = e2e.front_proxy_cert("front-proxy-client");
    let (old_client, base) = e2e.direct_client(Some(old_cert)).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (seen, stop) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut request = old_client.get(format!("{base}{KONG_PATH}"));
                for (name, value) in MASTERS {
                    request = request.header(name, value);
                }
                // A refused handshake is how a no-longer-trusted CA shows: count it as 401.
                let (status, body) = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (
                            status,
                            response
                                .json::<serde_json::Value>()
                                .await
                                .unwrap_or_default(),
                        )
                    }
                    Err(_) => (401, serde_json::Value::Null),
                };
                {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    *seen.statuses.entry(status).or_default() += 1;
                    if status == 200 && body["items"][0]["value"] != "100" {
                        seen.wrong_values.push(body.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let down = e2e
        .control_plane
        .restart_apiserver(true)
        .await
        .expect("kube-apiserver restarts");
    // kube-apiserver's aggregator now presents a certificate from the new CA: served
    // again once metrics-registry has read the new CA from the ConfigMap.
    let aggregated = e2e
        .wait_raw(KONG_PATH, Duration::from_secs(60), |b| {
            b["items"][0]["value"] == "100"
        })
        .await
        .expect("served through the aggregator with the new front-proxy CA");
    let new_cert = e2e.front_proxy_cert("front-proxy-client");
    assert_eq!(
        e2e.direct_status(KONG_PATH, Some(new_cert.clone()), &MASTERS)
            .await,
        200,
        "the new front-proxy CA is trusted"
    );
    let during = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .statuses
        .clone();

    // The operator retires the old CA: only the new one stays in the ConfigMap.
    let configmaps: Api<ConfigMap> = Api::namespaced(e2e.admin.clone(), "kube-system");
    configmaps
        .patch(
            "extension-apiserver-authentication",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {
                "requestheader-client-ca-file": e2e.control_plane.certs().front_proxy_ca_cert_pem,
            }})),
        )
        .await
        .unwrap();
    let retired = Instant::now();
    let refused_after = loop {
        let refused = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .statuses
            .get(&401)
            .copied()
            .unwrap_or(0);
        if refused > 0 {
            break retired.elapsed();
        }
        assert!(
            retired.elapsed() < Duration::from_secs(30),
            "the retired front-proxy CA is still trusted: {:?}",
            seen.lock().unwrap_or_else(|e| e.into_inner())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    assert_eq!(
        e2e.direct_status(KONG_PATH, Some(new_cert), &MASTERS).await,
        200,
        "the new front-proxy CA stays trusted"
    );
    e2e.wait_raw(KONG_PATH, Duration::from_secs(5), |b| {
        b["items"][0]["value"] == "100"
    })
    .await
    .expect("still served through the aggregator");

    // Watches came back: a definition created now is served (a namespaced override with a
    // different value), within the usual second.
    e2e.apply_yaml(
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: kong-latency-override, namespace: kong}
spec:
  metricName: kong_upstream_latency_ms_60s_average
  objectLabel: exported_service
  namespaceLabel: exported_namespace
  query: 'avg by (<<.GroupBy>>) (kong_upstream_latency_ms_average{<<.LabelMatchers>>}) * 2'
"#,
    )
    .await
    .unwrap();
    let relisted = e2e
        .wait_raw(KONG_PATH, Duration::from_secs(5), |b| {
            b["items"][0]["value"] == "200"
        })
        .await
        .expect("a definition applied after the restart is served");

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    println!(
        "kube-apiserver down {:.1}s (restart with a new front-proxy CA); served through the \
         aggregator {:.1}s after it was back; direct answers with the old certificate until the \
         old CA was retired: {during:?}; refused {:.1}s after the ConfigMap edit; a definition \
         applied after the restart served {:?} after apply",
        down.as_secs_f64(),
        aggregated.as_secs_f64(),
        refused_after.as_secs_f64(),
        relisted
    );
    assert_eq!(
        during.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "while the old CA was in the ConfigMap every direct request was served: {during:?}"
    );
    assert!(
        seen.wrong_values.is_empty(),
        "wrong values served: {:?}",
        seen.wrong_values
    );
    let unexpected: Vec<_> = seen
        .statuses
        .keys()
        .filter(|code| !matches!(code, 200 | 401))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 200 (old CA in force) or 401 (old CA retired): {:?}",
        seen.statuses
    );
    e2e.stop().await;
}
