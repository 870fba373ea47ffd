use super::*;
use serde_json::json;

fn parse(input: &str) -> LabelSelector {
    LabelSelector::parse(input).unwrap_or_else(|err| panic!("{input:?}: {err}"))
}

fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.to_owned(),
        operator,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn selector(requirements: Vec<Requirement>) -> LabelSelector {
    LabelSelector { requirements }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn matchers(input: &str) -> Vec<String> {
    parse(input)
        .to_promql_matchers()
        .unwrap_or_else(|err| panic!("{input:?}: {err}"))
}

fn syntax(input: &str, position: usize, found: &str, expected: &'static str) -> SelectorError {
    SelectorError::Syntax {
        input: input.to_owned(),
        position,
        found: found.to_owned(),
        expected,
    }
}

fn assert_syntax_error_at(input: &str, position: usize) {
    match LabelSelector::parse(input) {
        Err(SelectorError::Syntax { position: at, .. }) => {
            assert_eq!(at, position, "{input:?}");
        }
        other => panic!("{input:?}: expected a syntax error, got {other:?}"),
    }
}

/// Decodes a PromQL double-quoted literal as Prometheus' unquoting does (the parser
/// crate's port of it), which refuses a literal that ends before its last character: a
/// successful decode proves nothing can escape the string.
fn promql_unquote(literal: &str) -> Result<String, String> {
    if !literal.starts_with('"') {
        return Err(format!("no opening quote: {literal}"));
    }
    promql_parser::util::unquote_string(literal)
}

/// Splits a regex built from quoted values at unescaped `|` and removes
/// the escapes, recovering the values; fails on an unescaped metacharacter.
fn unquote_alternation(regex: &str) -> Result<Vec<String>, String> {
    let mut values = vec![String::new()];
    let mut chars = regex.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                let escaped = chars.next().ok_or("dangling backslash")?;
                if !r"\.+*?()|[]{}^$".contains(escaped) {
                    return Err(format!("needless escape of {escaped:?}"));
                }
                values.last_mut().expect("non-empty").push(escaped);
            }
            '|' => values.push(String::new()),
            c if r".+*?()[]{}^$".contains(c) => {
                return Err(format!("unescaped metacharacter {c:?}"));
            }
            c => values.last_mut().expect("non-empty").push(c),
        }
    }
    Ok(values)
}

const NASTY: &[&str] = &[
    "",
    "plain",
    r#"x"} or vector(1) #"#,
    r#"x\"} or vector(1) #"#,
    "\\",
    "\\\\\"",
    "\"",
    "a\nb\r\tc",
    "\u{0}\u{1}\u{1f}\u{7f}",
    "\u{80}\u{85}\u{9f}",
    "\u{2028}\u{2029}\u{fffd}\u{feff}",
    "ünïcödé ☃ 𝄞",
    "'single' `back`",
    ".*|(?s:a)[b]{2}^$+?",
    "\\x41\\u0041",
];

#[test]
fn blank_input_is_the_empty_selector() {
    for input in ["", " ", "\t\r\n "] {
        let parsed = parse(input);
        assert!(parsed.is_empty(), "{input:?}");
        assert_eq!(parsed, LabelSelector::default());
        assert!(parsed.matches(&labels(&[("a", "b")])));
        assert_eq!(parsed.to_promql_matchers(), Ok(vec![]));
        assert_eq!(parsed.to_label_selector_json(), json!({}));
    }
}

#[test]
fn parses_every_operator() {
    let cases = [
        ("a=b", req("a", Operator::Equals, &["b"])),
        ("a==b", req("a", Operator::Equals, &["b"])),
        ("a!=b", req("a", Operator::NotEquals, &["b"])),
        ("a in (x,y)", req("a", Operator::In, &["x", "y"])),
        ("a notin (x, y)", req("a", Operator::NotIn, &["x", "y"])),
        ("a", req("a", Operator::Exists, &[])),
        ("!a", req("a", Operator::DoesNotExist, &[])),
        ("a>5", req("a", Operator::GreaterThan, &["5"])),
        ("a<5", req("a", Operator::LessThan, &["5"])),
    ];
    for (input, expected) in cases {
        let parsed = parse(input);
        assert_eq!(parsed, selector(vec![expected]), "{input:?}");
        assert!(!parsed.is_empty());
    }
}

#[test]
fn tolerates_whitespace_between_tokens() {
    let cases = [
        (" a = b ", req("a", Operator::Equals, &["b"])),
        ("a\t==\tb", req("a", Operator::Equals, &["b"])),
        ("a\r\n!=\r\nb", req("a", Operator::NotEquals, &["b"])),
        ("a in(x)", req("a", Operator::In, &["x"])),
        (
            "a  in  (  x  ,  y  )  ",
            req("a", Operator::In, &["x", "y"]),
        ),
        ("a\tnotin\t(\tx\t)", req("a", Operator::NotIn, &["x"])),
        ("! a", req("a", Operator::DoesNotExist, &[])),
        (" a ", req("a", Operator::Exists, &[])),
        ("a > 10", req("a", Operator::GreaterThan, &["10"])),
    ];
    for (input, expected) in cases {
        assert_eq!(parse(input), selector(vec![expected]), "{input:?}");
    }
}

#[test]
fn keeps_requirements_in_input_order() {
    let parsed = parse("z=1, a in (b) ,!c,d,e!=f");
    assert_eq!(
        parsed,
        selector(vec![
            req("z", Operator::Equals, &["1"]),
            req("a", Operator::In, &["b"]),
            req("c", Operator::DoesNotExist, &[]),
            req("d", Operator::Exists, &[]),
            req("e", Operator::NotEquals, &["f"]),
        ])
    );
    assert_eq!(parsed.keys().collect::<Vec<_>>(), ["z", "a", "c", "d", "e"]);
}

#[test]
fn keys_include_repeats_and_prefixes() {
    let parsed = parse("app.kubernetes.io/name=web,a,!a");
    assert_eq!(
        parsed.keys().collect::<Vec<_>>(),
        ["app.kubernetes.io/name", "a", "a"]
    );
}

#[test]
fn accepts_prefixed_keys() {
    for key in [
        "app.kubernetes.io/name",
        "example.com/A-b_c.D9",
        "a-b.c-d/x",
        "0/x",
        "k8s.io/Mixed.Case_name",
    ] {
        let input = format!("{key}=v");
        assert_eq!(
            parse(&input),
            selector(vec![req(key, Operator::Equals, &["v"])]),
            "{input:?}"
        );
    }
    let long_prefix = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(long_prefix.len(), 253);
    parse(&format!("{long_prefix}/x"));
}

#[test]
fn set_values_are_sorted_and_deduplicated_like_apimachinery() {
    assert_eq!(parse("a in (y,x,y)").requirements[0].values, ["x", "y"]);
}

#[test]
fn empty_values_follow_apimachinery() {
    let cases: [(&str, &[&str]); 11] = [
        ("a=", &[""]),
        ("a==,b", &[""]),
        ("a!=", &[""]),
        ("a in ()", &[""]),
        ("a in (x,)", &["", "x"]),
        ("a in (,x)", &["", "x"]),
        ("a in (x,,y)", &["", "x", "y"]),
        ("a in (x,,,y)", &["", "x", "y"]),
        ("a in (,)", &[""]),
        ("a in (,,,)", &[""]),
        ("a in (,,x)", &["", "x"]),
    ];
    for (input, values) in cases {
        assert_eq!(parse(input).requirements[0].values, values, "{input:?}");
    }
    // Quirk of apimachinery's list parser, kept for identical acceptance.
    assert_syntax_error_at("a in (,,)", 8);
    assert_syntax_error_at("a in (x,,)", 9);
}

#[test]
fn keywords_are_plain_words_outside_operator_position() {
    assert_eq!(
        parse("in in (in, notin)"),
        selector(vec![req("in", Operator::In, &["in", "notin"])])
    );
    assert_eq!(
        parse("notin=in,!in"),
        selector(vec![
            req("notin", Operator::Equals, &["in"]),
            req("in", Operator::DoesNotExist, &[]),
        ])
    );
}

#[test]
fn accepts_boundary_lengths() {
    let name = format!("a{}z", "-".repeat(61));
    assert_eq!(name.len(), 63);
    parse(&format!("{name}={name}"));
    parse(&format!("example.com/{name} in ({name})"));
}

#[test]
fn rejects_unbalanced_parentheses() {
    assert_eq!(
        LabelSelector::parse("a in (x"),
        Err(syntax("a in (x", 7, "end of string", "',' or ')'"))
    );
    assert_eq!(
        LabelSelector::parse("a in x)"),
        Err(syntax("a in x)", 5, "\"x\"", "'('"))
    );
    assert_eq!(
        LabelSelector::parse("a in (x))"),
        Err(syntax("a in (x))", 8, "\")\"", "',' or end of string"))
    );
    assert_syntax_error_at("a in (x,", 8);
    assert_syntax_error_at("a notin (", 9);
    assert_syntax_error_at("a in ((x))", 6);
    assert_syntax_error_at("a in (x y)", 8);
    assert_syntax_error_at("a in (x=y)", 7);
    assert_syntax_error_at("(a)", 0);
}

#[test]
fn rejects_missing_values_and_operators() {
    assert_eq!(
        LabelSelector::parse("a in"),
        Err(syntax("a in", 4, "end of string", "'('"))
    );
    assert_eq!(
        LabelSelector::parse("a b"),
        Err(syntax(
            "a b",
            2,
            "\"b\"",
            "one of '=', '==', '!=', 'in', 'notin', '>', '<'"
        ))
    );
    assert_syntax_error_at("a notin", 7);
    assert_syntax_error_at("a in ,b", 5);
    assert_syntax_error_at("a=(b)", 2);
    assert_syntax_error_at("a=!b", 2);
    assert_syntax_error_at("a>=5", 2);
    assert_syntax_error_at("a!", 1);
    assert_syntax_error_at("a!==b", 3);
}

#[test]
fn rejects_bad_structure() {
    assert_eq!(
        LabelSelector::parse("a=b,"),
        Err(syntax(
            "a=b,",
            4,
            "end of string",
            "a label key or '!' after ','"
        ))
    );
    assert_eq!(
        LabelSelector::parse(",a"),
        Err(syntax(",a", 0, "\",\"", "a label key or '!'"))
    );
    assert_eq!(
        LabelSelector::parse("a=b c"),
        Err(syntax("a=b c", 4, "\"c\"", "',' or end of string"))
    );
    assert_eq!(
        LabelSelector::parse("!a=b"),
        Err(syntax("!a=b", 2, "\"=\"", "',' or end of string"))
    );
    assert_syntax_error_at("a,,b", 2);
    assert_syntax_error_at("!", 1);
    assert_syntax_error_at("!!a", 1);
    assert_syntax_error_at("=b", 0);
    assert_syntax_error_at("a=b,,", 4);
}

#[test]
fn rejects_bad_keys() {
    let cases = [
        ("a/b/c", "a/b/c"),
        ("/a", "/a"),
        ("a/", "a/"),
        ("Example.com/a", "Example.com/a"),
        ("example..com/a", "example..com/a"),
        ("-example.com/a", "-example.com/a"),
        ("a-", "a-"),
        ("-a", "-a"),
        ("_a", "_a"),
        ("a.", "a."),
        ("a b=c", "a"),
        ("a$b", "a$b"),
        ("ä", "ä"),
        ("a\u{0}b", "a\u{0}b"),
    ];
    for (input, key) in cases {
        match LabelSelector::parse(input) {
            Err(SelectorError::InvalidKey { key: bad, .. }) if bad == key && key != "a" => {}
            Err(SelectorError::Syntax { .. }) if key == "a" => {}
            other => panic!("{input:?}: unexpected {other:?}"),
        }
    }
    let long_prefix = format!("{}.example/x", "a".repeat(246));
    assert!(matches!(
        LabelSelector::parse(&long_prefix),
        Err(SelectorError::InvalidKey {
            reason: "prefix part must be no more than 253 characters",
            ..
        })
    ));
}

#[test]
fn rejects_too_long_names_and_values() {
    let name = "n".repeat(64);
    let input = format!("x, {name}=v");
    assert_eq!(
        LabelSelector::parse(&input),
        Err(SelectorError::InvalidKey {
            input: input.clone(),
            key: name.clone(),
            position: 3,
            reason: "name part must be no more than 63 characters",
        })
    );
    let input = format!("example.com/{name}");
    assert!(matches!(
        LabelSelector::parse(&input),
        Err(SelectorError::InvalidKey { position: 0, .. })
    ));
    let input = format!("a in (ok, {name})");
    assert_eq!(
        LabelSelector::parse(&input),
        Err(SelectorError::InvalidValue {
            input: input.clone(),
            key: "a".to_owned(),
            value: name.clone(),
            position: 10,
            reason: "must be no more than 63 characters",
        })
    );
}

#[test]
fn rejects_bad_value_characters() {
    for (input, value, position) in [
        ("a=b$", "b$", 2),
        ("a=-b", "-b", 2),
        ("a!=b.", "b.", 3),
        ("a in (x, y_)", "y_", 9),
        ("a notin (ok,'q')", "'q'", 12),
        ("a=é", "é", 2),
        ("a=b/c", "b/c", 2),
    ] {
        match LabelSelector::parse(input) {
            Err(SelectorError::InvalidValue {
                value: bad,
                position: at,
                ..
            }) => {
                assert_eq!((bad.as_str(), at), (value, position), "{input:?}");
            }
            other => panic!("{input:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn comparisons_need_one_integer() {
    for (input, value, position) in [
        ("a>5.5", "5.5", 2),
        ("a<x", "x", 2),
        ("a>", "", 2),
        ("a > ,b", "", 4),
        ("a>99999999999999999999", "99999999999999999999", 2),
        ("a>1e3", "1e3", 2),
    ] {
        let operator = if input.contains('>') {
            Operator::GreaterThan
        } else {
            Operator::LessThan
        };
        assert_eq!(
            LabelSelector::parse(input),
            Err(SelectorError::NotAnInteger {
                input: input.to_owned(),
                value: value.to_owned(),
                position,
                operator,
            }),
            "{input:?}"
        );
    }
    // Signs pass Go's ParseInt but are not valid label values.
    for input in ["a>-5", "a<+5"] {
        assert!(
            matches!(
                LabelSelector::parse(input),
                Err(SelectorError::InvalidValue { position: 2, .. })
            ),
            "{input:?}"
        );
    }
    assert_syntax_error_at("a>(5)", 2);
    parse("a>9223372036854775807");
}

#[test]
fn error_messages_quote_input_and_position() {
    let message = |input: &str| LabelSelector::parse(input).unwrap_err().to_string();
    assert_eq!(
        message("a in (x"),
        "invalid label selector \"a in (x\": found end of string at position 7, expected ',' or ')'"
    );
    assert_eq!(
        message("a, b$=1"),
        "invalid label selector \"a, b$=1\": label key \"b$\" at position 3: name part must \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character"
    );
    assert_eq!(
        message("a=b$"),
        "invalid label selector \"a=b$\": value \"b$\" for key \"a\" at position 2: must be \
             empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character"
    );
    assert_eq!(
        message("a>1.5"),
        "invalid label selector \"a>1.5\": value \"1.5\" at position 2 must be a 64-bit \
             integer for '>'"
    );
    assert_eq!(
        message("a=\"x\"\n"),
        "invalid label selector \"a=\\\"x\\\"\\n\": value \"\\\"x\\\"\" for key \"a\" at \
             position 2: must be empty or consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character"
    );
}

#[test]
fn matches_equality_and_sets() {
    let eq = parse("a=b");
    assert!(eq.matches(&labels(&[("a", "b")])));
    assert!(!eq.matches(&labels(&[("a", "c")])));
    assert!(!eq.matches(&labels(&[])));

    let ne = parse("a!=b");
    assert!(!ne.matches(&labels(&[("a", "b")])));
    assert!(ne.matches(&labels(&[("a", "c")])));
    assert!(ne.matches(&labels(&[])));

    let within = parse("a in (x,y)");
    assert!(within.matches(&labels(&[("a", "x")])));
    assert!(within.matches(&labels(&[("a", "y")])));
    assert!(!within.matches(&labels(&[("a", "z")])));
    assert!(!within.matches(&labels(&[])));

    let outside = parse("a notin (x,y)");
    assert!(!outside.matches(&labels(&[("a", "x")])));
    assert!(outside.matches(&labels(&[("a", "z")])));
    assert!(outside.matches(&labels(&[])));

    let empty_value = parse("a=");
    assert!(empty_value.matches(&labels(&[("a", "")])));
    assert!(!empty_value.matches(&labels(&[])));
}

#[test]
fn matches_existence() {
    let exists = parse("a");
    assert!(exists.matches(&labels(&[("a", "")])));
    assert!(!exists.matches(&labels(&[("b", "a")])));

    let absent = parse("!a");
    assert!(!absent.matches(&labels(&[("a", "")])));
    assert!(absent.matches(&labels(&[("b", "a")])));
}

#[test]
fn matches_comparisons() {
    let gt = parse("a>5");
    assert!(gt.matches(&labels(&[("a", "6")])));
    assert!(!gt.matches(&labels(&[("a", "5")])));
    assert!(gt.matches(&labels(&[("a", "+6")])));
    assert!(!gt.matches(&labels(&[("a", "x")])));
    assert!(!gt.matches(&labels(&[("a", "6.5")])));
    assert!(!gt.matches(&labels(&[("a", "99999999999999999999")])));
    assert!(!gt.matches(&labels(&[])));

    let lt = parse("a<5");
    assert!(lt.matches(&labels(&[("a", "4")])));
    assert!(lt.matches(&labels(&[("a", "-100")])));
    assert!(!lt.matches(&labels(&[("a", "5")])));
    assert!(!lt.matches(&labels(&[])));

    // Hand-built requirements without exactly one integer bound never match.
    let two = selector(vec![req("a", Operator::GreaterThan, &["1", "2"])]);
    assert!(!two.matches(&labels(&[("a", "9")])));
    let word = selector(vec![req("a", Operator::LessThan, &["x"])]);
    assert!(!word.matches(&labels(&[("a", "1")])));
}

#[test]
fn matches_requires_every_requirement() {
    let all = parse("app=web,tier in (fe,be),!canary,version>2");
    assert!(all.matches(&labels(&[("app", "web"), ("tier", "fe"), ("version", "3")])));
    assert!(!all.matches(&labels(&[
        ("app", "web"),
        ("tier", "fe"),
        ("version", "3"),
        ("canary", "true"),
    ])));
    assert!(!all.matches(&labels(&[("app", "web"), ("tier", "db"), ("version", "3")])));
    assert!(!all.matches(&labels(&[("app", "web"), ("tier", "fe"), ("version", "2")])));
}

#[test]
fn promql_matchers_for_every_operator() {
    assert_eq!(
        matchers("a=b,c==d,e!=f,g in (x,y),h notin (z),i,!j"),
        [
            r#"a="b""#,
            r#"c="d""#,
            r#"e!="f""#,
            r#"g=~"x|y""#,
            r#"h!~"z""#,
            r#"i!="""#,
            r#"j="""#,
        ]
    );
}

#[test]
fn promql_matchers_quote_regex_metacharacters() {
    assert_eq!(
        matchers("v in (1.0, 2.x), w notin (a.b)"),
        [r#"v=~"1\\.0|2\\.x""#, r#"w!~"a\\.b""#]
    );
    assert_eq!(matchers("v in (x,)"), [r#"v=~"|x""#]);
    assert_eq!(matchers("v=1.0"), [r#"v="1.0""#]);
}

#[test]
fn promql_rejects_comparisons() {
    assert_eq!(
        parse("a=b,n>5").to_promql_matchers(),
        Err(SelectorError::UnsupportedByPromql {
            key: "n".to_owned(),
            operator: Operator::GreaterThan,
        })
    );
    let err = parse("n<5").to_promql_matchers().unwrap_err();
    assert_eq!(
        err.to_string(),
        "label selector requirement on \"n\" uses '<', which PromQL label matchers cannot express"
    );
}

#[test]
fn promql_rejects_non_prometheus_keys() {
    for input in ["app.kubernetes.io/name=web", "a-b", "!a.b", "0a in (x)"] {
        let key = input
            .trim_start_matches('!')
            .split(['=', ' '])
            .next()
            .unwrap();
        assert_eq!(
            parse(input).to_promql_matchers(),
            Err(SelectorError::NotPromqlLabelName {
                key: key.to_owned()
            }),
            "{input:?}"
        );
    }
    let err = parse("app.kubernetes.io/name")
        .to_promql_matchers()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "label key \"app.kubernetes.io/name\" is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
    );
    for key in ["", "1a", "a\"", "a}", "a=\"\"} or vector(1) #", "é"] {
        let hand_built = selector(vec![req(key, Operator::Exists, &[])]);
        assert_eq!(
            hand_built.to_promql_matchers(),
            Err(SelectorError::NotPromqlLabelName {
                key: key.to_owned()
            }),
            "{key:?}"
        );
    }
    let underscore = selector(vec![req("_Z9", Operator::Equals, &["v"])]);
    assert_eq!(
        underscore.to_promql_matchers(),
        Ok(vec![r#"_Z9="v""#.to_owned()])
    );
}

#[test]
fn promql_rejects_wrong_value_counts() {
    let cases = [
        (req("a", Operator::Equals, &[]), 0, "exactly one"),
        (req("a", Operator::NotEquals, &["x", "y"]), 2, "exactly one"),
        (req("a", Operator::In, &[]), 0, "at least one"),
        (req("a", Operator::NotIn, &[]), 0, "at least one"),
    ];
    for (requirement, count, expected) in cases {
        let operator = requirement.operator.clone();
        assert_eq!(
            selector(vec![requirement]).to_promql_matchers(),
            Err(SelectorError::ValueCount {
                key: "a".to_owned(),
                operator,
                count,
                expected,
            })
        );
    }
}

#[test]
fn promql_string_escapes() {
    let cases = [
        ("", r#""""#),
        ("web", r#""web""#),
        (r#"x"} or vector(1) #"#, r#""x\"} or vector(1) #""#),
        (r"back\slash", r#""back\\slash""#),
        (r#"\""#, r#""\\\"""#),
        ("a\nb", r#""a\nb""#),
        ("\r\t\u{7}\u{8}\u{b}\u{c}", r#""\r\t\a\b\v\f""#),
        ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
        (
            "\u{85}\u{2028}\u{2029}\u{fffd}",
            r#""\u0085\u2028\u2029\ufffd""#,
        ),
        ("'`ü☃", "\"'`ü☃\""),
    ];
    for (value, expected) in cases {
        assert_eq!(promql_string(value), expected, "{value:?}");
    }
}

#[test]
fn promql_string_round_trips_through_the_promql_grammar() {
    for value in NASTY {
        let literal = promql_string(value);
        assert_eq!(promql_unquote(&literal).as_deref(), Ok(*value), "{literal}");
    }
    assert!(promql_unquote(r#""x"} or vector(1) #""#).is_err());
}

#[test]
fn quote_regex_escapes_re2_metacharacters() {
    assert_eq!(
        quote_regex(r"\.+*?()|[]{}^$"),
        r"\\\.\+\*\?\(\)\|\[\]\{\}\^\$"
    );
    assert_eq!(quote_regex("a-b_c/d e#f\"g"), "a-b_c/d e#f\"g");
    assert_eq!(quote_regex(""), "");
    for value in NASTY {
        assert_eq!(
            unquote_alternation(&quote_regex(value)),
            Ok(vec![(*value).to_owned()]),
            "{value:?}"
        );
    }
}

#[test]
fn hand_built_values_cannot_inject_into_promql() {
    let hand_built = selector(vec![
        req("a", Operator::Equals, &[r#"x"} or vector(1) #"#]),
        req("b", Operator::In, &[r#"x"} or vector(1) #"#, ".*", "c|d"]),
        req("c", Operator::NotIn, &["\\", "\n\"}"]),
    ]);
    assert_eq!(
        hand_built.to_promql_matchers(),
        Ok(vec![
            r#"a="x\"} or vector(1) #""#.to_owned(),
            r#"b=~"x\"\\} or vector\\(1\\) #|\\.\\*|c\\|d""#.to_owned(),
            r#"c!~"\\\\|\n\"\\}""#.to_owned(),
        ])
    );

    let values: Vec<&str> = NASTY.to_vec();
    let hand_built = selector(vec![
        req("n", Operator::In, &values),
        req("m", Operator::NotEquals, &[NASTY[2]]),
    ]);
    let rendered = hand_built.to_promql_matchers().expect("valid keys");
    let regex_literal = rendered[0].strip_prefix("n=~").expect("operator");
    let regex = promql_unquote(regex_literal).expect("well-formed literal");
    assert_eq!(
        unquote_alternation(&regex),
        Ok(values.iter().map(|v| (*v).to_owned()).collect())
    );
    let literal = rendered[1].strip_prefix("m!=").expect("operator");
    assert_eq!(promql_unquote(literal).as_deref(), Ok(NASTY[2]));
}

#[test]
fn label_selector_json() {
    let parsed = parse("app=web,tier in (fe,be),env notin (dev),canary,!legacy,zone!=x");
    assert_eq!(
        parsed.to_label_selector_json(),
        json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["be", "fe"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
            ]
        })
    );
}

#[test]
fn label_selector_json_omits_empty_parts() {
    assert_eq!(
        parse("a=b, c==d").to_label_selector_json(),
        json!({"matchLabels": {"a": "b", "c": "d"}})
    );
    assert_eq!(
        parse("!a").to_label_selector_json(),
        json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]})
    );
    assert_eq!(LabelSelector::default().to_label_selector_json(), json!({}));
}

#[test]
fn label_selector_json_comparisons_and_repeats() {
    assert_eq!(
        parse("n>5,m<7").to_label_selector_json(),
        json!({"matchExpressions": [
            {"key": "n", "operator": "Gt", "values": ["5"]},
            {"key": "m", "operator": "Lt", "values": ["7"]},
        ]})
    );
    // The second `=` on a key must not overwrite the first in matchLabels.
    assert_eq!(
        parse("a=x,a=y").to_label_selector_json(),
        json!({
            "matchLabels": {"a": "x"},
            "matchExpressions": [{"key": "a", "operator": "In", "values": ["y"]}],
        })
    );
    let multi = selector(vec![req("a", Operator::Equals, &["x", "y"])]);
    assert_eq!(
        multi.to_label_selector_json(),
        json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]})
    );
}
