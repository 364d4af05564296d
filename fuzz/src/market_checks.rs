//! Checks of the market's requirement language (crates/market, `expr`) against arbitrary
//! input: parsing never panics, errors point inside the source, whatever parses evaluates
//! and explains without panicking, prints back to a source that parses to the same meaning,
//! and survives a JSON round trip.
//!
//! Shared by the fuzz target (`cargo +nightly fuzz run market_expr`) and the stable replay test
//! `crates/market/tests/expr_corpus.rs`, which includes this file. A check panics when it
//! finds a bug.

use idlegrid_market::expr::{AttributeMap, Expr, NoAttributes, Value, eval};

fn sides() -> (AttributeMap, AttributeMap) {
    let my = AttributeMap::new()
        .with("budget", 10.0)
        .with("party", "alice")
        .with("clients", Value::List(vec!["bob".into(), Value::Number(2.0), Value::Undefined]));
    let other = AttributeMap::new()
        .with("memory_mb", 2048.0)
        .with("price", -4.5)
        .with("kind", "gpu-rtx*?")
        .with("fast", true)
        .with("big", 1e308)
        .with("blob", "x".repeat(5000).as_str());
    (my, other)
}

/// Parse `data` as an expression and exercise everything the market does with one.
pub fn check_expr(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let expr = match Expr::parse(&source) {
        Ok(expr) => expr,
        Err(error) => {
            assert!(error.line >= 1 && error.column >= 1, "{error:?}");
            assert!(error.line <= source.lines().count().max(1) + 1, "{error:?}");
            let _ = error.to_string();
            return;
        }
    };
    let (my, other) = sides();
    let value = eval(&expr, &my, &other);
    let _ = eval(&expr, &NoAttributes, &NoAttributes);
    let _ = eval(&expr, &other, &my);
    let explanation = expr.explain(&my, &other);
    assert_eq!(explanation.satisfied, value.is_true(), "{source:?}");
    assert_eq!(expr.holds(&my, &other), value.is_true());
    let rank = expr.rank(&my, &other);
    assert!(!rank.is_nan(), "a rank is a number");
    let _ = expr.references();
    let again = Expr::parse(expr.source()).expect("a parsed source parses again");
    assert_eq!(eval(&again, &my, &other), value);
    let json = serde_json::to_string(&expr).expect("an expression serializes");
    let back: Expr = serde_json::from_str(&json).expect("an expression deserializes");
    assert_eq!(back, expr);
}
