//! Requirements and rank (D4, X6): one small expression language over both sides of a match,
//! in the spirit of HTCondor's ClassAds `Requirements`/`Rank` and Golem's constraints. The
//! market uses it for offers and requests; the scheduler for an engine's requirement over jobs
//! and a job's requirement and rank over engines.
//!
//! ```text
//! other.memory_mb >= 4096 and other.category == "memory"
//!     and (other.region in ["eu", "us"] or not is_defined(other.region))
//! my.budget - other.price > 0 && starts_with(other.kind, "gpu")
//! ```
//!
//! - **Literals**: numbers (`12`, `0.5`, `1e6`), strings (`"a"` or `'a'`), `true`, `false`,
//!   `undefined`, lists `[1, "a", true]`.
//! - **Attributes**: `my.NAME` (the side that wrote the expression) and `other.NAME` (the side
//!   being judged). A bare name is refused, so that an expression never means two things.
//!   [`Expr::parse_scoped`] adds names for the two sides where the context makes them plain:
//!   the scheduler lets an engine write `job.client` or `task.memory_mb` for the job it judges
//!   ([`PROVIDER_SCOPES`]) and a job write `engine.memory_mb` ([`JOB_SCOPES`]).
//! - **Operators**, loosest first: `or`/`||`; `and`/`&&`; `not`/`!`; comparisons `== != < <= >
//!   >=`, `in`, `not in` (not chained); `+ -`; `* / %`; unary `-`.
//! - **Functions**: `starts_with(s, p)`, `ends_with(s, p)`, `contains(s_or_list, x)`,
//!   `glob(s, pattern)` (`*` any run, `?` one character; no regular expressions), `lower(s)`,
//!   `len(s_or_list)`, `min(a, b)`, `max(a, b)`, `abs(x)`, `is_defined(x)`,
//!   `if_defined(x, fallback)`.
//!
//! **Undefined.** A missing attribute is `undefined`, and so is any operation on the wrong
//! types (`"a" < 1`), a division by zero, or a result that is not a finite number. Logic is
//! three-valued, as in ClassAds: `false and undefined` is `false`, `true or undefined` is
//! `true`, anything else involving `undefined` is `undefined`. **A requirement holds only when
//! it evaluates to `true`**: a requirement over a missing attribute is not met. A rank that is
//! not a number counts as 0. Equality is exact and case-sensitive (use `lower` otherwise).
//!
//! **Bounds.** Source at most [`SOURCE_BYTES_MAX`], nesting at most [`DEPTH_MAX`], at most
//! [`NODES_MAX`] nodes, and each evaluation at most [`EVAL_COST_MAX`] units of work (a node is
//! one unit; string and list work costs by length), past which it is `undefined`. Parsing and
//! evaluation never panic on any input (fuzzed: `fuzz/fuzz_targets/market_expr.rs`).

mod eval;
mod explain;
mod lexer;
mod parser;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use explain::{ClauseReport, Explanation};

/// Longest expression source accepted.
pub const SOURCE_BYTES_MAX: usize = 4096;
/// Deepest nesting of the expression tree.
pub const DEPTH_MAX: usize = 48;
/// Most nodes (literals, references, operators) in one expression.
pub const NODES_MAX: usize = 512;
/// Most units of work in one evaluation.
pub const EVAL_COST_MAX: u64 = 100_000;

/// A value of the language: what attributes hold and what expressions compute. On the wire,
/// plain JSON: `null` (undefined), booleans, numbers, strings, arrays.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    #[default]
    Undefined,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Value>),
}

impl Value {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Undefined => f.write_str("undefined"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// One side of a match as the language sees it: a name gives a value, or nothing (undefined).
/// Implemented by offers, requests and [`AttributeMap`]; the scheduler implements it over jobs
/// and engines.
pub trait Attributes {
    fn attribute(&self, name: &str) -> Option<Value>;
}

/// Attributes held in a map: a requester's profile, a job's or an engine's description.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeMap(pub BTreeMap<String, Value>);

impl AttributeMap {
    pub fn new() -> AttributeMap {
        AttributeMap::default()
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> AttributeMap {
        self.0.insert(name.to_string(), value.into());
        self
    }

    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        self.0.insert(name.to_string(), value.into());
    }
}

impl Attributes for AttributeMap {
    fn attribute(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
}

/// No attributes at all: every reference is undefined.
pub struct NoAttributes;

impl Attributes for NoAttributes {
    fn attribute(&self, _name: &str) -> Option<Value> {
        None
    }
}

/// Why a source is not an expression, and where: `line` and `column` count from 1 (columns in
/// characters), `line_text` is the line, so that `Display` can put a caret under the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}\n  {line_text}\n  {caret}^", caret = " ".repeat(.column.saturating_sub(1)))]
pub struct ParseError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub line_text: String,
}

impl ParseError {
    /// An error at byte offset `at` of `source` (clamped to the source, moved back to a
    /// character boundary).
    pub(crate) fn at(source: &str, at: usize, message: String) -> ParseError {
        let mut at = at.min(source.len());
        while !source.is_char_boundary(at) {
            at -= 1;
        }
        let line_start = source[..at].rfind('\n').map_or(0, |n| n + 1);
        let line_end = source[at..].find('\n').map_or(source.len(), |n| at + n);
        let line = source[..at].matches('\n').count() + 1;
        let column = source[line_start..at].chars().count() + 1;
        // Long lines are cut around the column so that the message stays readable.
        let line_text: String = source[line_start..line_end].chars().take(200).collect();
        ParseError { message, line, column, line_text }
    }
}

/// Which side an attribute reference reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    My,
    Other,
}

/// The words that may begin an attribute reference, and the side each reads.
pub type Scopes = &'static [(&'static str, Side)];

/// The market's scopes: `my.NAME` and `other.NAME`.
pub const MARKET_SCOPES: Scopes = &[("my", Side::My), ("other", Side::Other)];

/// An engine's requirement over jobs: `engine.NAME` (or `my.NAME`) is the engine, `job.NAME`,
/// `task.NAME` (or `other.NAME`) the job and its task, read from one set of attributes.
pub const PROVIDER_SCOPES: Scopes =
    &[("my", Side::My), ("engine", Side::My), ("other", Side::Other), ("job", Side::Other), ("task", Side::Other)];

/// A job's requirement and rank over engines: `job.NAME`, `task.NAME` (or `my.NAME`) is the
/// job, `engine.NAME` (or `other.NAME`) the engine judged.
pub const JOB_SCOPES: Scopes =
    &[("my", Side::My), ("job", Side::My), ("task", Side::My), ("other", Side::Other), ("engine", Side::Other)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    StartsWith,
    EndsWith,
    Contains,
    Glob,
    Lower,
    Len,
    Min,
    Max,
    Abs,
    IsDefined,
    IfDefined,
}

impl Function {
    pub(crate) fn from_name(name: &str) -> Option<(Function, usize)> {
        Some(match name {
            "starts_with" => (Function::StartsWith, 2),
            "ends_with" => (Function::EndsWith, 2),
            "contains" => (Function::Contains, 2),
            "glob" => (Function::Glob, 2),
            "lower" => (Function::Lower, 1),
            "len" => (Function::Len, 1),
            "min" => (Function::Min, 2),
            "max" => (Function::Max, 2),
            "abs" => (Function::Abs, 1),
            "is_defined" => (Function::IsDefined, 1),
            "if_defined" => (Function::IfDefined, 2),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Literal(Value),
    /// `scope` is the word written before the dot (for explanations).
    Reference {
        side: Side,
        scope: &'static str,
        name: String,
    },
    List(Vec<Node>),
    Not(Box<Node>),
    Negate(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    In {
        item: Box<Node>,
        list: Box<Node>,
        negated: bool,
    },
    Call {
        function: Function,
        arguments: Vec<Node>,
    },
}

/// A node of the tree and the bytes of the source it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub start: usize,
    pub end: usize,
    /// 1 for a leaf, else 1 + the deepest child.
    pub depth: usize,
}

/// A parsed expression. Serialized as its source text and parsed again when read, so that a
/// stored or received expression is always a valid one.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: Node,
}

impl Expr {
    /// Parse `source`; the error says what is wrong and where.
    pub fn parse(source: &str) -> Result<Expr, ParseError> {
        Expr::parse_scoped(source, MARKET_SCOPES)
    }

    /// Parse `source` where attribute references begin with one of `scopes`. Such an
    /// expression serializes as its source but reads back only with [`Expr::parse`]'s scopes,
    /// so keep its source and parse it again with the same scopes.
    pub fn parse_scoped(source: &str, scopes: Scopes) -> Result<Expr, ParseError> {
        parser::parse(source, scopes).map(|root| Expr { source: source.to_string(), root })
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every attribute the expression reads, as written (`my.NAME`, `other.NAME`, or another
    /// scope's word), sorted, once each.
    pub fn references(&self) -> Vec<String> {
        let mut names = Vec::new();
        explain::collect_references(&self.root, &mut names);
        names.sort();
        names.dedup();
        names
    }

    /// Whether the expression holds (is `true`) with these two sides.
    pub fn holds(&self, my: &dyn Attributes, other: &dyn Attributes) -> bool {
        eval(self, my, other).is_true()
    }

    /// The expression as a rank: its number, or 0 when it is not a number.
    pub fn rank(&self, my: &dyn Attributes, other: &dyn Attributes) -> f64 {
        eval(self, my, other).as_number().unwrap_or(0.0)
    }

    /// Which top-level clauses (the operands of the outer `and`s) are not true, and the
    /// attributes each reads, for `idlegrid job explain` and the market's search.
    pub fn explain(&self, my: &dyn Attributes, other: &dyn Attributes) -> Explanation {
        explain::explain(self, my, other)
    }
}

/// Evaluate `expr` with `my` the side that wrote it and `other` the side it judges.
pub fn eval(expr: &Expr, my: &dyn Attributes, other: &dyn Attributes) -> Value {
    eval::evaluate(&expr.root, my, other)
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;
    fn from_str(source: &str) -> Result<Expr, ParseError> {
        Expr::parse(source)
    }
}

impl Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Expr, D::Error> {
        let source = String::deserialize(deserializer)?;
        Expr::parse(&source).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
