//! Label selectors (equality- and set-based) and field selectors, parsed and
//! matched as Kubernetes does, with its error messages.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::validation::{go_quote, is_label_value, is_qualified_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Exists,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// Sorted and deduplicated.
    pub values: Vec<String>,
}

/// A conjunction of requirements. `matches_nothing` stands for a nil selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    pub matches_nothing: bool,
}

impl Requirement {
    /// Validates and builds a requirement, as `labels.NewRequirement`.
    pub fn new(key: &str, op: Op, values: Vec<String>) -> Result<Requirement, String> {
        let mut errs: Vec<String> = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(format!("<nil>: Invalid value: {}: {}", go_quote(key), key_errs.join("; ")));
        }
        let set: BTreeSet<String> = values.into_iter().collect();
        let values: Vec<String> = set.into_iter().collect();
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                errs.push("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into());
            }
            Op::Equals | Op::DoubleEquals | Op::NotEquals if values.len() != 1 => {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    show(&values)
                ));
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                errs.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not exist",
                    show(&values)
                ));
            }
            Op::GreaterThan | Op::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        show(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!("values[{i}][{key}]: Invalid value: {}: {}", go_quote(v), msgs.join("; ")));
            }
        }
        match errs.len() {
            0 => Ok(Requirement { key: key.into(), op, values }),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).map(|v| v.as_str().unwrap_or_default());
        match self.op {
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Equals | Op::DoubleEquals | Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::GreaterThan | Op::LessThan => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::GreaterThan { v > bound } else { v < bound }
            }
        }
    }
}

fn show(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| go_quote(v)).collect::<Vec<_>>().join(","))
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or_default();
        match self.op {
            Op::Exists => write!(f, "{k}"),
            Op::DoesNotExist => write!(f, "!{k}"),
            Op::Equals => write!(f, "{k}={first}"),
            Op::DoubleEquals => write!(f, "{k}=={first}"),
            Op::NotEquals => write!(f, "{k}!={first}"),
            Op::In => write!(f, "{k} in ({})", self.values.join(",")),
            Op::NotIn => write!(f, "{k} notin ({})", self.values.join(",")),
            Op::GreaterThan => write!(f, "{k}>{first}"),
            Op::LessThan => write!(f, "{k}<{first}"),
        }
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses the `labelSelector` query syntax.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut p = Parser { toks: lex(s), pos: 0 };
        let mut reqs = p.parse()?;
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements: reqs, matches_nothing: false })
    }

    /// Converts an API `LabelSelector` object (`matchLabels`, `matchExpressions`);
    /// `None` (a missing selector) matches nothing, an empty one everything.
    pub fn from_api(sel: Option<&Value>) -> Result<LabelSelector, String> {
        let Some(sel) = sel.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector { requirements: vec![], matches_nothing: true });
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
            reqs.push(Requirement::new(k, Op::Equals, vec![v.as_str().unwrap_or_default().to_string()])?);
        }
        for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let op = match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement::new(key, op, values)?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements: reqs, matches_nothing: false })
    }

    /// A selector matching exactly these labels (a Service's `spec.selector`).
    pub fn from_map(labels: &Map<String, Value>) -> LabelSelector {
        let mut reqs: Vec<Requirement> = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![v.as_str().unwrap_or_default().into()],
            })
            .collect();
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements: reqs, matches_nothing: false }
    }
}

// ---- label selector lexer and parser ---------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Bang => "!",
            Tok::NotEquals => "!=",
            Tok::Equals => "=",
            Tok::DoubleEquals => "==",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_special(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (tok, n) = match two.as_str() {
                "!=" => (Tok::NotEquals, 2),
                "==" => (Tok::DoubleEquals, 2),
                _ => (
                    match c {
                        '!' => Tok::Bang,
                        '=' => Tok::Equals,
                        '>' => Tok::Gt,
                        '<' => Tok::Lt,
                        '(' => Tok::Open,
                        ')' => Tok::Close,
                        _ => Tok::Comma,
                    },
                    1,
                ),
            };
            toks.push(tok);
            i += n;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        toks.push(match word.as_str() {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident(word),
        });
    }
    toks.push(Tok::End);
    toks
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    /// The next token, with `in`/`notin` read as identifiers where values are expected.
    fn peek(&self, values: bool) -> Tok {
        let t = self.toks.get(self.pos).cloned().unwrap_or(Tok::End);
        match t {
            Tok::In | Tok::NotIn if values => Tok::Ident(t.literal().to_string()),
            t => t,
        }
    }

    fn next(&mut self, values: bool) -> Tok {
        let t = self.peek(values);
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.peek(true) {
                Tok::Ident(_) | Tok::Bang => {
                    let r = self.requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match self.next(true) {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => match self.peek(true) {
                            Tok::Ident(_) | Tok::Bang => {}
                            t => {
                                return Err(format!("found '{}', expected: identifier after ','", t.literal()));
                            }
                        },
                        t => {
                            return Err(format!("found '{}', expected: ',' or 'end of string'", t.literal()));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(format!("found '{}', expected: !, identifier, or 'end of string'", t.literal()));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut op = None;
        let mut tok = self.next(true);
        if tok == Tok::Bang {
            op = Some(Op::DoesNotExist);
            tok = self.next(true);
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            return Err(format!("<nil>: Invalid value: {}: {}", go_quote(&key), key_errs.join("; ")));
        }
        if matches!(self.peek(true), Tok::End | Tok::Comma) {
            return Requirement::new(&key, op.unwrap_or(Op::Exists), vec![]);
        }
        if op == Some(Op::DoesNotExist) {
            return Requirement::new(&key, Op::DoesNotExist, vec![]);
        }
        let op = match self.next(false) {
            Tok::In => Op::In,
            Tok::NotIn => Op::NotIn,
            Tok::Equals => Op::Equals,
            Tok::DoubleEquals => Op::DoubleEquals,
            Tok::NotEquals => Op::NotEquals,
            Tok::Gt => Op::GreaterThan,
            Tok::Lt => Op::LessThan,
            t => {
                return Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", t.literal()));
            }
        };
        let values = match op {
            Op::In | Op::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.next(true);
        if t != Tok::Open {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        match self.peek(true) {
            Tok::Ident(_) | Tok::Comma => {
                let values = self.identifiers()?;
                let t = self.next(true);
                if t != Tok::Close {
                    return Err(format!("found '{}', expected: ')'", t.literal()));
                }
                Ok(values)
            }
            Tok::Close => {
                self.next(true);
                Ok(vec![String::new()])
            }
            t => Err(format!("found '{}', expected: ',', ')' or identifier", t.literal())),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.next(true) {
                Tok::Ident(v) => {
                    values.push(v);
                    match self.peek(true) {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(values),
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek(true) {
                        Tok::Close => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next(true);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!("found '{}', expected: ',', or identifier", t.literal()));
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(true), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next(true) {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

// ---- field selectors -------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax: `a=b,c!=d`, with `\,` `\=` `\\` escapes.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut parts = split_unescaped(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let bad = || format!("invalid selector: '{s}'; can't understand '{part}'");
            let (field, op, rhs) = split_term(part).ok_or_else(bad)?;
            let value = unescape(rhs).map_err(|_| bad())?;
            terms.push(FieldTerm { field: field.into(), value, negated: op == "!=" });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value an equality term requires for `field`, if any.
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && !t.negated).map(|t| t.value.as_str())
    }

    /// Matches using `get` to read an object's field values (missing reads as "").
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let v = get(&t.field).unwrap_or_default();
            (v == t.value) != t.negated
        })
    }
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    for i in 0..term.len() {
        if !term.is_char_boundary(i) {
            continue;
        }
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, ()> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                _ => return Err(()),
            },
            ',' | '=' => return Err(()),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_syntax_and_matching() {
        let l = labels(json!({"app": "web", "tier": "front", "n": "5"}));
        let cases = [
            ("", true),
            ("app", true),
            ("!app", false),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app=web,tier=back", false),
            ("app=web, tier in (front)", true),
            ("n>3", true),
            ("n<3", false),
            ("app in (in, notin)", false),
        ];
        for (s, want) in cases {
            let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(Some(&l)), want, "{s}");
        }
        assert_eq!(LabelSelector::parse("b=2,a in (y,x)").unwrap().to_string(), "a in (x,y),b=2");
    }

    #[test]
    fn label_selector_errors() {
        let cases = [
            ("=x", "found '=', expected: !, identifier, or 'end of string'"),
            ("app=web,", "found '', expected: identifier after ','"),
            ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
            ("app in web", "unable to parse requirement: found 'web' expected: '('"),
            ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
            ("app=a)", "found ')', expected: ',' or 'end of string'"),
            ("app in ()", ""),
            (
                "n>x",
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (s, want) in cases {
            match LabelSelector::parse(s) {
                Ok(_) if want.is_empty() => {}
                Ok(sel) => panic!("{s} parsed as {sel:?}"),
                Err(e) => assert_eq!(e, want, "{s}"),
            }
        }
        let e = LabelSelector::parse("-bad=x").unwrap_err();
        assert!(
            e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of"),
            "{e}"
        );
        let e = LabelSelector::parse("app=bad!x").unwrap_err();
        assert!(e.contains("found '!'"), "{e}");
    }

    #[test]
    fn api_selectors() {
        assert!(!LabelSelector::from_api(None).unwrap().matches(None), "a nil selector matches nothing");
        assert!(LabelSelector::from_api(Some(&json!({}))).unwrap().matches(None), "an empty one matches everything");
        let sel = LabelSelector::from_api(Some(&json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]})))
        .unwrap();
        assert_eq!(sel.to_string(), "app=web,tier in (a,b)");
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=a\\,b,spec.nodeName!=n1").unwrap();
        assert_eq!(f.terms.len(), 2);
        assert_eq!(f.required("metadata.name"), Some("a,b"));
        let get = |k: &str| match k {
            "metadata.name" => Some("a,b".to_string()),
            "spec.nodeName" => Some("n2".to_string()),
            _ => None,
        };
        assert!(f.matches(get));
        assert!(FieldSelector::parse("status.phase==Running").unwrap().terms[0].value == "Running");
        assert_eq!(
            FieldSelector::parse("nonsense").unwrap_err(),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        assert!(FieldSelector::parse("a=b=c").is_err());
    }
}
