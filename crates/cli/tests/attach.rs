//! Attaching to one task (P1.4): `idlegrid job attach --task` streams that task's interim
//! statuses, in the client's own pattern, then its result, and nothing of the other tasks.

mod common;

use common::*;

fn job_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in: {stdout}"))
        .to_string()
}

/// The percentages of `task N: running P%` lines.
fn running_percents(stdout: &str) -> Vec<u32> {
    stdout.lines().filter_map(|line| line.split_once(": running ")?.1.strip_suffix('%')?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_attaches_to_one_task_with_its_own_interim_pattern() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 30);
    wait_healthy(&url).await;
    let home = dir.path().join("home");
    let job = dir.path().join("job.toml");
    // Three counting tasks of about four seconds each, reporting progress as they go.
    std::fs::write(
        &job,
        format!(
            "name = \"count\"\nexecutable = \"{}\"\n[tasks]\ncount = 3\nparams = \"mode=stop-aware target=4000 every=50 i={{index}}\"\n",
            example_task("misbehave").display()
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&home, &url, &["job", "submit", job.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let id = job_id(&out);
    let _engine = spawn_engine(&url, &dir.path().join("engine"), 2);

    let result = dir.path().join("task1.out");
    let (ok, out, err) = cli(
        &home,
        &url,
        &["job", "attach", &id, "--task", "1", "--every-percent", "30", "--out", result.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    assert!(out.lines().all(|line| line.starts_with("task 1:")), "only task 1 is streamed:\n{out}");
    assert!(out.contains("task 1: succeeded"), "{out}");
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "4000");
    let percents = running_percents(&out);
    assert!(percents.len() <= 4, "at most one interim status per 30% (and the first): {percents:?}");
    assert!(
        percents.windows(2).all(|w| w[1] >= w[0] + 29),
        "each interim status is at least 30% past the one before: {percents:?}"
    );

    // A task that does not exist: a clear refusal.
    let (ok, _, err) = cli(&home, &url, &["job", "attach", &id, "--task", "7"]);
    assert!(!ok && err.contains("7"), "{err}");
    let (ok, _, err) = cli(&home, &url, &["job", "attach", &id, "--task", "0", "--every-percent", "150"]);
    assert!(!ok && err.contains("every_percent"), "{err}");
}
