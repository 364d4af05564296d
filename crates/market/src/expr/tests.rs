//! Tests of the requirement language: meaning of each construct, undefined handling, bounds,
//! error positions, and properties over arbitrary input (never a panic).

use proptest::prelude::*;

use super::*;

fn sides() -> (AttributeMap, AttributeMap) {
    let my = AttributeMap::new()
        .with("budget", 10.0)
        .with("party", "alice")
        .with("clients", Value::List(vec!["bob".into(), "carol".into()]));
    let other = AttributeMap::new()
        .with("memory_mb", 2048.0)
        .with("price", 4.0)
        .with("kind", "gpu-rtx")
        .with("region", "eu")
        .with("party", "bob")
        .with("fast", true);
    (my, other)
}

fn value(source: &str) -> Value {
    let (my, other) = sides();
    eval(&Expr::parse(source).unwrap_or_else(|e| panic!("{source}: {e}")), &my, &other)
}

#[test]
fn scoped_names_read_their_side_and_are_reported_as_written() {
    let engine = AttributeMap::new().with("memory_mb", 1024.0);
    let job = AttributeMap::new().with("client", "alice").with("memory_mb", 256.0).with("pay_per_hour", 1.5);
    let requirement = Expr::parse_scoped(
        "job.client in [\"alice\", \"bob\"] and task.memory_mb <= engine.memory_mb and job.pay_per_hour >= 2",
        PROVIDER_SCOPES,
    )
    .unwrap();
    assert!(!requirement.holds(&engine, &job));
    let explanation = requirement.explain(&engine, &job);
    assert_eq!(explanation.failing.len(), 1);
    assert_eq!(explanation.failing[0].to_string(), "job.pay_per_hour >= 2 is false (job.pay_per_hour = 1.5)");
    assert_eq!(requirement.references(), vec!["engine.memory_mb", "job.client", "job.pay_per_hour", "task.memory_mb"]);
    // A job's rank reads the engine as `engine`.
    let rank = Expr::parse_scoped("engine.memory_mb / 1024 + my.memory_mb * 0", JOB_SCOPES).unwrap();
    assert_eq!(rank.rank(&job, &engine), 1.0);
    // The market's scopes do not know these words, and say which ones they do know.
    let error = Expr::parse("job.client == \"alice\"").unwrap_err();
    assert_eq!((error.line, error.column), (1, 1));
    assert!(error.message.contains("my.job or other.job"), "{error}");
    let error = Expr::parse_scoped("task.memory_mb <= 512 and jobs.client == 1", PROVIDER_SCOPES).unwrap_err();
    assert_eq!(error.column, 27, "{error}");
    assert!(error.message.contains("job.jobs"), "{error}");
}

#[test]
fn evaluates_each_construct() {
    let cases: &[(&str, Value)] = &[
        ("other.memory_mb >= 1024", true.into()),
        ("other.memory_mb > 4096", false.into()),
        ("other.memory_mb / 1024 == 2", true.into()),
        ("(1 + 2) * 3 - 4 % 3", 8.0.into()),
        ("-other.price + my.budget", 6.0.into()),
        ("my.budget - other.price > 0 && other.fast", true.into()),
        ("not other.fast or other.region == 'eu'", true.into()),
        ("!(other.region != \"eu\")", true.into()),
        ("other.region in ['eu', 'us']", true.into()),
        ("other.region not in ['eu', 'us']", false.into()),
        ("other.party in my.clients", true.into()),
        ("3 in [1, 2]", false.into()),
        ("starts_with(other.kind, 'gpu')", true.into()),
        ("ends_with(other.kind, 'rtx') and contains(other.kind, '-')", true.into()),
        ("glob(other.kind, 'gpu-*') and glob(other.kind, '???-r?x') and not glob(other.kind, 'cpu*')", true.into()),
        ("contains(my.clients, 'carol')", true.into()),
        ("len(my.clients) + len('abc')", 5.0.into()),
        ("lower('GPU') == 'gpu'", true.into()),
        ("min(1, 2) + max(1, 2) + abs(-3)", 6.0.into()),
        ("'abc' < 'abd'", true.into()),
        ("[1, 'a'] == [1, 'a']", true.into()),
        ("1e3 == 1000", true.into()),
    ];
    for (source, expected) in cases {
        assert_eq!(value(source), *expected, "{source}");
    }
}

#[test]
fn a_missing_attribute_is_undefined_and_fails_a_requirement() {
    assert_eq!(value("other.disk_mb >= 10"), Value::Undefined);
    assert_eq!(value("other.disk_mb < 10"), Value::Undefined, "neither side of a comparison holds");
    let (my, other) = sides();
    assert!(!Expr::parse("other.disk_mb >= 10").unwrap().holds(&my, &other));
    assert!(!Expr::parse("not (other.disk_mb >= 10)").unwrap().holds(&my, &other));
    // Three-valued logic: false and undefined is false, true or undefined is true.
    assert_eq!(value("other.disk_mb > 1 and false"), false.into());
    assert_eq!(value("false and other.disk_mb > 1"), false.into());
    assert_eq!(value("other.disk_mb > 1 or true"), true.into());
    assert_eq!(value("other.disk_mb > 1 and true"), Value::Undefined);
    assert_eq!(value("other.disk_mb > 1 or false"), Value::Undefined);
    assert_eq!(value("is_defined(other.disk_mb)"), false.into());
    assert_eq!(value("if_defined(other.disk_mb, 7) + 1"), 8.0.into());
    assert_eq!(value("other.disk_mb in [1]"), Value::Undefined);
    // Wrong types, division by zero and overflow are undefined too.
    assert_eq!(value("'a' < 1"), Value::Undefined);
    assert_eq!(value("'a' == 1"), Value::Undefined);
    assert_eq!(value("1 / 0"), Value::Undefined);
    assert_eq!(value("5 % 0"), Value::Undefined);
    assert_eq!(value("1e308 * 10"), Value::Undefined);
    assert_eq!(value("other.fast + 1"), Value::Undefined);
    assert_eq!(value("1 and true"), Value::Undefined);
    // A rank that is not a number counts as 0.
    let (my, other) = sides();
    assert_eq!(Expr::parse("other.nothing * 2").unwrap().rank(&my, &other), 0.0);
    assert_eq!(Expr::parse("other.price * 2").unwrap().rank(&my, &other), 8.0);
}

#[test]
fn parse_errors_name_the_problem_and_point_at_the_column() {
    let cases: &[(&str, usize, &str)] = &[
        ("other.memory_mb >= ", 20, "expected a value"),
        ("memory_mb >= 1", 1, "written my.memory_mb or other.memory_mb"),
        ("other.a >= (1 + 2", 18, "')'"),
        ("other.a < 1 < 2", 13, "do not chain"),
        ("other.a == 1 )", 14, "expected an operator or the end"),
        ("frobnicate(1)", 1, "unknown function 'frobnicate'"),
        ("min(1)", 1, "min takes 2 arguments, not 1"),
        ("other.", 7, "expected an attribute name"),
        ("other 1", 7, "'.'"),
        ("[1, 2", 6, "']'"),
        ("", 1, "empty"),
        ("1 and and 2", 7, "expected a value"),
    ];
    for (source, column, message) in cases {
        let error = Expr::parse(source).unwrap_err();
        assert!(error.message.contains(message), "{source}: {error}");
        assert_eq!(error.column, *column, "{source}: {error}");
    }
    // The display shows the line and a caret under the column.
    let error = Expr::parse("other.a >= (1 + 2").unwrap_err();
    assert_eq!(
        error.to_string(),
        "expected ')' to close the '(' opened before, found the end of the expression at line 1, column 18\n  other.a >= (1 + 2\n                   ^"
    );
    let error = Expr::parse("other.a > 1 and\n  other.b ==").unwrap_err();
    assert_eq!((error.line, error.column, error.line_text.as_str()), (2, 13, "  other.b =="));
}

#[test]
fn size_depth_and_node_bounds_are_enforced() {
    let long = format!("other.a == '{}'", "x".repeat(SOURCE_BYTES_MAX));
    assert!(Expr::parse(&long).unwrap_err().message.contains("at most 4096"));
    let deep = format!("{}1{}", "(".repeat(DEPTH_MAX + 1), ")".repeat(DEPTH_MAX + 1));
    assert!(Expr::parse(&deep).unwrap_err().message.contains("nests deeper"));
    let nots = format!("{}true", "not ".repeat(DEPTH_MAX + 1));
    assert!(Expr::parse(&nots).unwrap_err().message.contains("nests deeper"));
    let negations = format!("{}1", "-".repeat(DEPTH_MAX + 1));
    assert!(Expr::parse(&negations).unwrap_err().message.contains("nests deeper"));
    let chain = vec!["1"; DEPTH_MAX + 2].join("+");
    assert!(Expr::parse(&chain).unwrap_err().message.contains("nests deeper"));
    let wide = format!("[{}]", vec!["1"; NODES_MAX + 1].join(","));
    assert!(Expr::parse(&wide).unwrap_err().message.contains("more than"));
    // Just under the bounds is fine.
    let ok = format!("{}1{}", "(".repeat(DEPTH_MAX - 2), ")".repeat(DEPTH_MAX - 2));
    Expr::parse(&ok).unwrap();
}

#[test]
fn evaluation_cost_is_bounded_by_the_budget() {
    // A huge attribute read many times exhausts the budget: undefined, not a long computation.
    let big = "x".repeat(200_000);
    let other = AttributeMap::new().with("blob", big.as_str());
    let reads = vec!["len(other.blob) > 0"; 20].join(" and ");
    assert_eq!(eval(&Expr::parse(&reads).unwrap(), &NoAttributes, &other), Value::Undefined);
    let pattern = "*a*a*a*a*a*a*a*a*b";
    let globbed = format!("glob(other.blob, '{pattern}')");
    assert_eq!(eval(&Expr::parse(&globbed).unwrap(), &NoAttributes, &other), Value::Undefined);
    // A short one is evaluated normally.
    let small = AttributeMap::new().with("blob", "xx");
    assert_eq!(eval(&Expr::parse("len(other.blob) > 0").unwrap(), &NoAttributes, &small), true.into());
}

#[test]
fn explain_names_the_clauses_that_are_not_met() {
    let (my, other) = sides();
    let expr = Expr::parse("other.memory_mb >= 4096 and other.region == 'eu' and (other.gpus > 0 or other.price < 1)")
        .unwrap();
    let explanation = expr.explain(&my, &other);
    assert!(!explanation.satisfied);
    assert_eq!(explanation.failing.len(), 2);
    assert_eq!(explanation.failing[0].to_string(), "other.memory_mb >= 4096 is false (other.memory_mb = 2048)");
    assert_eq!(
        explanation.failing[1].to_string(),
        "(other.gpus > 0 or other.price < 1) is undefined (other.gpus = undefined, other.price = 4)"
    );
    let met = Expr::parse("other.region == 'eu'").unwrap().explain(&my, &other);
    assert!(met.satisfied && met.failing.is_empty());
    assert_eq!(met.to_string(), "all requirements are met");
    assert_eq!(expr.references(), vec!["other.gpus", "other.memory_mb", "other.price", "other.region"]);
}

#[test]
fn expressions_travel_as_their_source_and_are_checked_when_read() {
    let expr = Expr::parse("other.memory_mb >= 1024").unwrap();
    let json = serde_json::to_string(&expr).unwrap();
    assert_eq!(json, "\"other.memory_mb >= 1024\"");
    assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), expr);
    let error = serde_json::from_str::<Expr>("\"other.memory_mb >=\"").unwrap_err();
    assert!(error.to_string().contains("column"), "{error}");
    let values: Value = serde_json::from_str("[null, true, 1.5, \"a\", [2]]").unwrap();
    assert_eq!(
        values,
        Value::List(vec![Value::Undefined, true.into(), 1.5.into(), "a".into(), Value::List(vec![2.0.into()])])
    );
}

/// Pieces of the language, so that generated sources reach past the first token.
const PIECES: &[&str] = &[
    "other.",
    "my.",
    "memory_mb",
    "price",
    "kind",
    " and ",
    " or ",
    "not ",
    " in ",
    "(",
    ")",
    "[",
    "]",
    ",",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "1",
    "0",
    "2.5",
    "1e3",
    "'eu'",
    "\"gpu\"",
    "true",
    "false",
    "undefined",
    "starts_with(",
    "glob(",
    "len(",
    "min(",
    "if_defined(",
    "&&",
    "||",
    "!",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_parse_or_fail_cleanly(source in any::<String>()) {
        match Expr::parse(&source) {
            Ok(expr) => {
                let (my, other) = sides();
                let _ = eval(&expr, &my, &other);
                let _ = expr.explain(&my, &other);
            }
            Err(error) => {
                prop_assert!(error.line >= 1 && error.column >= 1);
                let _ = error.to_string();
            }
        }
    }

    #[test]
    fn sources_built_from_the_language_parse_or_fail_cleanly(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..40)
    ) {
        let source: String = pieces.concat();
        match Expr::parse(&source) {
            Ok(expr) => {
                let (my, other) = sides();
                let value = eval(&expr, &my, &other);
                // What parses prints back to itself and parses to the same meaning.
                let again = Expr::parse(expr.source()).unwrap();
                prop_assert_eq!(eval(&again, &my, &other), value.clone());
                let explanation = expr.explain(&my, &other);
                prop_assert_eq!(explanation.satisfied, value.is_true());
            }
            Err(error) => prop_assert!(error.column <= source.chars().count() + 1),
        }
    }

    #[test]
    fn comparisons_agree_with_rust(a in -1e6f64..1e6, b in -1e6f64..1e6) {
        let other = AttributeMap::new().with("a", a).with("b", b);
        let check = |source: &str, expected: bool| {
            assert_eq!(eval(&Expr::parse(source).unwrap(), &NoAttributes, &other), Value::Bool(expected), "{}", source);
        };
        check("other.a < other.b", a < b);
        check("other.a >= other.b", a >= b);
        check("other.a == other.b", a == b);
        check("other.a + other.b > other.b", a + b > b);
    }

    #[test]
    fn glob_without_wildcards_is_equality_and_star_matches_everything(text in "[a-c]{0,8}", other in "[a-c]{0,8}") {
        prop_assert_eq!(eval::glob(&text, &other), text == other);
        prop_assert!(eval::glob(&text, "*"));
        let prefix: String = text.chars().take(2).collect();
        let pattern = format!("{prefix}*");
        prop_assert!(eval::glob(&text, &pattern));
    }
}
