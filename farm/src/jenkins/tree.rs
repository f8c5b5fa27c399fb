//! The `tree=` / `depth=` machinery of Jenkins' remote API, reimplemented from stapler
//! (jenkinsci/stapler @ 135bbbc88aa447ced53f9d4da023ab95b9b315d0,
//! `core/src/main/java/org/kohsuke/stapler/export/`), with a JSON writer that serializes
//! straight from the simulator's state, so a 10,000-item queue is written in one pass.
//!
//! - `NamedPathPruner.parse`: `list := node (',' list)?`, `node := NAME ('[' list ']')?
//!   ('{' range '}')?`. A name is any run of characters other than `,[]{}` (no trimming).
//!   Ranges: `{M,N}` = elements M..N (N exclusive), `{M,}` = from M, `{,N}` = the first N,
//!   `{N}` = the single element N (`Range(min, min + 1)`). Errors are `IllegalArgumentException`s
//!   "expected name at N", "expected RBRACE at N", "expected number at N", … .
//! - `NamedPathPruner.accept`: a property is written if the tree names it (or `*`); nested
//!   objects get the subtree; visibility is ignored. An object whose subtree names nothing is
//!   written as `{"_class": …}` only.
//! - `TreePruner.ByDepth`: `depth=N` starts at `ByDepth(1 - N)`; a property is written if its
//!   visibility (`@Exported(visibility)`, default 1, or the bean's `defaultVisibility`) is at
//!   least the level; an `inline` property stays on the same level, anything else goes one level
//!   deeper. That is why nested executors show as `{}` at the default depth.
//! - `Range.apply`: cap at `max`, then skip `min`.
//! - `_class` (`ClassAttributeBehaviour.IF_NEEDED`): always on the top object; on a nested one
//!   only when the runtime class differs from the declared type. Callers pass `None` where the
//!   declared type is the class itself.
//! - A malformed tree makes `ResponseImpl.serveExposedBean` throw
//!   `ServletException("Malformed tree expression: " + x)`, which Jenkins renders as its 500
//!   "Oops!" page (`InstallUncaughtExceptionHandler`, status 500); so does a non-numeric depth
//!   ("Depth parameter must be a number").

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A parsed `tree=` specification (`NamedPathPruner.Tree`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSpec {
    children: BTreeMap<String, TreeSpec>,
    range: Range,
}

/// Which elements of a list are written (`org.kohsuke.stapler.export.Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    min: usize,
    max: usize,
}

impl Default for Range {
    fn default() -> Self {
        Range {
            min: 0,
            max: i32::MAX as usize,
        }
    }
}

impl Range {
    /// `Range.apply`: keep the first `max`, then drop the first `min`.
    pub fn apply<I: Iterator>(self, it: I) -> impl Iterator<Item = I::Item> {
        it.take(self.max).skip(self.min)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Comma,
    LBrace,
    RBrace,
    QLBrace,
    QRBrace,
    Eof,
}

impl Tok {
    fn java_name(self) -> &'static str {
        match self {
            Tok::Comma => "COMMA",
            Tok::LBrace => "LBRACE",
            Tok::RBrace => "RBRACE",
            Tok::QLBrace => "QLBRACE",
            Tok::QRBrace => "QRBRACE",
            Tok::Eof => "EOF",
        }
    }
}

enum Peeked<'a> {
    Tok(Tok),
    Name(&'a str),
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
    next: usize,
}

impl<'a> Reader<'a> {
    fn peek(&mut self) -> Peeked<'a> {
        let rest = &self.text[self.pos..];
        let tok = match rest.chars().next() {
            None => Tok::Eof,
            Some(',') => Tok::Comma,
            Some('[') => Tok::LBrace,
            Some(']') => Tok::RBrace,
            Some('{') => Tok::QLBrace,
            Some('}') => Tok::QRBrace,
            Some(_) => {
                let len = rest.find([',', '[', ']', '{', '}']).unwrap_or(rest.len());
                self.next = self.pos + len;
                return Peeked::Name(&rest[..len]);
            }
        };
        self.next = self.pos + usize::from(tok != Tok::Eof);
        Peeked::Tok(tok)
    }

    /// Position in UTF-16 units, as Java reports it.
    fn java_pos(&self) -> usize {
        self.text[..self.pos].encode_utf16().count()
    }

    fn advance(&mut self) {
        self.pos = self.next;
    }

    fn accept(&mut self, tok: Tok) -> bool {
        if matches!(self.peek(), Peeked::Tok(t) if t == tok) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), String> {
        if self.accept(tok) {
            Ok(())
        } else {
            Err(format!(
                "expected {} at {}",
                tok.java_name(),
                self.java_pos()
            ))
        }
    }

    fn expect_number(&mut self) -> Result<usize, String> {
        match self.peek() {
            Peeked::Name(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                // Integer.parseInt: a NumberFormatException is an IllegalArgumentException too.
                let n: i32 = s
                    .parse()
                    .map_err(|_| format!("For input string: \"{s}\""))?;
                self.advance();
                Ok(n as usize)
            }
            _ => Err(format!("expected number at {}", self.java_pos())),
        }
    }
}

/// Parses a `tree=` value. The error text is the `IllegalArgumentException` message.
pub fn parse_tree(spec: &str) -> Result<TreeSpec, String> {
    let mut r = Reader {
        text: spec,
        pos: 0,
        next: 0,
    };
    let mut t = TreeSpec::default();
    list(&mut r, &mut t)?;
    r.expect(Tok::Eof)?;
    Ok(t)
}

fn list(r: &mut Reader<'_>, t: &mut TreeSpec) -> Result<(), String> {
    // Iterative form of `node (',' list)?`, so a long spec cannot overflow the stack.
    loop {
        node(r, t)?;
        if !r.accept(Tok::Comma) {
            return Ok(());
        }
    }
}

fn node(r: &mut Reader<'_>, t: &mut TreeSpec) -> Result<(), String> {
    let name = match r.peek() {
        Peeked::Name(n) => n.to_owned(),
        Peeked::Tok(_) => return Err(format!("expected name at {}", r.java_pos())),
    };
    r.advance();
    let mut sub = TreeSpec::default();
    if r.accept(Tok::LBrace) {
        list(r, &mut sub)?;
        r.expect(Tok::RBrace)?;
    }
    if r.accept(Tok::QLBrace) {
        sub.range = parse_range(r)?;
        r.expect(Tok::QRBrace)?;
    }
    t.children.insert(name, sub);
    Ok(())
}

fn parse_range(r: &mut Reader<'_>) -> Result<Range, String> {
    if r.accept(Tok::Comma) {
        return Ok(Range {
            min: 0,
            max: r.expect_number()?,
        });
    }
    let min = r.expect_number()?;
    if matches!(r.peek(), Peeked::Tok(Tok::QRBrace)) {
        return Ok(Range {
            min,
            max: min.saturating_add(1),
        });
    }
    r.expect(Tok::Comma)?;
    if matches!(r.peek(), Peeked::Tok(Tok::QRBrace)) {
        return Ok(Range {
            min,
            max: i32::MAX as usize,
        });
    }
    Ok(Range {
        min,
        max: r.expect_number()?,
    })
}

/// Decides which properties are written (`TreePruner`).
#[derive(Debug, Clone, Copy)]
pub enum Pruner<'a> {
    /// `ByDepth(n)`.
    Depth(i32),
    /// `NamedPathPruner` over a parsed spec.
    Tree(&'a TreeSpec),
}

/// Visibility of a property exported without an explicit `visibility`.
pub const VIS: i32 = 1;
/// `@Exported(visibility = 2)`, e.g. `Label.getName`, `Job.getIconColor`.
pub const VIS2: i32 = 2;
/// `visibility = 999`, e.g. `Queue.Item` (`@ExportedBean(defaultVisibility = 999)`), names.
pub const VIS_ALL: i32 = 999;

impl<'a> Pruner<'a> {
    /// The pruner for `?tree=` / `?depth=` query values, or the 500 message Jenkins gives.
    pub fn for_query(tree: Option<&'a TreeSpec>, depth: Option<&str>) -> Result<Self, String> {
        if let Some(t) = tree {
            return Ok(Pruner::Tree(t));
        }
        let depth = match depth {
            None => 0,
            Some(s) => s
                .parse::<i32>()
                .map_err(|_| "Depth parameter must be a number".to_owned())?,
        };
        Ok(Pruner::Depth(1i32.saturating_sub(depth)))
    }

    fn accept(self, name: &str, visibility: i32, inline: bool) -> Option<Pruner<'a>> {
        match self {
            Pruner::Depth(n) => {
                if visibility < n {
                    None
                } else if inline {
                    Some(self)
                } else {
                    Some(Pruner::Depth(n.saturating_add(1)))
                }
            }
            Pruner::Tree(t) => t
                .children
                .get(name)
                .or_else(|| t.children.get("*"))
                .map(Pruner::Tree),
        }
    }

    fn range(self) -> Range {
        match self {
            Pruner::Depth(_) => Range::default(),
            Pruner::Tree(t) => t.range,
        }
    }
}

/// Writes one JSON object; properties are offered with their export metadata and written only
/// if the pruner accepts them.
pub struct Obj<'w, 'p> {
    out: &'w mut String,
    pruner: Pruner<'p>,
    first: bool,
}

/// A slot for one JSON value, carrying the pruner for what is nested inside it.
pub struct Val<'w, 'p> {
    out: &'w mut String,
    pruner: Pruner<'p>,
}

/// Serializes a top-level exported bean (its `_class` is always written).
pub fn render(pruner: Pruner<'_>, class: &str, f: impl FnOnce(&mut Obj<'_, '_>)) -> String {
    let mut out = String::with_capacity(256);
    Val {
        out: &mut out,
        pruner,
    }
    .obj(Some(class), f);
    out
}

impl<'w, 'p> Obj<'w, 'p> {
    /// Offers a property with the given visibility; `Some` when it is to be written.
    pub fn prop(&mut self, name: &str, visibility: i32) -> Option<Val<'_, 'p>> {
        self.prop_with(name, visibility, false)
    }

    /// Offers an `@Exported(inline = true)` property.
    pub fn prop_inline(&mut self, name: &str, visibility: i32) -> Option<Val<'_, 'p>> {
        self.prop_with(name, visibility, true)
    }

    fn prop_with(&mut self, name: &str, visibility: i32, inline: bool) -> Option<Val<'_, 'p>> {
        let pruner = self.pruner.accept(name, visibility, inline)?;
        self.key(name);
        Some(Val {
            out: &mut *self.out,
            pruner,
        })
    }

    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(':');
    }

    /// Shorthand: a string property.
    pub fn str(&mut self, name: &str, visibility: i32, value: &str) {
        if let Some(v) = self.prop(name, visibility) {
            v.str(value);
        }
    }

    /// Shorthand: a nullable string property.
    pub fn opt_str(&mut self, name: &str, visibility: i32, value: Option<&str>) {
        if let Some(v) = self.prop(name, visibility) {
            v.opt_str(value);
        }
    }

    /// Shorthand: a boolean property.
    pub fn bool(&mut self, name: &str, visibility: i32, value: bool) {
        if let Some(v) = self.prop(name, visibility) {
            v.bool(value);
        }
    }

    /// Shorthand: an integer property.
    pub fn int(&mut self, name: &str, visibility: i32, value: i64) {
        if let Some(v) = self.prop(name, visibility) {
            v.int(value);
        }
    }

    /// Shorthand: an always-empty list property (`actions`, `clouds`, …).
    pub fn empty_list(&mut self, name: &str, visibility: i32) {
        if let Some(v) = self.prop(name, visibility) {
            v.raw("[]");
        }
    }
}

impl<'w, 'p> Val<'w, 'p> {
    /// `null`.
    pub fn null(self) {
        self.out.push_str("null");
    }

    /// A boolean.
    pub fn bool(self, b: bool) {
        self.out.push_str(if b { "true" } else { "false" });
    }

    /// An integer.
    pub fn int(self, n: i64) {
        let _ = write!(self.out, "{n}");
    }

    /// A string.
    pub fn str(self, s: &str) {
        write_str(self.out, s);
    }

    /// A string or `null`.
    pub fn opt_str(self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }

    /// Pre-serialized JSON.
    pub fn raw(self, json: &str) {
        self.out.push_str(json);
    }

    /// A nested object; `class` is its `_class` when it must be written.
    pub fn obj(self, class: Option<&str>, f: impl FnOnce(&mut Obj<'_, 'p>)) {
        self.out.push('{');
        let mut o = Obj {
            out: self.out,
            pruner: self.pruner,
            first: true,
        };
        if let Some(c) = class {
            o.key("_class");
            write_str(o.out, c);
        }
        f(&mut o);
        o.out.push('}');
    }

    /// A map (`@Exported(inline = true) Map`): every key is written; the pruner applies to
    /// the properties of the values.
    pub fn map<K: AsRef<str>, T>(
        self,
        entries: impl IntoIterator<Item = (K, T)>,
        mut f: impl FnMut(Val<'_, 'p>, T),
    ) {
        self.out.push('{');
        let pruner = self.pruner;
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_str(self.out, k.as_ref());
            self.out.push(':');
            f(
                Val {
                    out: &mut *self.out,
                    pruner,
                },
                v,
            );
        }
        self.out.push('}');
    }

    /// A list; the pruner's range picks the elements, each written by `f`.
    pub fn list<I: IntoIterator>(self, items: I, mut f: impl FnMut(Val<'_, 'p>, I::Item)) {
        self.out.push('[');
        let pruner = self.pruner;
        for (i, item) in pruner.range().apply(items.into_iter()).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            f(
                Val {
                    out: &mut *self.out,
                    pruner,
                },
                item,
            );
        }
        self.out.push(']');
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pruner: Pruner<'_>) -> String {
        render(pruner, "hudson.model.ComputerSet", |o| {
            o.int("busyExecutors", VIS, 0);
            if let Some(v) = o.prop_inline("computer", VIS) {
                v.list(["a", "b", "c"], |v, name| {
                    v.obj(Some("hudson.slaves.SlaveComputer"), |o| {
                        o.str("displayName", VIS, name);
                        if let Some(v) = o.prop("executors", VIS) {
                            v.list([0, 1], |v, n| {
                                v.obj(None, |o| o.int("number", VIS, n));
                            });
                        }
                        if let Some(v) = o.prop("assignedLabels", VIS) {
                            v.list([name], |v, l| v.obj(None, |o| o.str("name", VIS2, l)));
                        }
                    });
                });
            }
        })
    }

    #[test]
    fn default_depth_hides_nested_fields_of_visibility_one() {
        let json = sample(Pruner::for_query(None, None).unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["_class"], "hudson.model.ComputerSet");
        assert_eq!(v["computer"][0]["executors"], serde_json::json!([{}, {}]));
        assert_eq!(v["computer"][0]["assignedLabels"][0]["name"], "a");
        let deeper = sample(Pruner::for_query(None, Some("1")).unwrap());
        let v: serde_json::Value = serde_json::from_str(&deeper).unwrap();
        assert_eq!(v["computer"][1]["executors"][1]["number"], 1);
    }

    #[test]
    fn tree_selects_fields_and_ranges() {
        let cases: &[(&str, serde_json::Value)] = &[
            (
                "computer[displayName]",
                serde_json::json!({"_class":"hudson.model.ComputerSet","computer":[
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"a"},
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"b"},
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"c"}]}),
            ),
            (
                "computer[displayName]{1,2}",
                serde_json::json!({"_class":"hudson.model.ComputerSet","computer":[
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"b"}]}),
            ),
            (
                "computer[displayName]{2}",
                serde_json::json!({"_class":"hudson.model.ComputerSet","computer":[
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"c"}]}),
            ),
            (
                "computer[displayName]{,1}",
                serde_json::json!({"_class":"hudson.model.ComputerSet","computer":[
                    {"_class":"hudson.slaves.SlaveComputer","displayName":"a"}]}),
            ),
            (
                "computer{1,}",
                serde_json::json!({"_class":"hudson.model.ComputerSet","computer":[
                    {"_class":"hudson.slaves.SlaveComputer"},
                    {"_class":"hudson.slaves.SlaveComputer"}]}),
            ),
            (
                "busyExecutors,computer[executors[number]{1}]{0}",
                serde_json::json!({"_class":"hudson.model.ComputerSet","busyExecutors":0,
                    "computer":[{"_class":"hudson.slaves.SlaveComputer","executors":[{"number":1}]}]}),
            ),
            (
                "*",
                serde_json::json!({"_class":"hudson.model.ComputerSet","busyExecutors":0,
                    "computer":[{"_class":"hudson.slaves.SlaveComputer"},
                    {"_class":"hudson.slaves.SlaveComputer"},{"_class":"hudson.slaves.SlaveComputer"}]}),
            ),
        ];
        for (spec, want) in cases {
            let t = parse_tree(spec).unwrap();
            let got: serde_json::Value = serde_json::from_str(&sample(Pruner::Tree(&t))).unwrap();
            assert_eq!(&got, want, "tree={spec}");
        }
    }

    #[test]
    fn malformed_trees_fail_with_stapler_messages() {
        let cases = [
            ("", "expected name at 0"),
            ("a,", "expected name at 2"),
            ("a[b", "expected RBRACE at 3"),
            ("a]", "expected EOF at 1"),
            ("a{x}", "expected number at 2"),
            ("a{1", "expected COMMA at 3"),
            ("a{1,2", "expected QRBRACE at 5"),
            ("[a]", "expected name at 0"),
            ("a{99999999999}", "For input string: \"99999999999\""),
        ];
        for (spec, msg) in cases {
            assert_eq!(parse_tree(spec), Err(msg.to_owned()), "tree={spec}");
        }
        assert!(Pruner::for_query(None, Some("x")).is_err());
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\u{1}‘x’");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001‘x’\"");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}‘x’");
    }
}
