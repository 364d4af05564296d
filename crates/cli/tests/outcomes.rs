//! How a job's end reaches the person at the terminal: `idlegrid job submit --watch` and
//! `job watch` exit non-zero when tasks failed, group the reasons, count results collected
//! earlier, and never pass on the terminal escapes that task code wrote; a job file without
//! tasks submits nothing.

mod common;

use common::*;

fn job_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in: {stdout}"))
        .into()
}

/// No terminal escape, carriage return or other control character but newlines.
fn assert_clean(text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "control characters {bad:?} reached the terminal:\n{text}");
}

/// None of the sequences the task wrote (the command's own log colours may be there).
fn assert_no_task_escapes(text: &str) {
    for hostile in ["\x1b]0;owned", "\x07", "\x1b[2J", "\x1b[31mred", "\r"] {
        assert!(!text.contains(hostile), "{hostile:?} reached the terminal:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_exits_non_zero_with_its_reasons_grouped_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 30);
    wait_healthy(&url).await;
    let _engine = spawn_engine(&url, &dir.path().join("engine"), 2);
    let home = dir.path().join("home");
    let misbehave = example_task("misbehave");
    let tasks = dir.path().join("tasks.jsonl");
    let lines = ["fail-hostile", "fail-hostile", "fail-hostile", "trap", "read-env"]
        .map(|mode| format!("{{\"params\": \"mode={mode}\"}}"))
        .join("\n");
    std::fs::write(&tasks, lines).unwrap();
    let job = dir.path().join("bad.toml");
    std::fs::write(
        &job,
        format!("name = \"bad\"\nexecutable = \"{}\"\n[tasks]\nfile = \"{}\"\n", misbehave.display(), tasks.display()),
    )
    .unwrap();
    let results = dir.path().join("results");
    let (done, out, err) =
        cli(&home, &url, &["job", "submit", job.to_str().unwrap(), "--watch", "--out", results.to_str().unwrap()]);
    assert!(!done, "a job with failed tasks did not succeed: {out}{err}");
    assert!(out.contains("1 tasks succeeded, 4 failed"), "{out}");
    assert!(out.contains("3 tasks (task"), "the three identical failures are one reason: {out}");
    assert!(out.contains("\\u{1b}]0;owned") && out.contains("\\rFORGED"), "shown escaped: {out}");
    assert!(!out.contains("INFO all tasks succeeded"), "only the first line of a reason is shown: {out}");
    assert!(out.contains("Trap"), "{out}");
    assert!(err.contains("did not succeed: 4 of 5 tasks failed"), "{err}");
    assert_clean(&out);
    assert_no_task_escapes(&err);
    let reason = std::fs::read_to_string(results.join("0.err")).unwrap();
    assert!(reason.contains("\\u{1b}[2J") && reason.contains("\\rFORGED\nINFO"), "{reason:?}");
    assert_clean(&reason);

    // Watching it again later: the server's counts, though the results were collected.
    let id = job_id(&out);
    let (done, out, _) = cli(&home, &url, &["job", "watch", &id]);
    assert!(!done, "{out}");
    assert!(out.contains("1 tasks succeeded, 4 failed") && out.contains("collected before"), "{out}");
    assert_clean(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_job_exits_zero_and_counts_right_when_watched_again_and_an_empty_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 30);
    wait_healthy(&url).await;
    let _engine = spawn_engine(&url, &dir.path().join("engine"), 2);
    let home = dir.path().join("home");
    let noop = example_task("noop");
    let job = dir.path().join("ok.toml");
    std::fs::write(&job, format!("executable = \"{}\"\n[tasks]\ncount = 3\nparams = \"x\"\n", noop.display())).unwrap();
    let (done, out, err) = cli(&home, &url, &["job", "submit", job.to_str().unwrap(), "--watch"]);
    assert!(done, "{out}{err}");
    assert!(out.contains("3 tasks succeeded, 0 failed"), "{out}");
    let id = job_id(&out);
    let (done, out, err) = cli(&home, &url, &["job", "watch", &id]);
    assert!(done, "{out}{err}");
    assert!(out.contains("3 tasks succeeded, 0 failed"), "results collected before still count: {out}");

    // A job file that defines no task submits nothing.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, format!("executable = \"{}\"\n[tasks]\ncount = 0\n", noop.display())).unwrap();
    let (done, out, err) = cli(&home, &url, &["job", "submit", empty.to_str().unwrap()]);
    assert!(!done && err.contains("defines no tasks"), "{out}{err}");
    let (done, out, _) = cli(&home, &url, &["job", "list"]);
    assert!(done && out.lines().count() == 1 && out.contains(&id), "only the first job exists: {out}");
}
