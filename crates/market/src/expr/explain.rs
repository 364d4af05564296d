//! Which clause of a requirement is not met: the operands of the outer `and`s are evaluated one
//! by one, and each that is not `true` is reported with its source text and the attributes it
//! read, so that `idlegrid job explain` can say "other.memory_mb >= 4096 is false
//! (other.memory_mb = 2048)".

use std::fmt;

use serde::{Deserialize, Serialize};

use super::eval::Evaluator;
use super::{Attributes, EVAL_COST_MAX, Expr, Node, NodeKind, Side, Value};

/// The result of [`Expr::explain`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Whether the whole expression holds.
    pub satisfied: bool,
    /// Every clause that is not `true` (empty when `satisfied`).
    pub failing: Vec<ClauseReport>,
}

/// One clause that did not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClauseReport {
    /// The clause as written.
    pub text: String,
    /// What it evaluated to: `false` or `undefined` (or a non-boolean).
    pub value: Value,
    /// The attributes it read and their values (`undefined` when missing).
    pub attributes: Vec<(String, Value)>,
}

impl fmt::Display for ClauseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.text, self.value)?;
        if !self.attributes.is_empty() {
            let read: Vec<String> = self.attributes.iter().map(|(name, value)| format!("{name} = {value}")).collect();
            write!(f, " ({})", read.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.satisfied {
            return f.write_str("all requirements are met");
        }
        for (n, clause) in self.failing.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{clause}")?;
        }
        Ok(())
    }
}

pub(crate) fn explain(expr: &Expr, my: &dyn Attributes, other: &dyn Attributes) -> Explanation {
    let satisfied = expr.holds(my, other);
    let mut clauses = Vec::new();
    flatten_and(&expr.root, &mut clauses);
    let mut failing = Vec::new();
    let mut budget = EVAL_COST_MAX;
    for clause in clauses {
        let mut evaluator = Evaluator { my, other, budget };
        let value = evaluator.node(clause);
        budget = evaluator.budget;
        let value = if budget == 0 { Value::Undefined } else { value };
        if value.is_true() {
            continue;
        }
        let mut names = Vec::new();
        collect_sided(clause, &mut names);
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names.dedup_by(|a, b| a.0 == b.0);
        let attributes = names
            .into_iter()
            .map(|(written, side, attribute)| {
                let value = match side {
                    Side::My => my.attribute(&attribute),
                    Side::Other => other.attribute(&attribute),
                };
                (written, value.unwrap_or(Value::Undefined))
            })
            .collect();
        let text = expr.source.get(clause.start..clause.end).unwrap_or_default().to_string();
        failing.push(ClauseReport { text, value, attributes });
    }
    Explanation { satisfied, failing: if satisfied { Vec::new() } else { failing } }
}

fn flatten_and<'a>(node: &'a Node, clauses: &mut Vec<&'a Node>) {
    match &node.kind {
        NodeKind::And(left, right) => {
            flatten_and(left, clauses);
            flatten_and(right, clauses);
        }
        _ => clauses.push(node),
    }
}

pub(crate) fn collect_references(node: &Node, names: &mut Vec<String>) {
    let mut sided = Vec::new();
    collect_sided(node, &mut sided);
    names.extend(sided.into_iter().map(|(written, _, _)| written));
}

/// Every reference as written, with the side it reads and the attribute's name.
fn collect_sided(node: &Node, names: &mut Vec<(String, Side, String)>) {
    match &node.kind {
        NodeKind::Literal(_) => {}
        NodeKind::Reference { side, scope, name } => names.push((format!("{scope}.{name}"), *side, name.clone())),
        NodeKind::List(items) | NodeKind::Call { arguments: items, .. } => {
            items.iter().for_each(|item| collect_sided(item, names));
        }
        NodeKind::Not(operand) | NodeKind::Negate(operand) => collect_sided(operand, names),
        NodeKind::And(left, right)
        | NodeKind::Or(left, right)
        | NodeKind::Binary { left, right, .. }
        | NodeKind::In { item: left, list: right, .. } => {
            collect_sided(left, names);
            collect_sided(right, names);
        }
    }
}
