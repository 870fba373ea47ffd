//! What one batch answer says about each object it covered.

use super::ObjectAnswer;
use crate::prometheus::Sample;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Coverage {
    Names(BTreeSet<String>),
    /// Every object of the namespace (`<objectLabel>!=""`).
    Namespace,
}

impl Coverage {
    pub(super) fn covers(&self, name: &str) -> bool {
        match self {
            Coverage::Names(names) => names.contains(name),
            Coverage::Namespace => true,
        }
    }
}

#[derive(Debug)]
pub(super) struct BatchValues {
    pub(super) coverage: Coverage,
    pub(super) by_name: HashMap<String, ObjectAnswer>,
    /// A series without the object label: no object can be answered from this batch.
    pub(super) ambiguous: bool,
}

impl BatchValues {
    pub(super) fn new(coverage: Coverage, samples: &[Sample], label: &str) -> Self {
        let mut by_name = HashMap::new();
        let mut ambiguous = false;
        for sample in samples {
            match sample.labels.get(label) {
                None => ambiguous = true,
                Some(name) => {
                    by_name
                        .entry(name.to_owned())
                        .and_modify(|answer| *answer = ObjectAnswer::Ambiguous)
                        .or_insert_with(|| ObjectAnswer::Value(sample.clone()));
                }
            }
        }
        BatchValues {
            coverage,
            by_name,
            ambiguous,
        }
    }

    pub(super) fn answer(&self, name: &str) -> ObjectAnswer {
        if self.ambiguous {
            return ObjectAnswer::Ambiguous;
        }
        match self.by_name.get(name) {
            Some(answer) => answer.clone(),
            None if self.coverage.covers(name) => ObjectAnswer::Absent,
            // Cannot happen: a request only waits for a batch that names its object.
            None => ObjectAnswer::Ambiguous,
        }
    }
}
