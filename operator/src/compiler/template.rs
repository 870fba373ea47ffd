//! Splits a query template at its placeholders. Users write `<<.LabelMatchers>>` (the
//! prometheus-adapter spelling) or `«.LabelMatchers»` (as pasted from typeset docs).
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use metrics_registry_apiserver::table::Segment;

const KNOWN: &str = "only <<.LabelMatchers>> and <<.GroupBy>> exist";

/// Segments of `query`, or a message naming the offending placeholder.
pub fn split_placeholders(query: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = query;
    while !rest.is_empty() {
        let (open, close) = if rest.starts_with("<<") {
            ("<<", ">>")
        } else if rest.starts_with('«') {
            ("«", "»")
        } else {
            let c = rest.chars().next().expect("non-empty");
            // PromQL has no `>>` or `»`, so either can only be half of a broken placeholder.
            if c == '»' || rest.starts_with(">>") {
                return Err(format!(
                    "stray {:?} without an opening placeholder; {KNOWN}",
                    if c == '»' { "»" } else { ">>" }
                ));
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let body_start = &rest[open.len()..];
        let Some(end) = body_start.find(close) else {
            return Err(format!(
                "placeholder opened with {open:?} is never closed; {KNOWN}"
            ));
        };
        let inner = body_start[..end].trim();
        let segment = match inner {
            ".LabelMatchers" => Segment::LabelMatchers,
            ".GroupBy" => Segment::GroupBy,
            other => return Err(format!("unknown placeholder {open}{other}{close}; {KNOWN}")),
        };
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(segment);
        rest = &body_start[end + close.len()..];
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.into())
    }

    #[test]
    fn both_spellings_and_spaces() {
        assert_eq!(
            split_placeholders("sum(x{<<.LabelMatchers>>}) by (« .GroupBy »)").unwrap(),
            vec![
                lit("sum(x{"),
                Segment::LabelMatchers,
                lit("}) by ("),
                Segment::GroupBy,
                lit(")")
            ]
        );
        assert_eq!(
            split_placeholders("x{«.LabelMatchers»,a=\"b\"}").unwrap(),
            vec![lit("x{"), Segment::LabelMatchers, lit(",a=\"b\"}")]
        );
    }

    #[test]
    fn unknown_and_broken_placeholders_are_named() {
        assert!(
            split_placeholders("<<.Series>>{<<.LabelMatchers>>}")
                .unwrap_err()
                .contains("<<.Series>>")
        );
        assert!(
            split_placeholders("x{<<.LabelMatchers}")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(
            split_placeholders("x{.LabelMatchers>>}")
                .unwrap_err()
                .contains("stray")
        );
        assert!(
            split_placeholders("x{«.LabelValuesByName»}")
                .unwrap_err()
                .contains("«.LabelValuesByName»")
        );
    }

    #[test]
    fn comparison_operators_are_not_placeholders() {
        assert_eq!(
            split_placeholders("x < 5 > 2").unwrap(),
            vec![lit("x < 5 > 2")]
        );
    }
}
