//! Pure: canonical text of a table listing, so what `nft list table` prints can be compared
//! with what we compiled, and a small line diff for `edgectl fw plan`.
//!
//! Two things differ between our rendering and the kernel's listing without meaning anything:
//! the order of set elements (the kernel's hash order) and counter values. Both are erased;
//! everything else must match byte for byte.

use std::collections::BTreeMap;

/// Canonical form: set elements sorted one per line, counter values zeroed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("elements = { ") {
            let indent = &line[..line.len() - trimmed.len()];
            let mut elems = Vec::new();
            let mut cur = rest.to_owned();
            loop {
                let done = cur.ends_with(" }");
                let body = cur.strip_suffix(" }").unwrap_or(&cur);
                for e in body.split(", ") {
                    let e = e.trim().trim_end_matches(',').trim();
                    if !e.is_empty() {
                        elems.push(e.to_owned());
                    }
                }
                if done {
                    break;
                }
                match lines.next() {
                    Some(l) => cur = l.trim().to_owned(),
                    None => break,
                }
            }
            elems.sort();
            out.push_str(indent);
            out.push_str("elements = {\n");
            for e in elems {
                out.push_str(indent);
                out.push('\t');
                out.push_str(&e);
                out.push('\n');
            }
            out.push_str(indent);
            out.push_str("}\n");
            continue;
        }
        if trimmed.starts_with("packets ") && trimmed.contains(" bytes ") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(indent);
            out.push_str("packets 0 bytes 0\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Lines only in `want` (`+`) and only in `have` (`-`), in the order they appear; empty when
/// the two texts hold the same lines.
pub fn line_diff(have: &str, want: &str) -> Vec<String> {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in want.lines() {
        *count.entry(l).or_default() += 1;
    }
    for l in have.lines() {
        *count.entry(l).or_default() -= 1;
    }
    let mut out = Vec::new();
    let mut left = count.clone();
    for l in have.lines() {
        if let Some(c) = left.get_mut(l)
            && *c < 0
        {
            out.push(format!("- {l}"));
            *c += 1;
        }
    }
    for l in want.lines() {
        if let Some(c) = left.get_mut(l)
            && *c > 0
        {
            out.push(format!("+ {l}"));
            *c -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_order_and_counter_values_are_erased() {
        let a = "table inet t {\n\tcounter c {\n\t\tpackets 5 bytes 300\n\t}\n\tmap m {\n\t\telements = { \"b\" . 1 : 2,\n\t\t\t     \"a\" . 1 : 2 }\n\t}\n}\n";
        let b = "table inet t {\n\tcounter c {\n\t\tpackets 0 bytes 0\n\t}\n\tmap m {\n\t\telements = { \"a\" . 1 : 2, \"b\" . 1 : 2 }\n\t}\n}\n";
        assert_eq!(normalize(a), normalize(b));
        assert!(normalize(a).contains("\t\t\t\"a\" . 1 : 2\n"));
    }

    #[test]
    fn a_changed_rule_is_not_erased() {
        let a = "chain input {\n\t\ttcp dport 22 accept\n}\n";
        let b = "chain input {\n\t\ttcp dport 23 accept\n}\n";
        assert_ne!(normalize(a), normalize(b));
        let d = line_diff(&normalize(a), &normalize(b));
        assert_eq!(
            d,
            vec!["- \t\ttcp dport 22 accept", "+ \t\ttcp dport 23 accept"]
        );
    }

    #[test]
    fn identical_texts_have_no_diff() {
        assert!(line_diff("a\nb\n", "a\nb\n").is_empty());
    }
}
