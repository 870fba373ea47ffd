//! Value parsers shared by the flags of every command.

use std::time::Duration;

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    promql_parser::util::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 10s or 500ms: {e}"))
}

/// A duration where zero means "off".
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text
        .trim_end_matches(['s', 'm', 'h'])
        .chars()
        .all(|c| c == '0')
        && !text.is_empty()
    {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=VALUE")?;
    if name.is_empty() {
        return Err("header name is empty".into());
    }
    Ok((name.trim().to_string(), value.to_string()))
}
