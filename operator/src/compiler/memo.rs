//! Parsing is most of what compiling costs, and generated folders repeat the same query
//! in every namespace. This remembers, per query text, whether it parses and how it is
//! isolated, so each distinct template is parsed once; the answers are exactly those of
//! [`promql::validate`], [`promql::isolate`] and [`separable::separable`].

use super::{promql, separable};
use metrics_registry_apiserver::table::Segment;
use std::collections::HashMap;
use std::sync::Mutex;

/// Kept small: past this many templates the memo starts over.
const MAX_ENTRIES: usize = 10_000;
/// The namespace isolation is worked out with, then replaced by the real one.
const NAMESPACE_STAND_IN: &str = "metrics-registry-namespace-stand-in";

/// A template with the namespace and object label names it is validated with.
type ValidationKey = (Vec<Segment>, String, String);

#[derive(Debug, Default)]
pub struct ParseMemo {
    validated: Mutex<HashMap<ValidationKey, Result<(), String>>>,
    /// `None`: the template names a namespace itself, so isolation depends on which.
    isolated: Mutex<HashMap<Vec<Segment>, Option<Vec<Segment>>>>,
    /// A template with its object label: whether it is separable by object.
    separable: Mutex<HashMap<(Vec<Segment>, String), bool>>,
}

fn remember<K: std::hash::Hash + Eq, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    key: K,
    compute: impl FnOnce() -> V,
) -> V {
    if let Some(value) = map.lock().expect("memo lock").get(&key) {
        return value.clone();
    }
    let value = compute();
    let mut map = map.lock().expect("memo lock");
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value.clone());
    value
}

/// A Kubernetes namespace name, which the PromQL printer writes as it is.
fn is_plain_name(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ParseMemo {
    pub fn validate(
        &self,
        segments: &[Segment],
        namespace_label: &str,
        object_label: &str,
    ) -> Result<(), String> {
        let key = (
            segments.to_vec(),
            namespace_label.to_string(),
            object_label.to_string(),
        );
        remember(&self.validated, key, || {
            promql::validate(segments, namespace_label, object_label)
        })
    }

    pub fn separable(&self, segments: &[Segment], object_label: &str) -> bool {
        let key = (segments.to_vec(), object_label.to_string());
        remember(&self.separable, key, || {
            separable::separable(segments, object_label)
        })
    }

    pub fn isolate(&self, segments: &[Segment], namespace: &str) -> Result<Vec<Segment>, String> {
        let mentions_stand_in = segments.iter().any(|segment| match segment {
            Segment::Literal(text) => text.contains(NAMESPACE_STAND_IN),
            _ => false,
        });
        if !is_plain_name(namespace) || mentions_stand_in {
            return promql::isolate(segments, namespace);
        }
        // Isolating with the stand-in fails for any template that names a namespace (none
        // equals the stand-in), so a success is one where every selector just gets the
        // namespace matcher added.
        let generic = remember(&self.isolated, segments.to_vec(), || {
            promql::isolate(segments, NAMESPACE_STAND_IN).ok()
        });
        match generic {
            Some(generic) => Ok(generic
                .into_iter()
                .map(|segment| match segment {
                    Segment::Literal(text) => {
                        Segment::Literal(text.replace(NAMESPACE_STAND_IN, namespace))
                    }
                    other => other,
                })
                .collect()),
            None => promql::isolate(segments, namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::template::split_placeholders;

    #[test]
    fn remembered_answers_equal_fresh_ones() {
        let memo = ParseMemo::default();
        let templates = [
            "sum(a{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            "max_over_time(rate(c{<<.LabelMatchers>>}[1m])[5m:30s]) + on() group_left() absent(d)",
            "x{<<.LabelMatchers>>} + y{namespace=\"team-a\"}",
            "x{<<.LabelMatchers>>} + y{namespace=~\".+\"}",
            "sum(x{<<.LabelMatchers>>}",
            "x{<<.LabelMatchers>>} or y{a=\"metrics-registry-namespace-stand-in\"}",
        ];
        for round in 0..2 {
            for template in templates {
                let segments = split_placeholders(template).unwrap();
                for namespace in [
                    "team-a",
                    "team-b",
                    "a\"b",
                    "metrics-registry-namespace-stand-in",
                ] {
                    assert_eq!(
                        memo.isolate(&segments, namespace),
                        promql::isolate(&segments, namespace),
                        "round {round}: {template} in {namespace}"
                    );
                }
                assert_eq!(
                    memo.validate(&segments, "namespace", "pod"),
                    promql::validate(&segments, "namespace", "pod")
                );
            }
        }
    }
}
