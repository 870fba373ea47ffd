//! Any text as the query of a namespaced definition: when the compiler accepts it, the
//! query rendered for a hostile request parses and every selector keeps the namespace,
//! as `metrics_registry_oracle` judges it.

use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_crds::MetricSpec;
use metrics_registry_oracle::pinning::unpinned_selectors;

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Ok(query) = std::str::from_utf8(data) else {
            return;
        };
        let definition = Definition {
            id: DefinitionId {
                kind: DefinitionKind::ServiceMetric,
                namespace: Some("team-a".into()),
                name: "m".into(),
            },
            generation: None,
            created: None,
            body: DefinitionBody::Metric(MetricSpec {
                query: query.into(),
                ..MetricSpec::default()
            }),
        };
        let compiled = compile(&[definition], CompileOptions::default());
        let Some(rule) = compiled.table.lookup(ObjectKind::Service, "m", "team-a") else {
            return;
        };
        let rendered = render_query(
            rule,
            &RenderRequest {
                namespace: "team-a\"} or vector(1) or x{a=\"",
                objects: ObjectSelection::One("svc\\\"}"),
                metric_matchers: &[],
            },
        );
        // The oracle walks the parsed query as JSON: it shares no code with the compiler's
        // walker, so it does not share that walker's blind spots.
        match unpinned_selectors(&rendered, "team-a") {
            Ok(unpinned) => assert!(
                unpinned.is_empty(),
                "accepted {query:?} renders selectors without its namespace: {rendered}: {unpinned:?}"
            ),
            Err(error) => panic!("accepted {query:?} renders {rendered}, unreadable: {error}"),
        }
    });
}
