//! Oracles for the product's promises, written so that they do not share its blind spots:
//!
//! - [`pinning`]: does every series selector of a query carry `namespace="<ns>"`? It walks
//!   the parser's *serialized* tree generically, so it reaches every node whether or not
//!   anybody thought of that node type — unlike a visitor, which sees only the children
//!   its author lists.
//! - [`grammar`]: PromQL templates from a grammar covering every expression form, every
//!   aggregation with a parameter, and selectors in every position, so the inputs are not
//!   the ones the product's authors picked.

pub mod grammar;
pub mod pinning;
