//! The reasons users filter by, in one list: each with where it is shown and the section of
//! docs/troubleshooting.md that explains it. Built from the enums the product writes its
//! statuses and answers from, so the guide's test cannot miss a reason the code gains.

use crate::sinks::status::ReadyReason;
use metrics_registry_apiserver::error::StatusReason;

/// Where a reason is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShownIn {
    /// The `Ready` condition of a definition (and `check`'s output).
    DefinitionStatus,
    /// The `reason` of a `metav1.Status` the metrics APIs answer.
    ApiAnswer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub shown_in: ShownIn,
    pub reason: &'static str,
    /// The heading's anchor in docs/troubleshooting.md, e.g. `404-notfound`.
    pub doc_anchor: String,
}

/// The anchor of the guide's table of `Ready` reasons.
const DEFINITION_STATUS_ANCHOR: &str = "2-definition-status-ready-reasons";

pub fn reasons() -> Vec<CatalogueEntry> {
    let definition = ReadyReason::all().map(|reason| CatalogueEntry {
        shown_in: ShownIn::DefinitionStatus,
        reason: reason.as_str(),
        doc_anchor: DEFINITION_STATUS_ANCHOR.to_string(),
    });
    let answers = StatusReason::ALL.into_iter().map(|reason| CatalogueEntry {
        shown_in: ShownIn::ApiAnswer,
        reason: reason.as_str(),
        doc_anchor: reason.doc_anchor(),
    });
    definition.chain(answers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once() {
        let reasons = reasons();
        let mut names: Vec<&str> = reasons.iter().map(|e| e.reason).collect();
        names.sort();
        names.dedup();
        // Distinct names: a definition reason spelt like an API one would confuse both.
        assert_eq!(names.len(), reasons.len(), "{names:?}");
        assert!(names.contains(&"NamespaceEscape") && names.contains(&"Timeout"));
    }
}
