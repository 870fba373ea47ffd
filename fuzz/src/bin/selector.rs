//! Any text as a Kubernetes label selector: parsed or refused, never a panic; what parses
//! becomes PromQL matchers that promql-parser accepts, one per requirement.

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(selector) = metrics_registry_apiserver::selector::LabelSelector::parse(text) else {
            return;
        };
        let Ok(matchers) = selector.to_promql_matchers() else {
            return;
        };
        if matchers.is_empty() {
            return;
        }
        let query = format!("x{{{}}}", matchers.join(","));
        if let Err(error) = promql_parser::parser::parse(&query) {
            panic!("selector {text:?} rendered unparseable PromQL {query}: {error}");
        }
    });
}
