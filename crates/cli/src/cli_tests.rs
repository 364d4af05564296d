//! Tests of the command line's definition against what users read: every `idlegrid` command
//! README.md shows parses, and no help text speaks of internal issue numbers.

use clap::{CommandFactory, Parser};

use crate::{Cli, Command, EngineAction};

/// Values standing for README's placeholders.
fn placeholder(token: &str) -> Option<&'static str> {
    Some(match token {
        "<JOB>" => "00000000-0000-4000-8000-000000000001",
        "<PARTY-ID>" | "<CLIENT-ID>" | "<ID>" => "0123456789abcdef0123456789abcdef",
        "<TASK>" | "<REQUEST>" | "N" => "1",
        _ => return None,
    })
}

/// Split a command line as a POSIX shell would for the quoting README uses ('...' and "...").
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The `idlegrid` commands a Markdown text shows: lines of `sh` blocks and inline code spans
/// that start with the command, comments removed, `a | b` alternatives and `[optional]` parts
/// spelled out, placeholders filled in.
fn idlegrid_commands(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut candidates = Vec::new();
    // Prose, joined: an inline span may run over a line break.
    let mut prose = String::new();
    let mut in_sh = false;
    let mut in_other_block = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match (in_sh, in_other_block) {
                (false, false) if lang.trim() == "sh" => in_sh = true,
                (false, false) => in_other_block = true,
                _ => (in_sh, in_other_block) = (false, false),
            }
            continue;
        }
        if in_sh {
            // A comment starts with " #" (URLs and arguments here never contain one).
            let command = trimmed.split(" #").next().unwrap_or("").trim();
            candidates.push(command.to_string());
        } else if !in_other_block {
            prose.push_str(line);
            prose.push(' ');
        }
    }
    candidates.extend(prose.split('`').skip(1).step_by(2).map(|span| span.trim().to_string()));
    let mut commands = Vec::new();
    for candidate in candidates {
        let Some(rest) =
            candidate.strip_prefix("idlegrid ").or_else(|| candidate.strip_prefix("target/release/idlegrid "))
        else {
            continue;
        };
        for alternative in rest.split(" | ") {
            let alternative = alternative.trim().strip_prefix("idlegrid ").unwrap_or(alternative.trim());
            let mut argv = vec!["idlegrid".to_string()];
            for word in shell_words(&alternative.replace(['[', ']'], "")) {
                if word == "..." {
                    continue; // "and more options"
                }
                argv.push(placeholder(&word).map(str::to_string).unwrap_or(word));
            }
            commands.push((candidate.clone(), argv));
        }
    }
    commands
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    std::fs::read_to_string(path).expect("README.md is readable")
}

#[test]
fn every_idlegrid_command_in_the_readme_parses() {
    let commands = idlegrid_commands(&readme());
    assert!(commands.len() > 30, "README's commands were found: {commands:?}");
    let engine_status = ["idlegrid", "engine", "status", "--data", "./engine-data"];
    assert!(commands.iter().any(|(_, argv)| argv == &engine_status), "prose commands are checked too: {commands:?}");
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|(line, argv)| {
            Cli::try_parse_from(argv).err().map(|error| format!("`{line}` as {argv:?}:\n{}", error.render()))
        })
        .collect();
    assert!(failures.is_empty(), "README commands the CLI refuses:\n{}", failures.join("\n"));
}

#[test]
fn the_extraction_sees_alternatives_options_placeholders_and_comments() {
    let text = "Run `idlegrid ops id` or `cargo build`.\n```sh\nidlegrid job stop <JOB> [--task N] | job list   # what\nidlegrid ops reject <REQUEST> --reason \"no such payment\"\n```\n```toml\nidlegrid = \"not a command\"\n```\n";
    let argvs: Vec<Vec<String>> = idlegrid_commands(text).into_iter().map(|(_, argv)| argv).collect();
    let expected: Vec<Vec<&str>> = vec![
        vec!["idlegrid", "job", "stop", "00000000-0000-4000-8000-000000000001", "--task", "1"],
        vec!["idlegrid", "job", "list"],
        vec!["idlegrid", "ops", "reject", "1", "--reason", "no such payment"],
        vec!["idlegrid", "ops", "id"],
    ];
    assert_eq!(argvs, expected);
}

#[test]
fn engine_data_goes_before_or_after_status() {
    for argv in [
        ["idlegrid", "engine", "status", "--data", "./engine-data"],
        ["idlegrid", "engine", "--data", "./engine-data", "status"],
    ] {
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match cli.command {
            Command::Engine { action: Some(EngineAction::Status), data, .. } => {
                assert_eq!(data.as_deref(), Some(std::path::Path::new("./engine-data")), "{argv:?}")
            }
            _ => panic!("{argv:?} is not engine status"),
        }
    }
}

/// Every command and subcommand, with its long help.
fn all_help(command: &mut clap::Command, path: String, out: &mut Vec<(String, String)>) {
    out.push((path.clone(), command.render_long_help().to_string()));
    for sub in command.get_subcommands_mut() {
        let name = format!("{path} {}", sub.get_name());
        all_help(sub, name, out);
    }
}

#[test]
fn no_help_text_mentions_an_issue() {
    let mut command = Cli::command();
    command.build();
    let mut helps = Vec::new();
    all_help(&mut command, "idlegrid".into(), &mut helps);
    assert!(helps.iter().any(|(path, _)| path == "idlegrid sim placement"), "subcommands are visited");
    for (path, help) in helps {
        let lower = help.to_lowercase();
        assert!(!lower.contains("issue "), "`{path} --help` speaks of an issue:\n{help}");
    }
}

/// Lines a subscriber with `filter` writes for events of these targets and levels.
fn logged(filter: tracing_subscriber::EnvFilter, emit: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, emit);
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn by_default_other_libraries_warnings_stay_quiet_and_ours_show() {
    let text = logged(crate::default_filter("info"), || {
        tracing::warn!(target: "h2::proto::streams", "locally-reset streams reached limit");
        tracing::warn!(target: "rustls::common_state", "Sending warning alert CloseNotify");
        tracing::error!(target: "hyper_util::server", "a library's error");
        tracing::info!(target: "idlegrid_server::listener", "server listening");
        tracing::debug!(target: "idlegrid_coordinator::profiles", "benchmark tasks created");
    });
    assert!(!text.contains("streams reached limit") && !text.contains("warning alert"), "{text}");
    assert!(text.contains("a library's error") && text.contains("server listening"), "{text}");
    assert!(!text.contains("benchmark tasks created"), "{text}");
    let text = logged(crate::log_filter(Some("h2=warn"), "info"), || {
        tracing::warn!(target: "h2::proto::streams", "locally-reset streams reached limit");
    });
    assert!(text.contains("streams reached limit"), "--log shows them: {text}");
}
