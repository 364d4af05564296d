//! `idlegrid sim market` as users run it: the market simulation prints its table, every
//! negotiation ends, and bad options are refused with a message.

fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_idlegrid"))
}

#[test]
fn sim_market_prints_agreements_per_strategy_pair() {
    let output = std::process::Command::new(binary())
        .args(["sim", "market", "--peers", "300", "--negotiations", "1500", "--seed", "7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("| seller | buyer | negotiations |"), "{stdout}");
    let total =
        stdout.lines().find(|l| l.starts_with("| all | all |")).unwrap_or_else(|| panic!("no total:\n{stdout}"));
    let cells: Vec<&str> = total.split('|').map(str::trim).collect();
    let negotiations: u64 = cells[3].parse().unwrap();
    let agreed: f64 = cells[5].trim_end_matches('%').parse().unwrap();
    assert!(negotiations > 500, "most requests find a match:\n{stdout}");
    assert!(agreed > 0.0 && agreed < 100.0, "{total}");
    assert!(stdout.contains(" 0 left open"), "every negotiation ends:\n{stdout}");

    let bad = std::process::Command::new(binary()).args(["sim", "market", "--peers", "1"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least 2 peers"));
}
