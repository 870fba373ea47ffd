//! The status each definition should carry, computed from its verdict. Pure; the
//! controller patches only records whose status differs.

pub mod writer;

use crate::compiler::{Reason, Verdict};
use crate::definitions::DefinitionKind;
use crate::definitions::DefinitionStatus;
use crate::definitions::ObjectRecord;
use metrics_registry_apiserver::upstream::{Probe, ProbeResult};
use metrics_registry_crds::{
    BackendStatus, Condition, ConditionStatus, LastProbe, MetricStatus, READY, RulesStatus,
};

/// The reason of a definition's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyReason {
    /// A metric definition, served.
    Served,
    /// Valid `CustomPrometheusRules`, handed to the rules writer.
    Accepted,
    /// Seen, not compiled yet.
    Pending,
    /// The object cannot be read as a definition.
    InvalidSpec,
    /// Read, but refused by the compiler.
    Refused(Reason),
    /// A valid `MetricsBackend` whose last probe failed.
    Probe(ProbeResult),
}

impl ReadyReason {
    /// Every reason a definition's status can carry.
    pub fn all() -> impl Iterator<Item = ReadyReason> {
        [
            ReadyReason::Served,
            ReadyReason::Accepted,
            ReadyReason::Pending,
            ReadyReason::InvalidSpec,
        ]
        .into_iter()
        .chain(Reason::ALL.map(ReadyReason::Refused))
        .chain(
            ProbeResult::ALL
                .into_iter()
                .filter(|result| *result != ProbeResult::Reachable)
                .map(ReadyReason::Probe),
        )
    }

    pub fn is_ready(self) -> bool {
        matches!(self, ReadyReason::Served | ReadyReason::Accepted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReadyReason::Served => "Served",
            ReadyReason::Accepted => "Accepted",
            ReadyReason::Pending => "Pending",
            ReadyReason::InvalidSpec => "InvalidSpec",
            ReadyReason::Refused(reason) => reason.as_str(),
            ReadyReason::Probe(result) => result.as_str(),
        }
    }
}

fn ready_condition(
    record: &ObjectRecord,
    verdict: Option<&Verdict>,
    probe: Option<&Probe>,
) -> (ReadyReason, String) {
    if let Err(message) = &record.decoded {
        return (ReadyReason::InvalidSpec, message.clone());
    }
    let Some(verdict) = verdict else {
        return (ReadyReason::Pending, "not compiled yet".into());
    };
    if let Some(problem) = &verdict.problem {
        return (
            ReadyReason::Refused(problem.reason),
            problem.message.clone(),
        );
    }
    if record.id.kind == DefinitionKind::CustomPrometheusRules {
        let message = if verdict.external_metrics.is_empty() {
            "rules are valid and handed to Prometheus".to_string()
        } else {
            format!(
                "rules are valid and handed to Prometheus; external metrics: {}",
                verdict.external_metrics.join(", ")
            )
        };
        return (ReadyReason::Accepted, message);
    }
    if record.id.kind == DefinitionKind::MetricsBackend {
        return match probe {
            None => (
                ReadyReason::Accepted,
                "valid: definitions naming it in spec.backend are served from it".to_string(),
            ),
            Some(probe) if probe.result == ProbeResult::Reachable => {
                (ReadyReason::Accepted, format!("valid; {}", probe.message))
            }
            Some(probe) => (ReadyReason::Probe(probe.result), probe.message.clone()),
        };
    }
    let metric = verdict.metric_name.clone().unwrap_or_default();
    let mut message = match (record.id.kind, record.id.kind.object()) {
        (_, Some(object)) => format!("served as {}/{metric}", object.resource()),
        (DefinitionKind::ResourceMetrics, None) => {
            "serves metrics.k8s.io (PodMetrics and NodeMetrics)".to_string()
        }
        (_, None) => format!("served as external metric {metric}"),
    };
    if let Some(backend) = &verdict.backend {
        message.push_str(&format!(" from MetricsBackend {backend}"));
        // Served, but its queries fail while the backend does: say so, by the probe's
        // result only (its error text would rewrite the status at every change of it).
        if let Some(probe) = probe.filter(|probe| probe.result != ProbeResult::Reachable) {
            message.push_str(&format!(
                ", whose last probe found it {} (see the MetricsBackend's status)",
                probe.result.as_str()
            ));
        }
    }
    if !verdict.overridden_in.is_empty() {
        message.push_str(&format!(
            "; overridden in namespace(s) {}",
            verdict.overridden_in.join(", ")
        ));
    }
    (ReadyReason::Served, message)
}

/// The whole `.status` a record should have. Written by server-side apply, so a field
/// left out here (no overrides any more) is removed. `probe` is a `MetricsBackend`'s
/// last probe, or that of the backend a definition reads.
pub fn desired_status(
    record: &ObjectRecord,
    verdict: Option<&Verdict>,
    probe: Option<&Probe>,
    now: &str,
) -> DefinitionStatus {
    let (reason, message) = ready_condition(record, verdict, probe);
    let status = if reason.is_ready() {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    // The transition time moves only when the condition's status does.
    let previous = record
        .status
        .as_ref()
        .and_then(|s| s.conditions().iter().find(|c| c.type_ == READY));
    let since = match previous {
        Some(condition) if condition.status == status => condition
            .last_transition_time
            .clone()
            .unwrap_or_else(|| now.to_string()),
        _ => now.to_string(),
    };
    let conditions = vec![Condition {
        type_: READY.to_string(),
        status,
        reason: reason.as_str().to_string(),
        message,
        last_transition_time: Some(since),
        observed_generation: record.generation,
    }];
    if record.id.kind == DefinitionKind::MetricsBackend {
        DefinitionStatus::Backend(BackendStatus {
            conditions,
            observed_generation: record.generation,
            last_probe: probe.map(|probe| LastProbe {
                time: jiff::Timestamp::try_from(probe.at)
                    .map(|at| at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default(),
                result: probe.result.as_str().to_string(),
                message: probe.message.clone(),
            }),
        })
    } else if record.id.kind == DefinitionKind::CustomPrometheusRules {
        DefinitionStatus::Rules(RulesStatus {
            conditions,
            observed_generation: record.generation,
            external_metrics: verdict
                .map(|v| v.external_metrics.clone())
                .unwrap_or_default(),
        })
    } else {
        DefinitionStatus::Metric(MetricStatus {
            conditions,
            observed_generation: record.generation,
            metric_name: verdict.and_then(|v| v.metric_name.clone()),
            overridden_in: verdict.map(|v| v.overridden_in.clone()).unwrap_or_default(),
        })
    }
}

/// Whether the server's status already says what `desired` says.
pub fn is_current(record: &ObjectRecord, desired: &DefinitionStatus) -> bool {
    record.status.as_ref() == Some(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{Problem, Reason};
    use crate::definitions::{Definition, DefinitionBody, DefinitionId};
    use metrics_registry_crds::MetricSpec;
    use serde_json::{Value, json};

    /// The status as the API server would store it.
    fn stored(status: &DefinitionStatus) -> Value {
        serde_json::to_value(status).unwrap()
    }

    fn record(status: Option<DefinitionStatus>) -> ObjectRecord {
        let id = DefinitionId {
            kind: DefinitionKind::ClusterServiceMetric,
            namespace: None,
            name: "m".into(),
        };
        ObjectRecord {
            id: id.clone(),
            generation: Some(3),
            decoded: Ok(Definition {
                id,
                generation: Some(3),
                created: None,
                body: DefinitionBody::Metric(MetricSpec::default()),
            }),
            status,
        }
    }

    #[test]
    fn served_definition_names_its_metric_and_overrides() {
        let verdict = Verdict {
            metric_name: Some("latency".into()),
            overridden_in: vec!["team-a".into()],
            ..Verdict::default()
        };
        let status = stored(&desired_status(&record(None), Some(&verdict), None, "T1"));
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][0]["reason"], "Served");
        assert_eq!(
            status["conditions"][0]["message"],
            "served as services/latency; overridden in namespace(s) team-a"
        );
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["metricName"], "latency");
        assert_eq!(status["overriddenIn"], json!(["team-a"]));
    }

    #[test]
    fn transition_time_moves_only_with_the_status_and_equal_status_is_not_rewritten() {
        let bad = Verdict {
            problem: Some(Problem {
                reason: Reason::InvalidQuery,
                message: "parse error".into(),
            }),
            metric_name: Some("m".into()),
            ..Verdict::default()
        };
        let first = desired_status(&record(None), Some(&bad), None, "T1");
        assert_eq!(stored(&first)["conditions"][0]["reason"], "InvalidQuery");
        let written = record(Some(first));
        let again = desired_status(&written, Some(&bad), None, "T2");
        assert_eq!(stored(&again)["conditions"][0]["lastTransitionTime"], "T1");
        assert!(is_current(&written, &again));
        let fixed = desired_status(
            &written,
            Some(&Verdict {
                metric_name: Some("m".into()),
                ..Verdict::default()
            }),
            None,
            "T3",
        );
        assert_eq!(stored(&fixed)["conditions"][0]["lastTransitionTime"], "T3");
        assert!(!is_current(&written, &fixed));
    }

    #[test]
    fn unreadable_objects_say_why() {
        let mut unreadable = record(None);
        unreadable.decoded = Err("ServiceMetric a/b: invalid spec: missing field `query`".into());
        let status = stored(&desired_status(&unreadable, None, None, "T"));
        assert_eq!(status["conditions"][0]["reason"], "InvalidSpec");
        assert!(
            status["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("missing field")
        );
    }

    #[test]
    fn fields_that_no_longer_apply_are_left_out_for_server_side_apply_to_remove() {
        let overridden = Verdict {
            metric_name: Some("m".into()),
            overridden_in: vec!["a".into()],
            ..Verdict::default()
        };
        let before = desired_status(&record(None), Some(&overridden), None, "T1");
        let after = desired_status(
            &record(Some(before)),
            Some(&Verdict {
                metric_name: Some("m".into()),
                ..Verdict::default()
            }),
            None,
            "T2",
        );
        assert!(
            stored(&after).get("overriddenIn").is_none(),
            "{}",
            stored(&after)
        );
    }
}
