//! The namespace pin, checked on the parsed query as JSON: any object holding a
//! `matchers` list is a series selector (vector or matrix), wherever it sits.

use serde_json::Value;

/// The selectors of `query` that do not carry `namespace="<namespace>"` in every
/// alternative of their matchers, as printed by the parser. An error when the query does
/// not parse or has a node the parser cannot serialize (which could hide a selector).
pub fn unpinned_selectors(query: &str, namespace: &str) -> Result<Vec<String>, String> {
    let expr = promql_parser::parser::parse(query).map_err(|e| format!("{e} (in {query})"))?;
    let tree = serde_json::to_value(&expr).map_err(|e| format!("unserializable node: {e}"))?;
    let mut unpinned = Vec::new();
    visit(&tree, namespace, &mut unpinned);
    Ok(unpinned)
}

/// How many series selectors `query` has, so a caller can tell a pinned query from one
/// with no selector at all.
pub fn selector_count(query: &str) -> Result<usize, String> {
    let expr = promql_parser::parser::parse(query).map_err(|e| format!("{e} (in {query})"))?;
    let tree = serde_json::to_value(&expr).map_err(|e| format!("unserializable node: {e}"))?;
    let mut count = 0;
    count_selectors(&tree, &mut count);
    Ok(count)
}

fn visit(value: &Value, namespace: &str, unpinned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("matchers") && !pinned(map, namespace) {
                unpinned.push(value.to_string());
            }
            for child in map.values() {
                visit(child, namespace, unpinned);
            }
        }
        Value::Array(items) => {
            for item in items {
                visit(item, namespace, unpinned);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn count_selectors(value: &Value, count: &mut usize) {
    match value {
        Value::Object(map) => {
            *count += usize::from(map.contains_key("matchers"));
            map.values().for_each(|child| count_selectors(child, count));
        }
        Value::Array(items) => items.iter().for_each(|item| count_selectors(item, count)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Every group a selector matches by — the plain list and each `or` alternative — must
/// hold the equality matcher; an empty plain list beside alternatives is no group.
fn pinned(selector: &serde_json::Map<String, Value>, namespace: &str) -> bool {
    let plain = selector.get("matchers").and_then(Value::as_array);
    let alternatives = selector.get("or_matchers").and_then(Value::as_array);
    let mut groups: Vec<&Vec<Value>> = Vec::new();
    match (plain, alternatives) {
        (Some(plain), Some(alternatives)) if !alternatives.is_empty() => {
            if !plain.is_empty() {
                groups.push(plain);
            }
            groups.extend(alternatives.iter().filter_map(Value::as_array));
            if groups.len() < alternatives.len() {
                return false;
            }
        }
        (Some(plain), _) => groups.push(plain),
        (None, _) => return false,
    }
    groups.iter().all(|group| {
        group.iter().any(|matcher| {
            matcher.get("name").and_then(Value::as_str) == Some("namespace")
                && matcher.get("type").and_then(Value::as_str) == Some("=")
                && matcher.get("value").and_then(Value::as_str) == Some(namespace)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_selectors_in_every_position() {
        // One unpinned selector `u` in each place a selector can hide; everything else pinned.
        let p = r#"p{namespace="a"}"#;
        for query in [
            "u".to_string(),
            "u[5m]".to_string(),
            format!("topk(scalar(sum(u)), {p})"),
            format!("quantile(scalar(u), {p})"),
            "count_values(\"l\", u)".to_string(),
            format!("limitk(scalar(u), {p})"),
            format!("limit_ratio(scalar(u), {p})"),
            format!("rate(u[5m]) + {p}"),
            format!("max_over_time(u[5m:1m]) * {p}"),
            format!("-u + {p}"),
            format!("({p} + (u))"),
            format!("{p} @ start() + u @ end()"),
            format!("{p} offset 5m + u offset 1m"),
            "label_replace(u, \"d\", \"$1\", \"s\", \"(.*)\")".to_string(),
            format!("histogram_quantile(scalar(u), {p})"),
            format!("{p} or on() vector(scalar(u))"),
            format!("{p}{{a=\"1\" or b=\"2\"}}").replace(r#"{namespace="a"}{"#, "{"),
        ] {
            let unpinned = unpinned_selectors(&query, "a").unwrap();
            assert_eq!(unpinned.len(), 1, "{query}: {unpinned:?}");
        }
    }

    #[test]
    fn pinned_queries_pass_and_or_alternatives_each_need_the_pin() {
        let query = r#"sum by (pod) (rate(x{namespace="a",pod="p"}[5m])) / on() group_left() topk(1, y{namespace="a"})"#;
        assert_eq!(
            unpinned_selectors(query, "a").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(selector_count(query).unwrap(), 2);
        assert_eq!(unpinned_selectors(query, "b").unwrap().len(), 2);
        let half = r#"x{namespace="a" or job="j"}"#;
        assert_eq!(unpinned_selectors(half, "a").unwrap().len(), 1);
        let both = r#"x{namespace="a",job="j" or namespace="a"}"#;
        assert!(unpinned_selectors(both, "a").unwrap().is_empty());
        // A regex or negative matcher is no pin.
        assert_eq!(
            unpinned_selectors(r#"x{namespace=~"a"}"#, "a")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            unpinned_selectors(r#"x{namespace!="b"}"#, "a")
                .unwrap()
                .len(),
            1
        );
    }
}
