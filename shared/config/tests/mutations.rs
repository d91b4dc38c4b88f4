//! Property: random mutations of the reference config never panic the loader, and every
//! diagnostic it reports carries a line and column inside the file.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use proptest::prelude::*;

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    std::fs::read_to_string(path).expect("config/edge.toml is readable")
}

/// One edit of the text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Delete the character at a position.
    DeleteChar(usize),
    /// Insert a character at a position.
    InsertChar(usize, char),
    /// Replace a whole line with some text.
    ReplaceLine(usize, String),
    /// Duplicate a line.
    DuplicateLine(usize),
    /// Delete a line.
    DeleteLine(usize),
    /// Replace the value after the `=` of a line.
    ReplaceValue(usize, String),
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        "[a-z0-9./:\\- ]{0,20}".prop_map(|s| format!("\"{s}\"")),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("\"999.1.1.1/99\"".to_owned()),
        Just("\"enp3s0f0enp3s0f0enp3s0f0\"".to_owned()),
        Just("{ file = \"x\" }".to_owned()),
        Just("1e400".to_owned()),
        Just("\"\u{e9}\u{1F600}\"".to_owned()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteChar),
        (
            any::<usize>(),
            prop_oneof![
                Just('['),
                Just(']'),
                Just('"'),
                Just('='),
                Just('\n'),
                Just('#'),
                Just('{'),
                Just(','),
                Just('\u{e9}'),
                any::<char>()
            ]
        )
            .prop_map(|(p, c)| Mutation::InsertChar(p, c)),
        (any::<usize>(), "[\\[\\]a-z_.= \"0-9]{0,30}")
            .prop_map(|(l, s)| Mutation::ReplaceLine(l, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), value_strategy()).prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::DeleteChar(p) => {
            let chars: Vec<char> = text.chars().collect();
            if chars.is_empty() {
                return String::new();
            }
            let i = p % chars.len();
            chars[..i].iter().chain(&chars[i + 1..]).collect()
        }
        Mutation::InsertChar(p, c) => {
            let mut chars: Vec<char> = text.chars().collect();
            let i = p % (chars.len() + 1);
            chars.insert(i, *c);
            chars.into_iter().collect()
        }
        Mutation::ReplaceLine(l, s) => {
            if !lines.is_empty() {
                lines[l % n] = s.clone();
            }
            lines.join("\n")
        }
        Mutation::DuplicateLine(l) => {
            if !lines.is_empty() {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            lines.join("\n")
        }
        Mutation::DeleteLine(l) => {
            if !lines.is_empty() {
                lines.remove(l % n);
            }
            lines.join("\n")
        }
        Mutation::ReplaceValue(l, v) => {
            let eq: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.trim_start().starts_with('#') && s.contains(" = "))
                .map(|(i, _)| i)
                .collect();
            if !eq.is_empty() {
                let i = eq[l % eq.len()];
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{k} = {v}");
                }
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_configs_never_panic_and_every_diagnostic_is_located(
        muts in proptest::collection::vec(mutation(), 1..4)
    ) {
        let mut text = reference();
        for m in &muts {
            text = apply(&text, m);
        }
        let line_count = text.lines().count() as u32 + 1;
        let diags = match edge_config::parse(Path::new("edge.toml"), &text) {
            Ok(l) => l.warnings,
            Err(d) => d,
        };
        for d in diags.items() {
            let loc = d.location.unwrap_or_else(|| panic!("unlocated: {d:?}\n--- text ---\n{text}"));
            prop_assert!(loc.line >= 1 && loc.column >= 1, "{d:?}");
            prop_assert!(loc.line <= line_count, "line {} past the end: {d:?}", loc.line);
        }
        // Rendering never panics either, and names the file for each diagnostic.
        let rendered = diags.render();
        for d in diags.items() {
            let loc = d.location.unwrap_or_default();
            let prefix = format!("edge.toml:{}:{}:", loc.line, loc.column);
            prop_assert!(rendered.contains(&prefix), "{prefix} missing in\n{rendered}");
        }
    }
}
