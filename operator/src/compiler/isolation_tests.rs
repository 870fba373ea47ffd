//! Namespace isolation against an oracle that shares none of its code: templates from
//! a grammar nobody hand-picked, compiled as the server compiles them (the incremental
//! compiler, with its parse memo) and as `check`/`convert` do (`compile`), rendered for a
//! hostile request, then parsed again and walked as JSON by `metrics_registry_oracle`.
//! Every selector anywhere in an accepted query must carry `namespace="team-a"`.

use super::*;
use crate::definitions::DefinitionBody;
use crate::definitions::{DefinitionId, DefinitionKind};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_oracle::grammar::{Dialect, sample, template};
use metrics_registry_oracle::pinning::unpinned_selectors;
use std::sync::Arc;

const TENANT: &str = "team-a";

fn definition(query: &str, name: &str) -> Definition {
    Definition {
        id: DefinitionId {
            kind: DefinitionKind::ServiceMetric,
            namespace: Some(TENANT.into()),
            name: name.into(),
        },
        generation: Some(1),
        created: None,
        body: DefinitionBody::Metric(MetricSpec {
            query: query.into(),
            metric_name: Some(name.into()),
            ..MetricSpec::default()
        }),
    }
}

/// The query a request for one object gets, with an object name that tries to close
/// the selector and read another namespace.
fn rendered(rule: &MetricRule) -> String {
    render_query(
        rule,
        &RenderRequest {
            namespace: TENANT,
            objects: ObjectSelection::One("svc\"} or secret_metric{a=\""),
            metric_matchers: &["job=\"exporter\"".to_string()],
        },
    )
}

/// Whether the oracle finds a selector without the pin in what `rule` serves.
fn escape(template: &str, rule: &MetricRule) -> Option<String> {
    let query = rendered(rule);
    match unpinned_selectors(&query, TENANT) {
        Ok(unpinned) if unpinned.is_empty() => None,
        Ok(unpinned) => Some(format!(
            "{template:?} is served as {query}\n  unpinned: {unpinned:?}"
        )),
        Err(error) => Some(format!(
            "{template:?} is served as {query}, which the oracle cannot read: {error}"
        )),
    }
}

fn templates(dialect: Dialect, count: usize, seed: u8) -> Vec<String> {
    sample(&template(dialect, "team-b"), count, seed)
}

#[test]
fn no_accepted_template_reads_beyond_its_namespace() {
    let templates = templates(Dialect::Parser, 3000, 13);
    let definitions: Vec<Definition> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| definition(t, &format!("m{i}")))
        .collect();

    // As the server compiles: incrementally, through the parse memo.
    let mut server = IncrementalCompiler::new(CompileOptions::default());
    server.apply(
        definitions
            .iter()
            .cloned()
            .map(|d| Change::Upsert(Arc::new(d))),
    );
    let served = server.table();
    // As `check` and `convert` compile: the whole snapshot at once.
    let checked = compile(&definitions, CompileOptions::default());

    let (mut accepted, mut escapes) = (0, Vec::new());
    for (i, template) in templates.iter().enumerate() {
        let metric = format!("m{i}");
        for table in [&*served, &checked.table] {
            if let Some(rule) = table.lookup(ObjectKind::Service, &metric, TENANT) {
                accepted += 1;
                escapes.extend(escape(template, rule));
            }
        }
    }
    assert!(
        escapes.is_empty(),
        "{} accepted templates read beyond {TENANT}:\n{}",
        escapes.len(),
        escapes[..escapes.len().min(5)].join("\n")
    );
    // Not vacuous: a fair share is accepted, and so pinned, not only refused.
    assert!(
        accepted >= templates.len() / 5,
        "only {accepted} of {} templates accepted",
        2 * templates.len()
    );
}

#[test]
fn escapes_through_every_position_are_refused_with_namespace_escape() {
    for query in [
        // The aggregation parameter the issue found: φ computed from another namespace.
        "quantile(scalar(sum(x{namespace=\"other\"})) / 1e4, x{<<.LabelMatchers>>})",
        "topk(scalar(count(y{namespace=~\".+\"})), x{<<.LabelMatchers>>})",
        "bottomk(scalar(y{namespace!=\"team-a\"}), x{<<.LabelMatchers>>})",
        "limitk(scalar(y{namespace=\"other\"}), x{<<.LabelMatchers>>})",
        "limit_ratio(scalar(y{namespace=\"other\"}), x{<<.LabelMatchers>>})",
        "x{<<.LabelMatchers>>} + y{job=\"a\" or namespace=\"other\"}",
        "x{<<.LabelMatchers>>} + max_over_time(y{namespace=\"other\"}[5m:1m] @ end())",
        "x{<<.LabelMatchers>>} + -(y{namespace=\"other\"} offset 5m)",
        // info() reads target_info series that no selector of the query names.
        "info(x{<<.LabelMatchers>>})",
    ] {
        let compiled = compile(&[definition(query, "m")], CompileOptions::default());
        let verdict = compiled.verdicts.values().next().expect("one verdict");
        let Some(problem) = &verdict.problem else {
            panic!("{query}: accepted ({verdict:?})");
        };
        assert_eq!(
            problem.reason,
            Reason::NamespaceEscape,
            "{query}: {problem:?}"
        );
    }
}

#[test]
fn selectors_in_aggregation_parameters_are_pinned() {
    let query = "topk(scalar(sum(y)), sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}))";
    let compiled = compile(&[definition(query, "m")], CompileOptions::default());
    let rule = compiled
        .table
        .lookup(ObjectKind::Service, "m", TENANT)
        .expect("accepted");
    assert_eq!(escape(query, rule), None);
    assert!(
        rendered(rule).contains("y{namespace=\"team-a\"}"),
        "{}",
        rendered(rule)
    );
}
