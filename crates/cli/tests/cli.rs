//! The `idlegrid` binary as users run it: a server and an engine as separate processes, and
//! client commands as more processes, on localhost.

mod common;

use std::time::Duration;

use common::*;

fn job_file(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn job_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in: {stdout}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_control_and_collect_with_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 30);
    wait_healthy(&url).await;
    let home = dir.path().join("home");
    let pi = example_task("pi");
    let job = job_file(
        dir.path(),
        &format!(
            "name = \"pi\"\nexecutable = \"{}\"\n[tasks]\ncount = 24\nparams = \"samples=300000 seed={{index}}\"\n",
            pi.display()
        ),
    );

    // Submitted with no engine running: fire and forget.
    let (ok, out, err) = cli(&home, &url, &["job", "submit", job.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let id = job_id(&out);
    let (ok, out, _) = cli(&home, &url, &["job", "status", &id]);
    assert!(ok && out.contains("running") && out.contains("24 tasks"), "{out}");

    // Stop before any engine exists, then resume; then an engine does the work.
    let (ok, out, _) = cli(&home, &url, &["job", "stop", &id]);
    assert!(ok && out.contains("stopped"), "{out}");
    let _engine = spawn_engine(&url, &dir.path().join("engine"), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, out, _) = cli(&home, &url, &["job", "status", &id]);
    assert!(out.contains("0 succeeded"), "a stopped job does not run: {out}");
    let (ok, out, _) = cli(&home, &url, &["job", "resume", &id]);
    assert!(ok && out.contains("running"), "{out}");

    // Another process collects every result, waiting for the job to complete.
    let results = dir.path().join("results");
    let (ok, out, err) = cli(&home, &url, &["job", "results", &id, "--out", results.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("24 tasks succeeded, 0 failed"), "{out}");
    let mut inside = 0u64;
    for i in 0..24 {
        let text = std::fs::read_to_string(results.join(format!("{i}.out"))).unwrap();
        let (a, b) = text.split_once(' ').unwrap();
        assert_eq!(b, "300000");
        inside += a.parse::<u64>().unwrap();
    }
    let estimate = 4.0 * inside as f64 / (24.0 * 300000.0);
    assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");

    // Listing, removal, and a clear error afterwards.
    let (ok, out, _) = cli(&home, &url, &["job", "list"]);
    assert!(ok && out.contains(&id) && out.contains("completed"), "{out}");
    let (ok, _, _) = cli(&home, &url, &["job", "rm", &id]);
    assert!(ok);
    let (ok, _, err) = cli(&home, &url, &["job", "status", &id]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    // A job id that is not one.
    let (ok, _, err) = cli(&home, &url, &["job", "status", "banana"]);
    assert!(!ok && err.contains("banana"), "{err}");
}

#[test]
fn a_client_without_a_server_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", free_port());
    let (ok, _, err) = cli(dir.path(), &url, &["--connect-timeout-secs", "1", "job", "list"]);
    assert!(!ok);
    assert!(err.contains("cannot connect to the server") && err.contains("idlegrid server"), "{err}");
}

#[test]
fn run_local_runs_a_sample_through_the_same_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.txt"), "a b c\nd e\n").unwrap();
    let job = job_file(
        dir.path(),
        &format!(
            "executable = \"{}\"\n[data]\ntext = \"text.txt\"\n[tasks]\ncount = 40\nparams = \"i={{index}}\"\n",
            example_task("wordcount").display()
        ),
    );
    let out = dir.path().join("out");
    let output = std::process::Command::new(binary())
        .args(["run-local", job.to_str().unwrap(), "--percent", "25", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("10 tasks succeeded, 0 failed"), "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("0.out")).unwrap(), "2 5 10");
    assert!(out.join("4.out").exists() && !out.join("1.out").exists() && !out.join("3.out").exists(), "an even sample");

    // A failing task is reported with its reason and makes the command fail.
    let job = job_file(
        dir.path(),
        &format!(
            "executable = \"{}\"\n[tasks]\ncount = 2\nparams = \"mode=trap\"\n",
            example_task("misbehave").display()
        ),
    );
    let output = std::process::Command::new(binary())
        .args(["run-local", job.to_str().unwrap(), "--tasks", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("trapped") && stdout.contains("index out of bounds"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_offered_by_the_server_is_verified_staged_and_started_next_time() {
    let dir = tempfile::tempdir().unwrap();
    // The "new build": a script that records how it was started.
    let marker = dir.path().join("started-with");
    let build = dir.path().join("new-idlegrid");
    std::fs::write(&build, format!("#!/bin/sh\necho \"$@\" > {}\n", marker.display())).unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    let server = std::process::Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .args(["--upgrade-version", "99.0.0", "--upgrade-binary"])
        .arg(&build)
        .args(["--log", "warn", "--benchmark-interval-secs", "0"])
        .spawn()
        .unwrap();
    let _server = Process(server);
    wait_healthy(&url).await;
    let engine_dir = dir.path().join("engine");
    let mut engine = spawn_engine(&url, &engine_dir, 1);
    let staged = engine_dir.join("upgrade/staged.json");
    wait_for("the engine to stage the upgrade", || staged.exists()).await;
    engine.kill9();
    // The next start switches to the staged build, with the same arguments.
    let status = std::process::Command::new(binary())
        .args(["--server", &url, "engine", "--data"])
        .arg(&engine_dir)
        .args(["--status-listen", "off", "--task-priority", "normal"])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::fs::read_to_string(&marker).expect("the staged build ran");
    assert!(started.contains("engine --data") && started.contains(engine_dir.to_str().unwrap()), "{started}");

    // A staged build altered on disk is refused and removed; the current build runs instead.
    std::fs::remove_file(&marker).unwrap();
    let path = engine_dir.join("upgrade/idlegrid-99.0.0");
    std::fs::write(&path, "#!/bin/sh\necho evil > /dev/null\n").unwrap();
    let mut engine = spawn_engine(&url, &engine_dir, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(engine.0.try_wait().unwrap().is_none(), "the current build is running");
    assert!(!marker.exists());
    engine.kill9();
}

/// `idlegrid sim`: both simulations run through the product and print their tables, with the
/// figures the issues promise holding at a small size.
#[test]
fn sim_prints_the_placement_and_saboteur_tables() {
    let output = std::process::Command::new(binary())
        .args(["sim", "placement", "--providers", "300", "--tasks", "3000", "--reliabilities", "0.9,0.99"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for r in ["| 0.9 |", "| 0.99 |"] {
        let row = stdout.lines().find(|l| l.starts_with(r)).unwrap_or_else(|| panic!("no row {r}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (tasks, finished, share): (u64, u64, f64) =
            (cells[2].parse().unwrap(), cells[3].parse().unwrap(), cells[5].parse().unwrap());
        assert_eq!(tasks, finished, "every task finished: {row}");
        let requested: f64 = r.trim_matches(|c| c == '|' || c == ' ').parse().unwrap();
        // The promise, with a margin for a small population: the share finished within the
        // requested time is near the requested reliability.
        assert!(share >= requested - 0.05, "{row}");
    }

    let output = std::process::Command::new(binary())
        .args(["sim", "saboteurs", "--providers", "500", "--tasks", "3000", "--fractions", "0.2", "--rates", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let error_of = |policy: &str| -> f64 {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {policy} |")))
            .unwrap_or_else(|| panic!("no {policy}:\n{stdout}"));
        row.split('|').map(str::trim).nth(4).unwrap().parse().unwrap()
    };
    assert!(error_of("quorum 2") > 0.05, "colluding saboteurs beat a quorum of 2:\n{stdout}");
    assert!(error_of("credibility 0.9999") < error_of("quorum 3"), "{stdout}");
    let bad = std::process::Command::new(binary()).args(["sim", "saboteurs", "--fractions", "1.5"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--fractions"));
}

/// `idlegrid bench` runs its whole table on a small workload (the figures are not checked:
/// speed is never asserted), round trips included.
#[test]
fn bench_prints_its_table() {
    let tasks_dir = idlegrid_testkit::build_example_tasks().unwrap();
    let output = std::process::Command::new(binary())
        .args(["bench", "--tasks", "30", "--latency-samples", "3", "--insecure-plain-http", "--tasks-dir"])
        .arg(&tasks_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for row in ["| throughput |", "| single-task round trip p50 (add to result) |", "| one-task job p99 |"] {
        assert!(stdout.contains(row), "{row} missing from:\n{stdout}");
    }
}
