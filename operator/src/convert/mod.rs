//! `metrics-registry convert`: a prometheus-adapter configuration in, definitions out.
//!
//! Pure apart from [`series`] (the Prometheus lookup) and [`command`] (the CLI wiring): the
//! conversion itself takes the configuration and, optionally, the series Prometheus listed
//! for each `seriesQuery`, and returns the objects plus one note per thing it could not
//! express or had to assume.

pub mod command;
pub mod config;
mod custom;
pub mod discovery;
mod external;
mod naming;
pub mod output;
mod promql;
mod resource_rules;
mod resources;
pub mod series;
mod template;

use crate::compiler::{CompileOptions, compile};
use crate::definitions::Definition;
use config::{AdapterConfig, DiscoveryRule, Source};
use discovery::Discovery;
use naming::Naming;
use output::Document;
use resources::ResourceLabels;
use std::collections::BTreeSet;
use std::fmt;
use template::Action;

/// Where definitions go: one cluster-wide definition per metric, or one per namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub scope: Scope,
    /// Namespaced scope: every definition goes into each. Cluster scope: where
    /// NamespaceMetrics go (there is no cluster-wide kind for them).
    pub namespaces: Vec<String>,
    pub external_rules_as: ExternalRulesAs,
}

/// What `externalRules` become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalRulesAs {
    /// `ClusterExternalMetric`s: live queries, filtered as the adapter filters.
    #[default]
    LiveQueries,
    /// `CustomPrometheusRules` recording `kube_adapter_metric_*` series.
    RecordingRules,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespaced,
}

/// Something the output does not carry over as the adapter had it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `rules[2]`, `externalRules[0]`, `resourceRules`, …
    pub origin: String,
    pub kind: NoteKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Converted on an assumption stated in the message.
    Assumed,
    /// Converted, but served differently from the adapter in the way the message says.
    Differs,
    /// Two rules or series produce the same metric; the last one is kept, as the adapter does.
    Overlap,
    /// Part of a rule is not in the output.
    NotConverted,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::Assumed => "assumed",
            NoteKind::Differs => "differs",
            NoteKind::Overlap => "overlap",
            NoteKind::NotConverted => "not converted",
        };
        write!(f, "{}: {kind}: {}", self.origin, self.message)
    }
}

#[derive(Debug, Default)]
pub struct Conversion {
    pub documents: Vec<Document>,
    pub notes: Vec<Note>,
}

impl Conversion {
    fn note(&mut self, origin: &str, kind: NoteKind, message: impl Into<String>) {
        let note = Note {
            origin: origin.to_string(),
            kind,
            message: message.into(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// The distinct `seriesQuery` values, which Prometheus is asked about once each.
pub fn series_queries(config: &AdapterConfig) -> Vec<String> {
    let mut seen = BTreeSet::new();
    config
        .rules
        .iter()
        .chain(&config.external_rules)
        .map(|rule| rule.series_query.clone())
        .filter(|query| !query.is_empty() && seen.insert(query.clone()))
        .collect()
}

pub fn convert(
    config: &AdapterConfig,
    source: &Source,
    discovery: Discovery<'_>,
    options: &Options,
) -> Conversion {
    let mut conversion = Conversion::default();
    if let Source::HelmValues {
        default_rules: true,
    } = source
    {
        conversion.note(
            "rules.default",
            NoteKind::NotConverted,
            "the chart adds its built-in rules, which are not in this file; convert the ConfigMap `helm template` renders to include them",
        );
    }
    if let Some(rules) = &config.resource_rules {
        resource_rules::convert(rules, &mut conversion);
    }
    for (index, rule) in config.rules.iter().enumerate() {
        let origin = format!("rules[{index}]");
        if let Some(prepared) = prepare(&origin, rule, &mut conversion) {
            custom::convert_rule(&prepared, discovery, options, &mut conversion);
        }
    }
    for (index, rule) in config.external_rules.iter().enumerate() {
        let origin = format!("externalRules[{index}]");
        if let Some(prepared) = prepare(&origin, rule, &mut conversion) {
            match options.external_rules_as {
                ExternalRulesAs::LiveQueries => {
                    external::convert_rule_live(&prepared, discovery, &mut conversion)
                }
                ExternalRulesAs::RecordingRules => {
                    external::convert_rule_recorded(&prepared, discovery, &mut conversion)
                }
            }
        }
    }
    if !config.external_rules.is_empty() {
        conversion.note(
            "externalRules",
            NoteKind::Differs,
            "every kube_adapter_metric_* series is an external metric here, not only those the rules above record; one no object decides for is read only from the HPA's namespace and from series without a namespace label (--external-metrics-cluster-wide reads every namespace's)",
        );
    }
    keep_last_of_each_metric(&mut conversion);
    output::make_names_unique(&mut conversion.documents);
    keep_valid(&mut conversion);
    conversion
}

/// When rules produce the same metric (or external metric) twice, the adapter serves the
/// one of the last rule; the earlier ones are dropped with a line.
fn keep_last_of_each_metric(conversion: &mut Conversion) {
    let key = |document: &Document| {
        let metric = document.spec["metricName"]
            .as_str()
            .or(document.spec["groups"][0]["rules"][0]["record"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| document.name.clone());
        (document.kind, document.namespace.clone(), metric)
    };
    let keys: Vec<_> = conversion.documents.iter().map(key).collect();
    let mut dropped = Vec::new();
    for (index, document_key) in keys.iter().enumerate() {
        if let Some(later) = keys[index + 1..].iter().position(|k| k == document_key) {
            let later = &conversion.documents[index + 1 + later];
            let earlier = &conversion.documents[index];
            dropped.push(index);
            let note = Note {
                origin: earlier.origin.clone(),
                kind: NoteKind::Overlap,
                message: format!(
                    "{} {}: {} produces it too; like the adapter, the last rule's is kept",
                    document_key.0.name(),
                    document_key.2,
                    later.origin
                ),
            };
            if !conversion.notes.contains(&note) {
                conversion.notes.push(note);
            }
        }
    }
    let mut index = 0;
    conversion.documents.retain(|_| {
        let keep = !dropped.contains(&index);
        index += 1;
        keep
    });
}

/// A rule whose parts are all understood.
struct Prepared<'r> {
    origin: String,
    rule: &'r DiscoveryRule,
    naming: Naming,
    resources: ResourceLabels,
    query: Vec<Action>,
}

impl Prepared<'_> {
    fn uses(&self, field: &str) -> bool {
        template::fields(&self.query).contains(&field)
    }

    /// The series the rule names, as the adapter's discovery finds them; `None`, with a
    /// note saying why, when there are none to convert.
    fn discover(
        &self,
        discovery: Discovery<'_>,
        conversion: &mut Conversion,
    ) -> Option<discovery::Discovered> {
        let origin = self.origin.as_str();
        let mut discovered = match discovery::discover(
            self.rule,
            &self.naming,
            &self.resources,
            self.uses("Series"),
            discovery,
        ) {
            Ok(discovered) => discovered,
            Err(message) => {
                conversion.note(origin, NoteKind::NotConverted, message);
                return None;
            }
        };
        if let Some(assumption) = discovered.assumption.take() {
            conversion.note(origin, NoteKind::Assumed, assumption);
        }
        if discovered.found.is_empty() {
            conversion.note(
                origin,
                NoteKind::NotConverted,
                format!(
                    "Prometheus lists no series for seriesQuery {:?} that pass the rule's filters; the adapter serves nothing for it either",
                    self.rule.series_query.trim()
                ),
            );
            return None;
        }
        Some(discovered)
    }
}

const QUERY_FIELDS: [&str; 3] = ["Series", "LabelMatchers", "GroupBy"];

fn prepare<'r>(
    origin: &str,
    rule: &'r DiscoveryRule,
    conversion: &mut Conversion,
) -> Option<Prepared<'r>> {
    let mut fail = |message: String| {
        conversion.note(origin, NoteKind::NotConverted, message);
        None
    };
    if rule.series_query.trim().is_empty() {
        return fail("no seriesQuery, so the adapter discovers nothing for this rule".into());
    }
    if rule.metrics_query.trim().is_empty() {
        return fail(
            "no metricsQuery: the adapter renders an empty query and fails every request for this rule"
                .into(),
        );
    }
    let query = match template::parse(&rule.metrics_query) {
        Ok(query) => query,
        Err(e) => return fail(format!("metricsQuery: {e}")),
    };
    if let Some(field) = template::fields(&query)
        .into_iter()
        .find(|f| !QUERY_FIELDS.contains(f))
    {
        return fail(format!(
            "metricsQuery uses <<.{field}>>; definitions have only <<.LabelMatchers>> and <<.GroupBy>> (and <<.Series>> is filled in here)"
        ));
    }
    let naming = match Naming::new(rule) {
        Ok(naming) => naming,
        Err(e) => return fail(e),
    };
    let resources = match ResourceLabels::new(&rule.resources) {
        Ok(resources) => resources,
        Err(e) => return fail(e),
    };
    for (label, resource) in &resources.unknown {
        conversion.note(
            origin,
            NoteKind::NotConverted,
            format!(
                "resources.overrides.{label}: {resource} is not a built-in resource (a custom resource?); metrics-registry serves pods, services, ingresses, deployments, statefulsets, daemonsets and namespaces"
            ),
        );
    }
    Some(Prepared {
        origin: origin.to_string(),
        rule,
        naming,
        resources,
        query,
    })
}

/// Runs the output through the compiler `check` uses and drops what it refuses, so the
/// written files always pass `metrics-registry check`.
fn keep_valid(conversion: &mut Conversion) {
    let definitions: Vec<(usize, Definition)> = conversion
        .documents
        .iter()
        .enumerate()
        .filter_map(|(index, document)| {
            Definition::from_object(&document.object())
                .ok()
                .flatten()
                .map(|definition| (index, definition))
        })
        .collect();
    let compiled = compile(
        &definitions
            .iter()
            .map(|(_, d)| d.clone())
            .collect::<Vec<_>>(),
        CompileOptions::default(),
    );
    let mut refused = BTreeSet::new();
    for (index, definition) in &definitions {
        if let Some(Some(problem)) = compiled.verdicts.get(&definition.id).map(|v| &v.problem) {
            refused.insert(*index);
            let origin = conversion.documents[*index].origin.clone();
            conversion.note(
                &origin,
                NoteKind::NotConverted,
                format!("{}: {}: {}", definition.id, problem.reason, problem.message),
            );
        }
    }
    let mut index = 0;
    conversion.documents.retain(|_| {
        let keep = !refused.contains(&index);
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests;
