use super::*;

#[test]
fn the_debounce_waits_for_quiet_but_never_past_the_maximum() {
    let start = Instant::now();
    let mut pending = Pending::default();
    assert_eq!(
        pending.deadline(),
        None,
        "nothing pending, nothing to wait for"
    );
    pending.note(start);
    assert_eq!(pending.deadline(), Some(start + DEBOUNCE));
    // A steady trickle keeps pushing the quiet deadline…
    let mut at = start;
    while at < start + Duration::from_secs(2) {
        at += DEBOUNCE / 2;
        pending.note(at);
    }
    // …but the flush happens at most MAX_DELAY after the first change.
    assert_eq!(pending.deadline(), Some(start + MAX_DELAY));
}

mod loop_ {
    use super::super::*;
    use crate::definitions::DefinitionStatus;
    use crate::definitions::ObjectRecord;
    use crate::kubernetes::leader::Leadership;
    use crate::kubernetes::mock_api;
    use crate::publish::Publisher;
    use crate::sinks::status::writer::StatusQueue;
    use crate::supervise::Supervisor;
    use metrics_registry_apiserver::api::Readiness;
    use metrics_registry_apiserver::prometheus::{PrometheusClient, PrometheusConfig};
    use metrics_registry_apiserver::table::shared_rule_table;
    use metrics_registry_apiserver::telemetry::SelfMetrics;
    use metrics_registry_apiserver::upstream::{Backends, NoSecrets, Upstream};
    use serde_json::json;
    use tokio::sync::watch;

    fn record(
        kind: DefinitionKind,
        name: &str,
        query: &str,
        status: serde_json::Value,
    ) -> ObjectRecord {
        ObjectRecord::from_json(
            kind,
            &json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": kind.name(),
                    "metadata": {"name": name, "namespace": "a", "generation": 1},
                    "spec": {"query": query}, "status": status}),
        )
        .unwrap()
    }

    async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        for _ in 0..200 {
            if let Some(value) = probe() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 2 s");
    }

    /// Backends no test here queries: the controller only publishes tables.
    fn unused_backends(metrics: &Arc<SelfMetrics>) -> Backends {
        crate::install_crypto_provider();
        let client = PrometheusClient::new(PrometheusConfig::new("http://127.0.0.1:9")).unwrap();
        Backends::new(
            Upstream::new(client, Default::default(), metrics.clone()),
            Arc::new(NoSecrets("none here")),
        )
    }

    #[tokio::test]
    async fn publishes_after_every_kind_is_listed_and_queues_only_what_changed() {
        let supervisor = Supervisor::default();
        let table = shared_rule_table();
        let readiness = Readiness::default();
        let statuses = StatusQueue::default();
        let (rules, _rules_rx) = watch::channel(None);
        let metrics = SelfMetrics::new();
        let controller = DefinitionController {
            client: mock_api::refusing(),
            options: CompileOptions::default(),
            publisher: Publisher::new(
                table.clone(),
                unused_backends(&metrics),
                readiness.clone(),
                rules,
                metrics.clone(),
            ),
            objects: ObjectCaches::new(mock_api::refusing(), supervisor.spawner(), metrics.clone()),
            statuses: statuses.clone(),
            metrics: metrics.clone(),
            leadership: Leadership::Always,
            spawner: supervisor.spawner(),
        };
        let (events, receiver) = mpsc::channel(64);
        let running = tokio::spawn(controller.process(receiver));
        let good = record(
            DefinitionKind::ServiceMetric,
            "good",
            "x{<<.LabelMatchers>>}",
            json!(null),
        );
        let bad = record(
            DefinitionKind::PodMetric,
            "bad",
            "sum(x{<<.LabelMatchers>>}",
            json!(null),
        );
        for kind in DefinitionKind::ALL {
            events.send((kind, WatchEvent::Init)).await.unwrap();
            if kind == DefinitionKind::ServiceMetric {
                events
                    .send((kind, WatchEvent::InitApply(good.clone())))
                    .await
                    .unwrap();
            }
            if kind == DefinitionKind::PodMetric {
                events
                    .send((kind, WatchEvent::InitApply(bad.clone())))
                    .await
                    .unwrap();
            }
            // Not before every kind is listed: a partial table is never served.
            assert!(!readiness.is_ready());
            events.send((kind, WatchEvent::InitDone)).await.unwrap();
        }
        eventually("the first publish", || readiness.is_ready().then_some(())).await;
        assert_eq!(
            table.load().discovery().count(),
            1,
            "the good definition is served"
        );
        // The controller's own metrics, not a process-wide set other tests also count in.
        let counted = metrics.encode();
        for line in [
            r#"metrics_registry_definitions{kind="ServiceMetric",ready="true"} 1"#,
            r#"metrics_registry_definitions{kind="PodMetric",ready="false"} 1"#,
            "metrics_registry_rule_table_swaps_total 1",
        ] {
            assert!(counted.contains(line), "{line} not in {counted}");
        }
        eventually("two status writes", || (statuses.len() == 2).then_some(())).await;
        let written = statuses.drain_for_test();
        let reason = |status: &DefinitionStatus| status.conditions()[0].reason.clone();
        let good_status = written
            .iter()
            .find(|(id, _)| id.name == "good")
            .unwrap()
            .1
            .clone();
        let bad_status = written
            .iter()
            .find(|(id, _)| id.name == "bad")
            .unwrap()
            .1
            .clone();
        assert_eq!(reason(&good_status), "Served");
        assert_eq!(reason(&bad_status), "InvalidQuery");

        // Our own writes coming back: nothing to compile, nothing to write.
        let published = table.load_full();
        let echo = |r: &ObjectRecord, status: &DefinitionStatus| ObjectRecord {
            status: Some(status.clone()),
            ..r.clone()
        };
        events
            .send((
                DefinitionKind::ServiceMetric,
                WatchEvent::Apply(echo(&good, &good_status)),
            ))
            .await
            .unwrap();
        events
            .send((
                DefinitionKind::PodMetric,
                WatchEvent::Apply(echo(&bad, &bad_status)),
            ))
            .await
            .unwrap();
        tokio::time::sleep(MAX_DELAY + DEBOUNCE).await;
        assert!(statuses.is_empty(), "an echo is not written again");
        assert!(
            Arc::ptr_eq(&published, &table.load_full()),
            "no new table for an echo"
        );

        // A fix is compiled, swapped in and reported.
        let fixed = record(
            DefinitionKind::PodMetric,
            "bad",
            "sum(x{<<.LabelMatchers>>})",
            serde_json::to_value(&bad_status).unwrap(),
        );
        events
            .send((DefinitionKind::PodMetric, WatchEvent::Apply(fixed)))
            .await
            .unwrap();
        eventually("the fix's status", || (statuses.len() == 1).then_some(())).await;
        let written = statuses.drain_for_test();
        assert_eq!(reason(&written[0].1), "Served");
        assert_eq!(table.load().discovery().count(), 2);
        drop(events);
        running.await.unwrap();
    }
}
