//! The evaluator: a walk of the tree with a work budget ([`EVAL_COST_MAX`]). Every node costs
//! one unit, string and list operations cost by the length they read; when the budget is spent
//! the whole evaluation is `undefined` (so a requirement fails closed).

use std::cmp::Ordering;

use super::{Attributes, BinaryOp, EVAL_COST_MAX, Function, Node, NodeKind, Side, Value};

pub(crate) fn evaluate(root: &Node, my: &dyn Attributes, other: &dyn Attributes) -> Value {
    let mut evaluator = Evaluator { my, other, budget: EVAL_COST_MAX };
    let value = evaluator.node(root);
    if evaluator.budget == 0 { Value::Undefined } else { value }
}

pub(crate) struct Evaluator<'a> {
    pub my: &'a dyn Attributes,
    pub other: &'a dyn Attributes,
    pub budget: u64,
}

impl Evaluator<'_> {
    /// Spend `units` of the budget; false when it is spent.
    fn spend(&mut self, units: u64) -> bool {
        if self.budget <= units {
            self.budget = 0;
            false
        } else {
            self.budget -= units;
            true
        }
    }

    pub(crate) fn node(&mut self, node: &Node) -> Value {
        if !self.spend(1) {
            return Value::Undefined;
        }
        match &node.kind {
            NodeKind::Literal(value) => value.clone(),
            NodeKind::Reference { side, name, .. } => {
                let value = match side {
                    Side::My => self.my.attribute(name),
                    Side::Other => self.other.attribute(name),
                };
                let value = value.unwrap_or(Value::Undefined);
                if !self.spend(cost_of(&value)) {
                    return Value::Undefined;
                }
                value
            }
            NodeKind::List(items) => Value::List(items.iter().map(|item| self.node(item)).collect()),
            NodeKind::Not(operand) => match self.node(operand) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Undefined,
            },
            NodeKind::Negate(operand) => match self.node(operand) {
                Value::Number(n) => Value::Number(-n),
                _ => Value::Undefined,
            },
            NodeKind::And(left, right) => match self.node(left) {
                Value::Bool(false) => Value::Bool(false),
                first => match (first, self.node(right)) {
                    (_, Value::Bool(false)) => Value::Bool(false),
                    (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                    _ => Value::Undefined,
                },
            },
            NodeKind::Or(left, right) => match self.node(left) {
                Value::Bool(true) => Value::Bool(true),
                first => match (first, self.node(right)) {
                    (_, Value::Bool(true)) => Value::Bool(true),
                    (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                    _ => Value::Undefined,
                },
            },
            NodeKind::Binary { op, left, right } => {
                let left = self.node(left);
                let right = self.node(right);
                self.binary(*op, left, right)
            }
            NodeKind::In { item, list, negated } => {
                let item = self.node(item);
                let list = self.node(list);
                match self.member(&item, &list) {
                    Some(found) => Value::Bool(found != *negated),
                    None => Value::Undefined,
                }
            }
            NodeKind::Call { function, arguments } => self.call(*function, arguments),
        }
    }

    fn binary(&mut self, op: BinaryOp, left: Value, right: Value) -> Value {
        use BinaryOp::*;
        match op {
            Add | Sub | Mul | Div | Rem => {
                let (Value::Number(a), Value::Number(b)) = (left, right) else { return Value::Undefined };
                let result = match op {
                    Add => a + b,
                    Sub => a - b,
                    Mul => a * b,
                    Div if b == 0.0 => return Value::Undefined,
                    Div => a / b,
                    Rem if b == 0.0 => return Value::Undefined,
                    _ => a % b,
                };
                if result.is_finite() { Value::Number(result) } else { Value::Undefined }
            }
            Eq | Ne => {
                if !self.spend(cost_of(&left) + cost_of(&right)) {
                    return Value::Undefined;
                }
                match equal(&left, &right) {
                    Some(same) => Value::Bool(same == (op == Eq)),
                    None => Value::Undefined,
                }
            }
            Lt | Le | Gt | Ge => {
                if !self.spend(cost_of(&left) + cost_of(&right)) {
                    return Value::Undefined;
                }
                let ordering = match (&left, &right) {
                    (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                    (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
                    _ => None,
                };
                match ordering {
                    Some(ordering) => Value::Bool(match op {
                        Lt => ordering == Ordering::Less,
                        Le => ordering != Ordering::Greater,
                        Gt => ordering == Ordering::Greater,
                        _ => ordering != Ordering::Less,
                    }),
                    None => Value::Undefined,
                }
            }
        }
    }

    /// Whether `item` is in `list`: `None` (undefined) when either is undefined or `list` is
    /// not a list.
    fn member(&mut self, item: &Value, list: &Value) -> Option<bool> {
        let Value::List(items) = list else { return None };
        if *item == Value::Undefined || !self.spend(cost_of(list)) {
            return None;
        }
        Some(items.iter().any(|candidate| equal(item, candidate) == Some(true)))
    }

    fn call(&mut self, function: Function, arguments: &[Node]) -> Value {
        // Functions take at most two arguments (checked by the parser): no allocation.
        let mut values = [Value::Undefined, Value::Undefined];
        for (value, argument) in values.iter_mut().zip(arguments) {
            *value = self.node(argument);
        }
        let values = &values[..arguments.len().min(2)];
        let cost: u64 = values.iter().map(cost_of).sum();
        if !self.spend(cost) {
            return Value::Undefined;
        }
        match (function, values) {
            (Function::IsDefined, [value]) => Value::Bool(*value != Value::Undefined),
            (Function::IfDefined, [Value::Undefined, fallback]) => fallback.clone(),
            (Function::IfDefined, [value, _]) => value.clone(),
            (Function::StartsWith, [Value::Text(s), Value::Text(p)]) => Value::Bool(s.starts_with(p.as_str())),
            (Function::EndsWith, [Value::Text(s), Value::Text(p)]) => Value::Bool(s.ends_with(p.as_str())),
            (Function::Contains, [Value::Text(s), Value::Text(p)]) => Value::Bool(s.contains(p.as_str())),
            (Function::Contains, [list @ Value::List(_), item]) => match self.member(item, list) {
                Some(found) => Value::Bool(found),
                None => Value::Undefined,
            },
            (Function::Glob, [Value::Text(s), Value::Text(pattern)]) => {
                let work = (s.len() as u64 + 1).saturating_mul(pattern.len() as u64 + 1) / 16;
                if !self.spend(work) {
                    return Value::Undefined;
                }
                Value::Bool(glob(s, pattern))
            }
            (Function::Lower, [Value::Text(s)]) => Value::Text(s.to_lowercase()),
            (Function::Len, [Value::Text(s)]) => Value::Number(s.chars().count() as f64),
            (Function::Len, [Value::List(items)]) => Value::Number(items.len() as f64),
            (Function::Min, [Value::Number(a), Value::Number(b)]) => Value::Number(a.min(*b)),
            (Function::Max, [Value::Number(a), Value::Number(b)]) => Value::Number(a.max(*b)),
            (Function::Abs, [Value::Number(a)]) => Value::Number(a.abs()),
            _ => Value::Undefined,
        }
    }
}

/// Work units to read a value: 1 per 16 bytes of text, 1 per list element.
fn cost_of(value: &Value) -> u64 {
    match value {
        Value::Text(s) => s.len() as u64 / 16,
        Value::List(items) => items.iter().map(|item| 1 + cost_of(item)).sum(),
        _ => 0,
    }
}

/// Exact equality of two values of the same type; `None` for undefined or mixed types.
fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(x == y),
        (Value::Text(x), Value::Text(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut all = true;
            for (p, q) in x.iter().zip(y) {
                all &= equal(p, q)?;
            }
            Some(all)
        }
        _ => None,
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else itself. Dynamic
/// programming over characters: time |text| x |pattern|, no backtracking blow-up.
pub(crate) fn glob(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // matches[j]: the pattern's first j characters match the text read so far.
    let mut matches = vec![false; pattern.len() + 1];
    matches[0] = true;
    for j in 1..=pattern.len() {
        matches[j] = matches[j - 1] && pattern[j - 1] == '*';
    }
    for &c in &text {
        let mut next = vec![false; pattern.len() + 1];
        for j in 1..=pattern.len() {
            next[j] = match pattern[j - 1] {
                '*' => next[j - 1] || matches[j],
                '?' => matches[j - 1],
                p => matches[j - 1] && p == c,
            };
        }
        matches = next;
    }
    matches[pattern.len()]
}
