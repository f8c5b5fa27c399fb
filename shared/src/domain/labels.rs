//! Jenkins label expressions, parsed and rendered exactly as Jenkins core does, so that the
//! scaler and the simulator agree with a real master on which node can take which queue item and
//! on the text Jenkins puts inside queue `why` messages.
//!
//! Sources (jenkinsci/jenkins @ ff9430ee1dc6e319349a488650d914444fe141f3):
//! - grammar: `core/src/main/antlr4/hudson/model/labels/LabelExpressionLexer.g4` and
//!   `LabelExpressionParser.g4`. Precedence, loosest first: `<->` (left-associative chain),
//!   `->` (**not** chainable: `a->b->c` is a syntax error), `||`, `&&` (both left-associative),
//!   `!` (applies to an atom or a parenthesised expression only, so `!!a` is a syntax error),
//!   then `( … )`, atoms and `"quoted atoms"`. Spaces and tabs separate tokens; any other
//!   character except `& | ! < > ( ) " ' -` belongs to an atom, and `-` does too unless it is
//!   followed by `>`. A lexer or parser error makes the whole expression invalid
//!   (`Label.parseExpression` installs `JenkinsANTLRErrorListener`, which throws).
//! - parentheses are kept in the tree (`LabelExpression.Paren`, "useful for preserving the
//!   parenthesis in the user input"), so `(a)` and `a` are different expressions with different
//!   names.
//! - rendering: `LabelExpression.Binary` builds its name as `lhs + op + rhs` with **no spaces**,
//!   so `docker && linux` is named `docker&&linux`; a child is put in parentheses only when its
//!   operator binds looser than the parent's (`LabelExpression.paren`, comparing
//!   `LabelOperatorPrecedence` ordinals). Atoms inside an expression are rendered by
//!   `LabelAtom.getExpression()`, which quotes (`QuotedStringTokenizer.quote`) a name that fails
//!   `Jenkins.checkGoodName` or contains one of ` ()\t\n` (`LabelAtom.needsEscape`).
//! - `Label.getName()` is that name; for a bare atom it is the raw name **without** quotes. That is
//!   the text inside queue messages such as "Waiting for next available executor on ‘x’"
//!   (`CauseOfBlockage.BecauseLabelIsBusy` calls `label.getName()`). [`LabelExpr::name`] gives it;
//!   `Display` gives `getExpression()` (identical except for a bare atom that needs quoting), so
//!   that what is displayed parses back to the same expression.
//! - no label: `Jenkins.getLabel` returns `null` for `null`; `ExecutorStep` (pipeline `node(..)`)
//!   and `AbstractProject.setAssignedLabel` treat a blank string as no label
//!   (`Util.fixEmptyAndTrim`). An expression that does not parse is taken "laxly" as a single
//!   atom (`Jenkins.getLabel`, "for backward compatibility"). [`assigned_label`] does both.
//! - a node's labels always include its self label, its own name (`Node.getAssignedLabels` adds
//!   `getSelfLabel()`; `Jenkins.getSelfLabel()` is `built-in` for the built-in node after the
//!   2.307 rename). [`node_labels`] builds that set from a node's label string the way
//!   `Label.parse` tokenizes it (`QuotedStringTokenizer`, whitespace separated, quotes allowed).
//!
//! Known deviation: error messages are ours ("expected … at character N"), not ANTLR's wording.

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

/// A parsed Jenkins label expression.
///
/// The tree has the shape Jenkins' parser produces (parentheses kept as [`LabelExpr::Paren`]),
/// so rendering it gives back the text Jenkins would show.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelExpr {
    /// A single label (`LabelAtom`), unquoted.
    Atom(String),
    /// `!x` (`LabelExpression.Not`).
    Not(Box<LabelExpr>),
    /// `(x)` (`LabelExpression.Paren`).
    Paren(Box<LabelExpr>),
    /// `a&&b`.
    And(Box<LabelExpr>, Box<LabelExpr>),
    /// `a||b`.
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// `a->b`.
    Implies(Box<LabelExpr>, Box<LabelExpr>),
    /// `a<->b`.
    Iff(Box<LabelExpr>, Box<LabelExpr>),
}

/// Why a label expression could not be parsed. `position` is the 0-based character offset of
/// the offending token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid label expression at character {position}: {message}")]
pub struct LabelError {
    /// 0-based character offset into the input.
    pub position: usize,
    /// What was expected or found.
    pub message: String,
}

/// `LabelOperatorPrecedence`, in Jenkins' ordinal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Atom,
    Not,
    And,
    Or,
    Implies,
    Iff,
}

impl LabelExpr {
    /// `Label.precedence()`: an atom and a parenthesised expression bind tightest.
    fn precedence(&self) -> Precedence {
        match self {
            LabelExpr::Atom(_) | LabelExpr::Paren(_) => Precedence::Atom,
            LabelExpr::Not(_) => Precedence::Not,
            LabelExpr::And(..) => Precedence::And,
            LabelExpr::Or(..) => Precedence::Or,
            LabelExpr::Implies(..) => Precedence::Implies,
            LabelExpr::Iff(..) => Precedence::Iff,
        }
    }

    /// Shorthand for an atom.
    pub fn atom(name: impl Into<String>) -> Self {
        LabelExpr::Atom(name.into())
    }

    /// `Label.getName()`: the text Jenkins shows for this label, e.g. inside queue `why`
    /// messages. A bare atom is its raw name; anything else is its expression.
    pub fn name(&self) -> String {
        match self {
            LabelExpr::Atom(a) => a.clone(),
            other => other.to_string(),
        }
    }

    /// Whether a node carrying `labels` satisfies this expression (`Label.matches`). Both sides
    /// of a binary operator are evaluated, as in Jenkins.
    pub fn matches(&self, labels: &BTreeSet<String>) -> bool {
        self.matches_with(&|atom: &str| labels.contains(atom))
    }

    /// Like [`LabelExpr::matches`], with a predicate telling whether the node has an atom.
    pub fn matches_with(&self, has: &dyn Fn(&str) -> bool) -> bool {
        match self {
            LabelExpr::Atom(a) => has(a),
            LabelExpr::Not(e) => !e.matches_with(has),
            LabelExpr::Paren(e) => e.matches_with(has),
            LabelExpr::And(a, b) => a.matches_with(has) & b.matches_with(has),
            LabelExpr::Or(a, b) => a.matches_with(has) | b.matches_with(has),
            LabelExpr::Implies(a, b) => !a.matches_with(has) | b.matches_with(has),
            LabelExpr::Iff(a, b) => a.matches_with(has) == b.matches_with(has),
        }
    }

    /// Every atom named in the expression (`Label.listAtoms`).
    pub fn atoms(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_atoms(&mut out);
        out
    }

    fn collect_atoms(&self, out: &mut BTreeSet<String>) {
        match self {
            LabelExpr::Atom(a) => {
                out.insert(a.clone());
            }
            LabelExpr::Not(e) | LabelExpr::Paren(e) => e.collect_atoms(out),
            LabelExpr::And(a, b)
            | LabelExpr::Or(a, b)
            | LabelExpr::Implies(a, b)
            | LabelExpr::Iff(a, b) => {
                a.collect_atoms(out);
                b.collect_atoms(out);
            }
        }
    }

    /// Writes `LabelExpression.paren(op, child)`: the child's expression, in parentheses when
    /// it binds looser than `op`.
    fn write_child(f: &mut fmt::Formatter<'_>, op: Precedence, child: &LabelExpr) -> fmt::Result {
        if op < child.precedence() {
            write!(f, "({child})")
        } else {
            write!(f, "{child}")
        }
    }
}

/// `Label.getExpression()`: operators without spaces, atoms quoted when they need it.
impl fmt::Display for LabelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, sym, a, b) = match self {
            LabelExpr::Atom(a) => return f.write_str(&escape_atom(a)),
            LabelExpr::Paren(e) => return write!(f, "({e})"),
            LabelExpr::Not(e) => {
                f.write_str("!")?;
                return LabelExpr::write_child(f, Precedence::Not, e);
            }
            LabelExpr::And(a, b) => (Precedence::And, "&&", a, b),
            LabelExpr::Or(a, b) => (Precedence::Or, "||", a, b),
            LabelExpr::Implies(a, b) => (Precedence::Implies, "->", a, b),
            LabelExpr::Iff(a, b) => (Precedence::Iff, "<->", a, b),
        };
        LabelExpr::write_child(f, op, a)?;
        f.write_str(sym)?;
        LabelExpr::write_child(f, op, b)
    }
}

/// `Jenkins.checkGoodName` failing, or one of ` ()\t\n` present (`LabelAtom.needsEscape`).
pub fn needs_escape(name: &str) -> bool {
    let trimmed = name.trim_matches(|c: char| c <= ' ');
    if name.is_empty() || trimmed == "." || trimmed == ".." {
        return true;
    }
    let bad =
        |c: char| is_iso_control(c) || "?*/\\%!@#$^&|<>[]:;".contains(c) || " ()\t\n".contains(c);
    name.chars().any(bad) || trimmed.ends_with('.')
}

/// Java's `Character.isISOControl`.
fn is_iso_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// `LabelAtom.escape`: the atom as it appears inside an expression.
pub fn escape_atom(name: &str) -> String {
    if !needs_escape(name) {
        return name.to_owned();
    }
    // QuotedStringTokenizer.quote: ", \, \n, \r, \t, \f and \b are escaped.
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            '\u{8}' => out.push_str("\\b"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    And,
    Or,
    Not,
    Implies,
    Iff,
    LParen,
    RParen,
    Atom(String),
    Str(String),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Not => "'!'".into(),
            Tok::Implies => "'->'".into(),
            Tok::Iff => "'<->'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Atom(a) => format!("label '{a}'"),
            Tok::Str(a) => format!("quoted label '{a}'"),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// `IDENTIFIER_PART` of the lexer grammar (a `-` is handled separately).
fn is_identifier_part(c: char) -> bool {
    !matches!(
        c,
        '&' | '|' | '!' | '<' | '>' | '(' | ')' | ' ' | '\t' | '"' | '\'' | '-'
    )
}

fn lex(input: &str) -> Result<Vec<(Tok, usize)>, LabelError> {
    let chars: Vec<char> = input.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let err = |position: usize, message: String| LabelError { position, message };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        match c {
            ' ' | '\t' => {
                i += 1;
                continue;
            }
            '&' if next == Some('&') => {
                toks.push((Tok::And, start));
                i += 2;
            }
            '|' if next == Some('|') => {
                toks.push((Tok::Or, start));
                i += 2;
            }
            '!' => {
                toks.push((Tok::Not, start));
                i += 1;
            }
            '<' if next == Some('-') && chars.get(i + 2) == Some(&'>') => {
                toks.push((Tok::Iff, start));
                i += 3;
            }
            '-' if next == Some('>') => {
                toks.push((Tok::Implies, start));
                i += 2;
            }
            '(' => {
                toks.push((Tok::LParen, start));
                i += 1;
            }
            ')' => {
                toks.push((Tok::RParen, start));
                i += 1;
            }
            '"' => {
                // STRINGLITERAL, then QuotedStringTokenizer.unquote.
                i += 1;
                let mut value = String::new();
                loop {
                    match chars.get(i).copied() {
                        None => return Err(err(start, "unterminated quoted label".into())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\r') | Some('\n') => {
                            return Err(err(i, "line break inside a quoted label".into()));
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1).copied() {
                                Some('b') => '\u{8}',
                                Some('t') => '\t',
                                Some('n') => '\n',
                                Some('f') => '\u{c}',
                                Some('r') => '\r',
                                Some(c @ ('"' | '\'' | '\\')) => c,
                                _ => {
                                    return Err(err(i, "invalid escape in a quoted label".into()));
                                }
                            };
                            value.push(escaped);
                            i += 2;
                        }
                        Some(c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                toks.push((Tok::Str(value), start));
            }
            c if is_identifier_part(c) || c == '-' => {
                let mut value = String::new();
                while let Some(&c) = chars.get(i) {
                    let dash_ok = c == '-' && chars.get(i + 1) != Some(&'>');
                    if is_identifier_part(c) || dash_ok {
                        value.push(c);
                        i += 1;
                    } else {
                        break;
                    }
                }
                toks.push((Tok::Atom(value), start));
            }
            other => {
                return Err(err(start, format!("unexpected character {other:?}")));
            }
        }
    }
    toks.push((Tok::Eof, chars.len()));
    Ok(toks)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |(t, _)| t)
    }

    fn position(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |(_, p)| *p)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn fail<T>(&self, expected: &str) -> Result<T, LabelError> {
        Err(LabelError {
            position: self.position(),
            message: format!("expected {expected}, found {}", self.peek().describe()),
        })
    }

    // term1: term2 (IFF term2)*
    fn term1(&mut self) -> Result<LabelExpr, LabelError> {
        let mut l = self.term2()?;
        while *self.peek() == Tok::Iff {
            self.bump();
            let r = self.term2()?;
            l = LabelExpr::Iff(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    // term2: term3 (IMPLIES term3)?
    fn term2(&mut self) -> Result<LabelExpr, LabelError> {
        let l = self.term3()?;
        if *self.peek() == Tok::Implies {
            self.bump();
            let r = self.term3()?;
            return Ok(LabelExpr::Implies(Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    // term3: term4 (OR term4)*
    fn term3(&mut self) -> Result<LabelExpr, LabelError> {
        let mut l = self.term4()?;
        while *self.peek() == Tok::Or {
            self.bump();
            let r = self.term4()?;
            l = LabelExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    // term4: term5 (AND term5)*
    fn term4(&mut self) -> Result<LabelExpr, LabelError> {
        let mut l = self.term5()?;
        while *self.peek() == Tok::And {
            self.bump();
            let r = self.term5()?;
            l = LabelExpr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    // term5: term6 | NOT term6
    fn term5(&mut self) -> Result<LabelExpr, LabelError> {
        if *self.peek() == Tok::Not {
            self.bump();
            let e = self.term6()?;
            return Ok(LabelExpr::Not(Box::new(e)));
        }
        self.term6()
    }

    // term6: LPAREN term1 RPAREN | ATOM | STRINGLITERAL
    fn term6(&mut self) -> Result<LabelExpr, LabelError> {
        match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let e = self.term1()?;
                if *self.peek() != Tok::RParen {
                    return self.fail("')'");
                }
                self.bump();
                Ok(LabelExpr::Paren(Box::new(e)))
            }
            Tok::Atom(a) | Tok::Str(a) => {
                self.bump();
                Ok(LabelExpr::Atom(a))
            }
            _ => self.fail("a label, a quoted label or '('"),
        }
    }
}

/// The most tokens (labels, operators, parentheses) [`parse`] accepts.
pub const MAX_TOKENS: usize = 1000;

/// Parses a label expression as `Label.parseExpression` does: the whole input must be one
/// expression. Never panics; every failure is a [`LabelError`] with a position.
pub fn parse(input: &str) -> Result<LabelExpr, LabelError> {
    let toks = lex(input)?;
    // The parser, `Display`, `matches` and drop all recurse as deep as the expression nests,
    // and a queue `why` can carry any expression a job names: cap its size so that no text
    // overflows a 2 MiB (tokio worker) stack. Far above any expression written by hand.
    if let Some((_, position)) = toks.get(MAX_TOKENS).filter(|_| toks.len() > MAX_TOKENS + 1) {
        return Err(LabelError {
            position: *position,
            message: format!("more than {MAX_TOKENS} tokens: too long to be a label expression"),
        });
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.term1()?;
    match p.peek() {
        Tok::Eof => Ok(e),
        Tok::Implies => p.fail("'<->' or end of input ('->' cannot be chained)"),
        _ => p.fail("an operator or end of input"),
    }
}

/// The label a job or `node(..)` step asks for, as Jenkins resolves the configured string:
/// `None` for a missing or blank string (`Util.fixEmptyAndTrim`), otherwise the parsed
/// expression, or, when it does not parse, a single atom of the whole (unquoted) text
/// (`Jenkins.getLabel`: "laxly accept it as a single label atom for backward compatibility").
pub fn assigned_label(configured: Option<&str>) -> Option<LabelExpr> {
    let text = configured?.trim();
    if text.is_empty() {
        return None;
    }
    let text = unquote(text);
    Some(parse(&text).unwrap_or(LabelExpr::Atom(text)))
}

/// `QuotedStringTokenizer.unquote`: strips one pair of matching `"` or `'` quotes, resolving
/// backslash escapes; anything else is returned unchanged.
pub fn unquote(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 2 {
        return s.to_owned();
    }
    let (first, last) = (chars[0], chars[chars.len() - 1]);
    if first != last || (first != '"' && first != '\'') {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut escape = false;
    for &c in &chars[1..chars.len() - 1] {
        if escape {
            escape = false;
            out.push(match c {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'f' => '\u{c}',
                'b' => '\u{8}',
                other => other,
            });
        } else if c == '\\' {
            escape = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// The labels of a node: the atoms of its label string, split as `Label.parse` does
/// (whitespace separated, `"…"`/`'…'` quoting), plus its self label (its own name).
pub fn node_labels(self_label: &str, label_string: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quote: Option<char> = None;
    let mut escape = false;
    for c in label_string.chars() {
        if let Some(q) = quote {
            if escape {
                escape = false;
                cur.push(c);
            } else if c == '\\' {
                escape = true;
            } else if c == q {
                quote = None;
            } else {
                cur.push(c);
            }
        } else if c.is_whitespace() {
            if in_token {
                out.insert(std::mem::take(&mut cur));
                in_token = false;
            }
        } else if c == '"' || c == '\'' {
            quote = Some(c);
            in_token = true;
        } else {
            cur.push(c);
            in_token = true;
        }
    }
    if in_token {
        out.insert(cur);
    }
    out.insert(self_label.to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Box<LabelExpr> {
        Box::new(LabelExpr::atom(s))
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Found by `make fuzz` (jenkins_json): a `why` with 5,000 nested parentheses overflowed
    /// a 2 MiB stack (a test thread's, a tokio worker's) in the recursive parser.
    #[test]
    fn deeply_nested_expressions_are_refused_not_overflowing() {
        let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
        let err = parse(&deep).unwrap_err();
        assert_eq!(err.position, MAX_TOKENS);
        assert!(err.message.contains("too long"), "{err}");
        let chain = format!("a{}", "&&a".repeat(20_000));
        assert!(parse(&chain).is_err());
        // Up to the cap, anything parses, and its rendering reads back.
        let at_cap = format!("a{}", "||a".repeat((MAX_TOKENS - 1) / 2));
        let e = parse(&at_cap).unwrap();
        assert_eq!(parse(&e.to_string()), Ok(e));
        assert!(parse(&format!("{at_cap}||a")).is_err());
    }

    #[test]
    fn renders_binary_operators_without_spaces_like_jenkins() {
        let e = parse("docker && linux").unwrap();
        assert_eq!(e, LabelExpr::And(a("docker"), a("linux")));
        assert_eq!(e.to_string(), "docker&&linux");
        assert_eq!(e.name(), "docker&&linux");
    }

    #[test]
    fn precedence_and_associativity_follow_the_grammar() {
        let table: &[(&str, &str)] = &[
            ("a||b&&c", "a||b&&c"),
            ("a && b || c", "a&&b||c"),
            ("!a&&b", "!a&&b"),
            ("a->b||c", "a->b||c"),
            ("a<->b<->c", "a<->b<->c"),
            ("a <-> b -> c", "a<->b->c"),
            ("(a||b)&&c", "(a||b)&&c"),
            ("!(a||b)", "!(a||b)"),
            ("((a))", "((a))"),
        ];
        for (input, shown) in table {
            let e = parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
            assert_eq!(&e.to_string(), shown, "{input}");
        }
        assert_eq!(
            parse("a||b&&c").unwrap(),
            LabelExpr::Or(a("a"), Box::new(LabelExpr::And(a("b"), a("c"))))
        );
        assert_eq!(
            parse("a<->b<->c").unwrap(),
            LabelExpr::Iff(Box::new(LabelExpr::Iff(a("a"), a("b"))), a("c"))
        );
        assert_eq!(
            parse("a-b->c").unwrap(),
            LabelExpr::Implies(a("a-b"), a("c"))
        );
    }

    #[test]
    fn rejects_what_jenkins_rejects() {
        for bad in [
            "", "   ", "a->b->c", "!!a", "a &", "a | b", "a b", "(a", "a)", "&&a", "a<b", "'a'",
            "\"a", "\"a\\x\"", "a >b", "!",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.position <= bad.chars().count(), "{bad}: {err}");
        }
    }

    #[test]
    fn quoted_atoms_and_escaping() {
        let e = parse("\"a b\" && c").unwrap();
        assert_eq!(e, LabelExpr::And(a("a b"), a("c")));
        assert_eq!(e.to_string(), "\"a b\"&&c");
        // A bare atom's name is its raw text; its expression is quoted.
        let atom = parse("\"a b\"").unwrap();
        assert_eq!(atom.name(), "a b");
        assert_eq!(atom.to_string(), "\"a b\"");
        assert_eq!(escape_atom("x."), "\"x.\"");
        assert_eq!(escape_atom("a\"b c"), "\"a\\\"b c\"");
        assert_eq!(escape_atom("linux-amd64"), "linux-amd64");
    }

    #[test]
    fn matches_like_jenkins() {
        let labels = set(&["docker", "linux", "agent-1"]);
        let table: &[(&str, bool)] = &[
            ("docker", true),
            ("docker&&linux", true),
            ("docker&&windows", false),
            ("windows||linux", true),
            ("!windows", true),
            ("windows->arm", true),
            ("docker->arm", false),
            ("docker<->linux", true),
            ("docker<->arm", false),
            ("agent-1", true),
        ];
        for (expr, want) in table {
            assert_eq!(parse(expr).unwrap().matches(&labels), *want, "{expr}");
        }
    }

    #[test]
    fn blank_means_no_label_and_garbage_is_one_atom() {
        assert_eq!(assigned_label(None), None);
        assert_eq!(assigned_label(Some("  \t")), None);
        assert_eq!(
            assigned_label(Some("docker && linux")),
            Some(LabelExpr::And(a("docker"), a("linux")))
        );
        assert_eq!(assigned_label(Some("a b")), Some(LabelExpr::atom("a b")));
        assert_eq!(assigned_label(Some("\"x\"")), Some(LabelExpr::atom("x")));
    }

    #[test]
    fn node_labels_include_the_self_label() {
        assert_eq!(
            node_labels("i-123", "docker linux  \"big disk\""),
            set(&["big disk", "docker", "i-123", "linux"])
        );
        assert_eq!(node_labels("built-in", ""), set(&["built-in"]));
    }

    /// Wraps children in `Paren` wherever Jenkins' parser would need parentheses, giving the
    /// shape `parse` produces.
    fn canonical(e: LabelExpr) -> LabelExpr {
        use LabelExpr::*;
        fn wrap(e: LabelExpr, max: Precedence) -> Box<LabelExpr> {
            let e = canonical(e);
            if e.precedence() > max {
                Box::new(Paren(Box::new(e)))
            } else {
                Box::new(e)
            }
        }
        match e {
            Atom(s) => Atom(s),
            Paren(x) => Paren(Box::new(canonical(*x))),
            Not(x) => Not(wrap(*x, Precedence::Atom)),
            And(l, r) => And(wrap(*l, Precedence::And), wrap(*r, Precedence::Not)),
            Or(l, r) => Or(wrap(*l, Precedence::Or), wrap(*r, Precedence::And)),
            Implies(l, r) => Implies(wrap(*l, Precedence::Or), wrap(*r, Precedence::Or)),
            Iff(l, r) => Iff(wrap(*l, Precedence::Iff), wrap(*r, Precedence::Implies)),
        }
    }

    fn atom_strategy() -> impl Strategy<Value = String> {
        // Jenkins itself cannot round-trip an unquoted atom containing ' or " (it does not
        // quote them, and the lexer rejects them), so those only appear in atoms that are quoted.
        "[a-z0-9._=+ ()\"'&|!<>\\-\\n\\t]{1,6}".prop_filter("round-trippable in Jenkins", |s| {
            !(s.contains('\'') || s.contains('"')) || needs_escape(s)
        })
    }

    fn expr_strategy() -> impl Strategy<Value = LabelExpr> {
        let leaf = atom_strategy().prop_map(LabelExpr::Atom);
        leaf.prop_recursive(5, 32, 2, |inner| {
            use LabelExpr::*;
            prop_oneof![
                inner.clone().prop_map(|e| Not(Box::new(e))),
                inner.clone().prop_map(|e| Paren(Box::new(e))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Or(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Implies(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Iff(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_expression(e in expr_strategy()) {
            let e = canonical(e);
            let shown = e.to_string();
            let back = parse(&shown);
            prop_assert_eq!(back, Ok(e), "shown as {:?}", shown);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
            let _ = assigned_label(Some(&s));
            let _ = node_labels("n", &s);
        }

        #[test]
        fn parse_never_panics_on_operator_soup(s in "[ab!&|<>()\"'\\\\ -]{0,30}") {
            if let Ok(e) = parse(&s) {
                // Whatever parses renders to something that parses to the same tree, except
                // atoms holding a quote that Jenkins renders unquoted (its own limitation).
                let jenkins_can_render = e
                    .atoms()
                    .iter()
                    .all(|a| !(a.contains('\'') || a.contains('"')) || needs_escape(a));
                if jenkins_can_render {
                    prop_assert_eq!(parse(&e.to_string()), Ok(e));
                }
            }
        }
    }
}
