//! The subset of Go's text/template (delimiters `<<` `>>`) that prometheus-adapter configs
//! use: text and plain field references such as `<<.Series>>`, with `<<-`/`->>` trimming.
//! Anything else (pipelines, `if`, `range`, map indexing) is reported, never guessed at.

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Text(String),
    /// `<<.Name>>`, stored without the dot.
    Field(String),
}

pub fn parse(template: &str) -> Result<Vec<Action>, String> {
    let mut actions: Vec<Action> = Vec::new();
    let mut rest = template;
    let mut trim_next = false;
    while let Some(open) = rest.find("<<") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let close = after
            .find(">>")
            .ok_or_else(|| format!("unclosed action {:?}", &rest[open..]))?;
        let mut inner = &after[..close];
        if let Some(trimmed) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = trimmed;
        }
        trim_next = false;
        if let Some(trimmed) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = trimmed;
        }
        push_text(&mut actions, text);
        let field = inner.trim();
        match field.strip_prefix('.') {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                actions.push(Action::Field(name.to_string()));
            }
            _ => return Err(format!("unsupported template action <<{inner}>>")),
        }
        rest = &after[close + 2..];
    }
    push_text(
        &mut actions,
        if trim_next { rest.trim_start() } else { rest },
    );
    Ok(actions)
}

fn push_text(actions: &mut Vec<Action>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Action::Text(previous)) = actions.last_mut() {
        previous.push_str(text);
    } else {
        actions.push(Action::Text(text.to_string()));
    }
}

/// The fields a template uses, in order of first use.
pub fn fields(actions: &[Action]) -> Vec<&str> {
    let mut seen = Vec::new();
    for action in actions {
        if let Action::Field(name) = action
            && !seen.contains(&name.as_str())
        {
            seen.push(name.as_str());
        }
    }
    seen
}

/// Renders with `value(field)`; fields it returns `None` for are kept as `<<.Field>>`.
pub fn render(actions: &[Action], value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for action in actions {
        match action {
            Action::Text(text) => out.push_str(text),
            Action::Field(name) => match value(name) {
                Some(text) => out.push_str(&text),
                None => {
                    out.push_str("<<.");
                    out.push_str(name);
                    out.push_str(">>");
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Action {
        Action::Text(s.into())
    }
    fn field(s: &str) -> Action {
        Action::Field(s.into())
    }

    #[test]
    fn fields_text_and_trimming() {
        assert_eq!(
            parse("sum(<<.Series>>{<< .LabelMatchers >>}) by (<<.GroupBy>>)").unwrap(),
            vec![
                text("sum("),
                field("Series"),
                text("{"),
                field("LabelMatchers"),
                text("}) by ("),
                field("GroupBy"),
                text(")")
            ]
        );
        assert_eq!(
            parse("a  <<- .X ->>  b").unwrap(),
            vec![text("a"), field("X"), text("b")]
        );
        assert_eq!(parse("x < 5 > 2").unwrap(), vec![text("x < 5 > 2")]);
    }

    #[test]
    fn other_actions_are_refused() {
        for template in [
            "<<range .GroupBySlice>>x<<end>>",
            "<<.LabelValuesByName.pod>>",
            "<<.Series | printf>>",
            "<<.Series",
        ] {
            assert!(parse(template).is_err(), "{template}");
        }
    }

    #[test]
    fn render_keeps_unknown_fields() {
        let actions = parse("<<.Series>>{<<.LabelMatchers>>}").unwrap();
        assert_eq!(fields(&actions), vec!["Series", "LabelMatchers"]);
        let out = render(&actions, |f| (f == "Series").then(|| "up".to_string()));
        assert_eq!(out, "up{<<.LabelMatchers>>}");
    }
}
