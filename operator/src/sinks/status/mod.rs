//! The status each definition should carry, computed from its verdict. Pure; the
//! controller patches only records whose status differs.

pub mod writer;

use crate::compiler::Verdict;
use crate::definitions::DefinitionKind;
use crate::sources::cluster::store::ObjectRecord;
use serde_json::{Value, json};

fn ready_condition(record: &ObjectRecord, verdict: Option<&Verdict>) -> (bool, String, String) {
    if let Err(message) = &record.decoded {
        return (false, "InvalidSpec".into(), message.clone());
    }
    let Some(verdict) = verdict else {
        return (false, "Pending".into(), "not compiled yet".into());
    };
    if let Some(problem) = &verdict.problem {
        return (false, problem.reason.to_string(), problem.message.clone());
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
        return (true, "Accepted".into(), message);
    }
    let object = record
        .id
        .kind
        .object()
        .map(|o| o.resource())
        .unwrap_or_default();
    let metric = verdict.metric_name.clone().unwrap_or_default();
    let mut message = format!("served as {object}/{metric}");
    if !verdict.overridden_in.is_empty() {
        message.push_str(&format!(
            "; overridden in namespace(s) {}",
            verdict.overridden_in.join(", ")
        ));
    }
    (true, "Served".into(), message)
}

/// The whole `.status` for a record (explicit nulls clear fields in a merge patch).
pub fn desired_status(record: &ObjectRecord, verdict: Option<&Verdict>, now: &str) -> Value {
    let (ready, reason, message) = ready_condition(record, verdict);
    let status = if ready { "True" } else { "False" };
    // The transition time moves only when the condition's status does.
    let previous = record.status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    let since = match previous {
        Some(c) if c["status"] == status => {
            c["lastTransitionTime"].as_str().unwrap_or(now).to_string()
        }
        _ => now.to_string(),
    };
    let condition = json!({
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": record.generation,
    });
    let mut out = json!({"conditions": [condition], "observedGeneration": record.generation});
    if record.id.kind == DefinitionKind::CustomPrometheusRules {
        let external = verdict
            .map(|v| v.external_metrics.clone())
            .unwrap_or_default();
        out["externalMetrics"] = if external.is_empty() {
            Value::Null
        } else {
            json!(external)
        };
    } else {
        out["metricName"] = verdict
            .and_then(|v| v.metric_name.clone())
            .map(Value::String)
            .unwrap_or(Value::Null);
        let overridden = verdict.map(|v| v.overridden_in.clone()).unwrap_or_default();
        out["overriddenIn"] = if overridden.is_empty() {
            Value::Null
        } else {
            json!(overridden)
        };
    }
    out
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Whether the server's status already says what `desired` says.
pub fn is_current(record: &ObjectRecord, desired: &Value) -> bool {
    without_nulls(&record.status) == without_nulls(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{Problem, Reason};
    use crate::definitions::{Definition, DefinitionBody, DefinitionId};
    use metrics_registry_crds::MetricSpec;

    fn record(status: Value) -> ObjectRecord {
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
        let status = desired_status(&record(Value::Null), Some(&verdict), "T1");
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
        let first = desired_status(&record(Value::Null), Some(&bad), "T1");
        assert_eq!(first["conditions"][0]["reason"], "InvalidQuery");
        let written = record(without_nulls(&first));
        let again = desired_status(&written, Some(&bad), "T2");
        assert_eq!(again["conditions"][0]["lastTransitionTime"], "T1");
        assert!(is_current(&written, &again));
        let fixed = desired_status(
            &written,
            Some(&Verdict {
                metric_name: Some("m".into()),
                ..Verdict::default()
            }),
            "T3",
        );
        assert_eq!(fixed["conditions"][0]["lastTransitionTime"], "T3");
        assert!(!is_current(&written, &fixed));
    }

    #[test]
    fn unreadable_objects_say_why() {
        let mut unreadable = record(Value::Null);
        unreadable.decoded = Err("ServiceMetric a/b: invalid spec: missing field `query`".into());
        let status = desired_status(&unreadable, None, "T");
        assert_eq!(status["conditions"][0]["reason"], "InvalidSpec");
        assert!(
            status["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("missing field")
        );
    }
}
