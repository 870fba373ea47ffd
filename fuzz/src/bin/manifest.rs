//! Any bytes as a manifest file: definitions or errors, never a panic, and whatever is
//! read compiles to verdicts.

use metrics_registry::compiler::{CompileOptions, compile};
use std::path::Path;

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(found) = metrics_registry::sources::folder::parse_text(Path::new("fuzz.yaml"), text) {
            let definitions: Vec<_> = found.into_iter().map(|l| l.definition).collect();
            let compiled = compile(&definitions, CompileOptions::default());
            assert!(compiled.verdicts.len() <= definitions.len());
        }
    });
}
