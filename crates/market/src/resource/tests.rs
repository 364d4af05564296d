//! Classification: every category's declaration accepted, every kind of bad input refused with
//! the field named, measured figures preferred, serialization validated again when read.

use proptest::prelude::*;

use super::*;

pub(crate) fn declaration(category: &str, attributes: &[(&str, Value)]) -> ResourceDeclaration {
    ResourceDeclaration {
        category: category.to_string(),
        attributes: attributes.iter().map(|(name, value)| (name.to_string(), value.clone())).collect(),
        private_share: 0.0,
    }
}

/// A valid declaration of each category, as a test peer would send them.
pub(crate) fn examples() -> Vec<ResourceDeclaration> {
    let n = |x: f64| Value::Number(x);
    let t = |x: &str| Value::Text(x.to_string());
    vec![
        declaration("computing", &[("mflops", n(20_000.0)), ("cores", n(8.0)), ("duration_s", n(3600.0))]),
        declaration(
            "memory",
            &[("memory_mb", n(8192.0)), ("read_ns", n(80.0)), ("write_ns", n(90.0)), ("duration_s", n(3600.0))],
        ),
        declaration(
            "storage",
            &[
                ("capacity_mb", n(100_000.0)),
                ("access_ms", n(5.0)),
                ("read_mb_s", n(500.0)),
                ("write_mb_s", n(400.0)),
                ("duration_s", n(86_400.0)),
            ],
        ),
        declaration(
            "peripherals",
            &[
                ("kind", t("gpu")),
                ("count", n(2.0)),
                ("gflops", n(10_000.0)),
                ("memory_mb", n(8192.0)),
                ("duration_s", n(3600.0)),
            ],
        ),
        declaration(
            "files",
            &[
                ("target_user", t("researchers")),
                ("objective", t("protein folding")),
                ("function", t("dataset")),
                ("environment", t("linux")),
                ("size_bytes", n(1e9)),
                ("sha256", t(&"ab".repeat(32))),
            ],
        ),
        declaration(
            "internet_access",
            &[("speed_mbit_s", n(100.0)), ("availability", n(0.99)), ("duration_s", n(3600.0))],
        ),
        declaration("money", &[("kind", t("cash")), ("amount", n(25.0))]),
    ]
}

#[test]
fn a_declaration_of_each_category_is_classified() {
    for (example, category) in examples().iter().zip(Category::ALL) {
        let (resource, share) = classify(example, &Measurements::new()).unwrap();
        assert_eq!(resource.category(), category);
        assert_eq!(share, 0.0);
        assert!(resource.quantity() > 0.0);
        assert!(resource.figures().all(|(_, _, f)| f.provenance == Provenance::Declared));
    }
    let (by_numeral, _) =
        classify(&ResourceDeclaration { category: "II".into(), ..examples()[1].clone() }, &Measurements::new())
            .unwrap();
    assert_eq!(by_numeral.category(), Category::Memory);
}

#[test]
fn measured_figures_beat_declared_ones() {
    let measured = Measurements::new().with(Category::Computing, "mflops", 15_000.0);
    let (resource, _) = classify(&examples()[0], &measured).unwrap();
    assert_eq!(resource.figure("mflops").unwrap(), Figure { value: 15_000.0, provenance: Provenance::Measured });
    assert_eq!(resource.figure("cores").unwrap().provenance, Provenance::Declared);
    assert_eq!(resource.attribute("measured"), Some(Value::List(vec!["mflops".into()])));
    // A measurement fills an attribute the peer did not declare.
    let measured = Measurements::new().with(Category::InternetAccess, "throughput_mbit_s", 40.0);
    let (resource, _) = classify(&examples()[5], &measured).unwrap();
    assert_eq!(resource.figure("throughput_mbit_s").unwrap().provenance, Provenance::Measured);
    // Measurements of another category change nothing.
    let measured = Measurements::new().with(Category::Memory, "memory_mb", 1.0);
    let (resource, _) = classify(&examples()[0], &measured).unwrap();
    assert_eq!(resource.number("mflops"), Some(20_000.0));
}

#[test]
fn bad_declarations_are_refused_with_the_field_named() {
    let memory = &examples()[1];
    let with = |name: &str, value: Value| {
        let mut declaration = memory.clone();
        declaration.attributes.insert(name.to_string(), value);
        classify(&declaration, &Measurements::new()).unwrap_err()
    };
    let error =
        classify(&ResourceDeclaration { category: "gold".into(), ..memory.clone() }, &Measurements::new()).unwrap_err();
    assert_eq!((error.field(), error.clone()), ("category".into(), ResourceError::UnknownCategory("gold".into())));
    for (value, reason) in [
        (-1.0, "must not be negative"),
        (f64::NAN, "not a finite number"),
        (f64::INFINITY, "not a finite number"),
        (1e300, "at most"),
        (0.0, "at least"),
    ] {
        let error = with("memory_mb", Value::Number(value));
        assert_eq!(error.field(), "memory.memory_mb");
        assert!(error.to_string().contains(reason), "{value}: {error}");
    }
    assert!(with("memory_mb", "lots".into()).to_string().contains("expected a number in MB"));
    let error = with("colour", 1.0.into());
    assert_eq!(error.field(), "memory.colour");
    assert!(error.to_string().contains("known are memory_mb, read_ns"), "{error}");
    let mut missing = memory.clone();
    missing.attributes.remove("read_ns");
    let error = classify(&missing, &Measurements::new()).unwrap_err();
    assert_eq!(error, ResourceError::MissingAttribute { category: Category::Memory, attribute: "read_ns".into() });
    assert_eq!(error.to_string(), "memory.read_ns is missing: memory needs it");
    for share in [-0.1, 1.5, f64::NAN] {
        let error = classify(&ResourceDeclaration { private_share: share, ..memory.clone() }, &Measurements::new())
            .unwrap_err();
        assert_eq!(error.field(), "private_share");
    }
    // A measurement out of bounds is refused too, naming the attribute.
    let measured = Measurements::new().with(Category::Memory, "read_ns", f64::NAN);
    assert_eq!(classify(memory, &measured).unwrap_err().field(), "memory.read_ns");
    let measured = Measurements::new().with(Category::Memory, "bogus", 1.0);
    assert_eq!(classify(memory, &measured).unwrap_err().field(), "memory.bogus");
}

#[test]
fn category_rules_are_enforced() {
    let computing = declaration("computing", &[("duration_s", 60.0.into())]);
    assert_eq!(classify(&computing, &Measurements::new()).unwrap_err().field(), "computing.mflops");
    let mips = declaration("computing", &[("mips", 500.0.into()), ("duration_s", 60.0.into())]);
    let (resource, _) = classify(&mips, &Measurements::new()).unwrap();
    assert_eq!((resource.quantity(), resource.quantity_unit()), (500.0, "MIPS"));
    let mut file = examples()[4].clone();
    file.attributes.insert("sha256".into(), "xyz".into());
    assert!(classify(&file, &Measurements::new()).unwrap_err().to_string().contains("64 hexadecimal"));
    let half_a_file = ResourceDeclaration { private_share: 0.5, ..examples()[4].clone() };
    assert_eq!(classify(&half_a_file, &Measurements::new()).unwrap_err().field(), "private_share");
    let mut money = examples()[6].clone();
    money.attributes.insert("kind".into(), "gold".into());
    assert!(
        classify(&money, &Measurements::new())
            .unwrap_err()
            .to_string()
            .contains("cash, credit, sweepstakes, commission")
    );
    let mut gpu = examples()[3].clone();
    gpu.attributes.insert("count".into(), 1.5.into());
    assert!(classify(&gpu, &Measurements::new()).unwrap_err().to_string().contains("whole number"));
}

#[test]
fn scaling_takes_a_share_of_what_grows_with_quantity() {
    let (memory, _) = classify(&examples()[1], &Measurements::new()).unwrap();
    let half = memory.scaled(0.5);
    assert_eq!(half.number("memory_mb"), Some(4096.0));
    assert_eq!(half.number("read_ns"), Some(80.0), "latency does not shrink with the amount");
    let (gpus, _) = classify(&examples()[3], &Measurements::new()).unwrap();
    assert_eq!(gpus.scaled(0.7).number("count"), Some(1.0), "devices stay whole");
}

#[test]
fn resources_round_trip_through_json_and_are_checked_when_read() {
    let measured = Measurements::new().with(Category::Computing, "mflops", 15_000.0);
    for example in examples() {
        let (resource, _) = classify(&example, &measured).unwrap();
        let json = serde_json::to_string(&resource).unwrap();
        assert_eq!(serde_json::from_str::<Resource>(&json).unwrap(), resource, "{json}");
    }
    let forged = r#"{"category":"memory","attributes":{"memory_mb":{"value":-5,"provenance":"declared"},"read_ns":{"value":1,"provenance":"declared"},"write_ns":{"value":1,"provenance":"declared"},"duration_s":{"value":1,"provenance":"declared"}}}"#;
    assert!(serde_json::from_str::<Resource>(forged).unwrap_err().to_string().contains("must not be negative"));
}

proptest! {
    #[test]
    fn any_number_is_either_classified_within_bounds_or_refused(value in prop_oneof![any::<f64>(), -1e3f64..1e12]) {
        let mut declaration = examples()[1].clone();
        declaration.attributes.insert("memory_mb".into(), Value::Number(value));
        match classify(&declaration, &Measurements::new()) {
            Ok((resource, _)) => {
                let mb = resource.number("memory_mb").unwrap();
                prop_assert!(mb.is_finite() && mb > 0.0 && mb <= 1e9);
            }
            Err(error) => prop_assert_eq!(error.field(), "memory.memory_mb"),
        }
    }
}
