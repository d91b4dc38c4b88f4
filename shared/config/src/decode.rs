//! Pure: a decoder from the spanned TOML tree into typed values that records every error
//! with its place instead of stopping at the first one.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key and loses the position of
//! semantic errors, so the loader walks `toml::de::DeTable` (which keeps byte spans) itself:
//! each section asks a [`Table`] for its keys, and `Table::finish` reports whatever was left.

use std::collections::HashSet;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::source::{Diagnostic, Location, Severity, SourceFile};

/// Collects diagnostics while decoding one file.
#[derive(Debug)]
pub struct Ctx<'s> {
    src: &'s SourceFile,
    diags: Vec<Diagnostic>,
    warned_once: HashSet<String>,
    secrets: Vec<SecretRef>,
}

/// A secret named by the file, with its place, so the I/O layer can check it.
#[derive(Debug, Clone)]
pub struct SecretRef {
    /// Dotted key path (`ddns.token`).
    pub key: String,
    /// Byte span of the value.
    pub span: Range<usize>,
    /// Where the secret lives.
    pub source: crate::secret::SecretSource,
}

impl<'s> Ctx<'s> {
    /// Starts decoding `src`.
    pub fn new(src: &'s SourceFile) -> Self {
        Self {
            src,
            diags: Vec::new(),
            warned_once: HashSet::new(),
            secrets: Vec::new(),
        }
    }

    /// Remembers a secret reference for the I/O layer's checks.
    pub fn note_secret(
        &mut self,
        key: &str,
        span: Range<usize>,
        source: crate::secret::SecretSource,
    ) {
        self.secrets.push(SecretRef {
            key: key.to_owned(),
            span,
            source,
        });
    }

    /// Takes the secret references noted so far.
    pub fn take_secrets(&mut self) -> Vec<SecretRef> {
        std::mem::take(&mut self.secrets)
    }

    /// The file being decoded.
    pub fn source(&self) -> &'s SourceFile {
        self.src
    }

    /// Location of a byte span's start.
    pub fn location(&self, span: &Range<usize>) -> Location {
        self.src.location(span.start)
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        key: &str,
        message: String,
    ) -> &mut Diagnostic {
        let location = span.as_ref().map(|s| self.src.location(s.start));
        self.diags.push(Diagnostic {
            severity,
            key: key.to_owned(),
            message,
            hint: None,
            location,
            span,
        });
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// Records an error at `span`.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Error, Some(span), key, message.into())
    }

    /// Records an error that has no place in the file.
    pub fn error_unlocated(&mut self, key: &str, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, None, key, message.into())
    }

    /// Records a warning at `span`.
    pub fn warn(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Warning, Some(span), key, message.into())
    }

    /// Records a warning only the first time `once_key` is seen; returns it when recorded.
    pub fn warn_once(
        &mut self,
        once_key: &str,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Option<&mut Diagnostic> {
        if !self.warned_once.insert(once_key.to_owned()) {
            return None;
        }
        Some(self.warn(span, key, message))
    }

    /// True when at least one error was recorded.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    /// Takes the diagnostics recorded so far.
    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }
}

/// A value in the tree together with its dotted key path.
#[derive(Debug, Clone)]
pub struct Node<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    key: std::rc::Rc<str>,
}

impl<'a, 'i> Node<'a, 'i> {
    /// Wraps a value found at `key`.
    pub fn new(value: &'a Spanned<DeValue<'i>>, key: &str) -> Self {
        Self {
            value,
            key: key.into(),
        }
    }

    /// The byte span of the value.
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    /// The dotted key path.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The raw value.
    pub fn value(&self) -> &'a DeValue<'i> {
        self.value.get_ref()
    }

    /// Records an error about this value.
    pub fn error<'c>(&self, ctx: &'c mut Ctx<'_>, msg: impl Into<String>) -> &'c mut Diagnostic {
        ctx.error(self.span(), &self.key, msg)
    }

    /// Records a warning about this value.
    pub fn warn<'c>(&self, ctx: &'c mut Ctx<'_>, msg: impl Into<String>) -> &'c mut Diagnostic {
        ctx.warn(self.span(), &self.key, msg)
    }

    /// Records a "wrong type" error and returns `None`.
    pub fn type_error<T>(&self, ctx: &mut Ctx<'_>, expected: &str) -> Option<T> {
        let found = kind_name(self.value());
        self.error(
            ctx,
            format!("`{}` must be {expected}, found {found}", self.key),
        );
        None
    }

    /// The value as a string, or a recorded type error.
    pub fn str(&self, ctx: &mut Ctx<'_>, expected: &str) -> Option<&'a str> {
        match self.value() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => self.type_error(ctx, expected),
        }
    }

    /// Parses a string value with `parse`; a parse error becomes a located error with a hint.
    pub fn parse_str<T>(
        &self,
        ctx: &mut Ctx<'_>,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<T> {
        let s = self.str(ctx, expected)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(inv) => {
                let d = self.error(ctx, inv.message);
                if let Some(h) = inv.hint {
                    d.hint(h);
                }
                None
            }
        }
    }
}

/// Why a string could not be parsed, and what to do.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// What is wrong.
    pub message: String,
    /// What to do, if known.
    pub hint: Option<String>,
}

impl Invalid {
    /// An error without a hint.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Human name of a TOML value's type.
pub fn kind_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A type that can be decoded from one TOML value.
pub trait Decode: Sized {
    /// Decodes `node`, recording any error in `ctx` and returning `None` then.
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self>;
}

impl Decode for bool {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        match node.value() {
            DeValue::Boolean(b) => Some(*b),
            _ => node.type_error(ctx, "true or false"),
        }
    }
}

impl Decode for String {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.str(ctx, "a string").map(str::to_owned)
    }
}

/// Reads an integer value as i128 (wide enough for every TOML integer).
pub fn integer(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<i128> {
    match node.value() {
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(v) => Some(v),
            Err(_) => {
                node.error(ctx, format!("`{}` is not a valid integer", node.key()));
                None
            }
        },
        _ => node.type_error(ctx, "an integer"),
    }
}

/// Reads an integer in `min..=max`, naming the range in the error.
pub fn integer_in(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, min: i128, max: i128) -> Option<i128> {
    let v = integer(ctx, node)?;
    if v < min || v > max {
        node.error(
            ctx,
            format!(
                "`{}` = {v} is out of range: it must be between {min} and {max}",
                node.key()
            ),
        );
        return None;
    }
    Some(v)
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
                let v = integer_in(ctx, &node, <$t>::MIN as i128, <$t>::MAX as i128)?;
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
decode_int!(u8, u16, u32, u64, i64);

/// A decoded value with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Byte span in the file.
    pub span: Range<usize>,
    /// Line and column of the span's start.
    pub location: Location,
}

impl<T: Decode> Decode for At<T> {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        let span = node.span();
        let value = T::decode(ctx, node)?;
        Some(At {
            location: ctx.location(&span),
            span,
            value,
        })
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        let DeValue::Array(items) = node.value() else {
            return node.type_error(ctx, "an array");
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let key = format!("{}[{i}]", node.key());
            match T::decode(ctx, Node::new(item, &key)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A table being read key by key; `finish` reports keys nobody asked for.
#[derive(Debug)]
pub struct Table<'a, 'i> {
    map: &'a DeTable<'i>,
    span: Range<usize>,
    path: String,
    known: Vec<&'static str>,
    keys: Vec<String>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// Reads `node` as a table named `path` (e.g. `fw.forward[2]`).
    pub fn from_node(ctx: &mut Ctx<'_>, node: Node<'a, 'i>) -> Option<Self> {
        match node.value() {
            DeValue::Table(map) => Some(Self::new(map, node.span(), node.key())),
            _ => node.type_error(ctx, "a table"),
        }
    }

    /// Wraps an already-extracted table.
    pub fn new(map: &'a DeTable<'i>, span: Range<usize>, path: &str) -> Self {
        Self {
            map,
            span,
            path: path.to_owned(),
            known: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// The table's dotted path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Byte span of the table.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    fn child_key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Looks up `key`, marking it as known. The returned string is the key path to use with
    /// [`Node::new`].
    pub fn raw(&mut self, key: &'static str) -> Option<(&'a Spanned<DeValue<'i>>, String)> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        let (_, v) = self.map.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
        Some((v, self.child_key(key)))
    }

    /// Decodes an optional key; `None` when absent or invalid (the error is recorded).
    pub fn opt<T: Decode>(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<T> {
        let (v, path) = self.raw(key)?;
        self.keys.push(path);
        let path = self.keys.last().map(String::as_str).unwrap_or_default();
        T::decode(ctx, Node::new(v, path))
    }

    /// Decodes an optional key, falling back to `default` when absent (or invalid: the error
    /// is recorded and the file will be refused anyway).
    pub fn or<T: Decode>(&mut self, ctx: &mut Ctx<'_>, key: &'static str, default: T) -> T {
        self.opt(ctx, key).unwrap_or(default)
    }

    /// Decodes a required key; a missing key is an error located at the table.
    pub fn req<T: Decode>(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<T> {
        if self.raw(key).is_none() {
            let path = self.child_key(key);
            let table = self.display_name();
            ctx.error(
                self.span.clone(),
                &path,
                format!("missing required key `{key}` in {table}"),
            )
            .hint(format!("add `{key} = ...` to {table}"));
            return None;
        }
        self.opt(ctx, key)
    }

    /// Reads an optional key with a custom decoder taking the node.
    pub fn with<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        f: impl FnOnce(&mut Ctx<'_>, Node<'_, '_>) -> Option<T>,
    ) -> Option<T> {
        let (v, path) = self.raw(key)?;
        f(ctx, Node::new(v, &path))
    }

    /// Reads an optional sub-table (e.g. `[fw.input]`), calling `f` with it; `f` must call
    /// [`Table::finish`].
    pub fn sub<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        f: impl FnOnce(&mut Ctx<'_>, Table<'a, 'i>) -> Option<T>,
    ) -> Option<Option<T>> {
        let Some((v, path)) = self.raw(key) else {
            return Some(None);
        };
        let t = Table::from_node(ctx, Node::new(v, &path))?;
        f(ctx, t).map(Some)
    }

    /// Reads an optional array of tables (`[[link.bridge]]`), calling `f` for each element.
    /// Returns the elements that decoded; errors are recorded for the others.
    pub fn list<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        mut f: impl FnMut(&mut Ctx<'_>, Table<'a, 'i>) -> Option<T>,
    ) -> Vec<T> {
        let Some((v, path)) = self.raw(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            let node = Node::new(v, &path);
            let _: Option<()> = node.type_error(ctx, "an array of tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(t) = Table::from_node(ctx, Node::new(item, &p))
                && let Some(v) = f(ctx, t)
            {
                out.push(v);
            }
        }
        out
    }

    /// Every entry of the table, for tables whose keys are names chosen by the user (close
    /// such a table with [`Table::finish_open`]).
    pub fn entries(&self) -> Vec<(String, Range<usize>, &'a Spanned<DeValue<'i>>)> {
        let mut out = Vec::new();
        for (k, v) in self.map.iter() {
            out.push((k.get_ref().to_string(), k.span(), v));
        }
        out
    }

    /// How the table is called in messages: `[fw.input]` or `[[link.bridge]] #2`.
    pub fn display_name(&self) -> String {
        if self.path.is_empty() {
            return "the top level".to_owned();
        }
        match self.path.rfind('[') {
            Some(i) if self.path.ends_with(']') => {
                let idx: usize = self.path[i + 1..self.path.len() - 1].parse().unwrap_or(0);
                format!("[[{}]] #{}", &self.path[..i], idx + 1)
            }
            _ => format!("[{}]", self.path),
        }
    }

    /// Reports every key that was never asked for, with a "did you mean" hint.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        for (k, _) in self.map.iter() {
            let name = k.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let path = self.child_key(name);
            let table = self.display_name();
            let d = ctx.error(k.span(), &path, format!("unknown key `{name}` in {table}"));
            match closest(name, &self.known) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None => d.hint(format!("valid keys here: {}", self.known.join(", "))),
            };
        }
    }

    /// Like `finish`, for tables whose entries were all consumed through [`Table::entries`].
    pub fn finish_open(self) {}
}

/// A name that labels metrics and keepalived objects (notify targets, HA instances): 1 to 64
/// ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The known key closest to `name`, if any is close enough to be a likely typo.
pub fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, k)| (*d, k.len().abs_diff(name.len())))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_doc(text: &str, f: impl FnOnce(&mut Ctx<'_>, Table<'_, '_>)) -> Vec<Diagnostic> {
        let src = SourceFile::new("t.toml", text);
        let (doc, errs) = DeTable::parse_recoverable(text);
        assert!(errs.is_empty(), "{errs:?}");
        let mut ctx = Ctx::new(&src);
        let t = Table::new(doc.get_ref(), doc.span(), "");
        f(&mut ctx, t);
        ctx.into_diagnostics()
    }

    #[test]
    fn unknown_keys_get_a_did_you_mean_hint() {
        let d = with_doc("proto = 1\nprot = 2\n", |ctx, mut t| {
            let _: Option<u16> = t.opt(ctx, "proto");
            t.finish(ctx);
        });
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "unknown key `prot` in the top level");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `proto`?"));
        assert_eq!(d[0].location, Some(Location { line: 2, column: 1 }));
    }

    #[test]
    fn integers_are_range_checked_with_their_key() {
        let d = with_doc("port = 70000\n", |ctx, mut t| {
            let p: Option<u16> = t.opt(ctx, "port");
            assert_eq!(p, None);
            t.finish(ctx);
        });
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("between 0 and 65535"),
            "{}",
            d[0].message
        );
        assert_eq!(d[0].location, Some(Location { line: 1, column: 8 }));
    }

    #[test]
    fn every_bad_element_of_an_array_is_reported() {
        let d = with_doc("a = [1, \"x\", true]\n", |ctx, mut t| {
            let v: Option<Vec<u8>> = t.opt(ctx, "a");
            assert!(v.is_none());
            t.finish(ctx);
        });
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].key, "a[1]");
        assert_eq!(d[1].key, "a[2]");
    }

    #[test]
    fn a_missing_required_key_names_the_table() {
        let d = with_doc("[[bridge]]\nmtu = 1500\n", |ctx, mut t| {
            let items = t.list(ctx, "bridge", |ctx, mut b| {
                let n: Option<String> = b.req(ctx, "name");
                let _: Option<u32> = b.opt(ctx, "mtu");
                b.finish(ctx);
                n
            });
            assert!(items.is_empty());
            t.finish(ctx);
        });
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "missing required key `name` in [[bridge]] #1");
    }
}
