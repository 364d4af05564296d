//! Running the engine as a service that starts with the computer or the owner's session: a
//! systemd user unit on Linux, a launchd agent on macOS, a Windows service registered with
//! `sc.exe`. [`plan`] is pure (what to write, what to run); [`execute`] carries it out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::Os;

#[cfg(windows)]
pub use crate::windows::service::{dispatch, report_stopped};

/// The systemd user unit's name.
pub const SYSTEMD_UNIT: &str = "idlegrid-engine.service";
/// The launchd agent's label (and the name of its property list).
pub const LAUNCHD_LABEL: &str = "org.idlegrid.engine";
/// The Windows service's name.
pub const WINDOWS_SERVICE: &str = "IdlegridEngine";
/// The flag that tells `idlegrid engine` it runs under the Windows service control manager.
pub const AS_SERVICE_FLAG: &str = "--as-service";

/// What the service runs: this program with these arguments, and the folder it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub data_dir: PathBuf,
}

/// One step of an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write { path: PathBuf, contents: String },
    Run { program: String, args: Vec<String> },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Write { path, contents } => write!(f, "write {}:\n{contents}", path.display()),
            Step::Run { program, args } => {
                let words: Vec<String> = args.iter().map(|a| windows_quote(a)).collect();
                write!(f, "run {program} {}", words.join(" "))
            }
        }
    }
}

/// The steps that install `spec` as a service on `os`, with the environment `env` gives
/// (`HOME`, `XDG_CONFIG_HOME`).
pub fn plan(os: Os, spec: &ServiceSpec, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Vec<Step>, String> {
    let program = spec.program.to_str().ok_or("the program's path is not valid UTF-8")?;
    let data = spec.data_dir.to_str().ok_or("the data folder's path is not valid UTF-8")?;
    let home = || {
        env("HOME")
            .filter(|home| crate::dirs::unix_absolute(home))
            .map(PathBuf::from)
            .ok_or("HOME is not set to an absolute path")
    };
    match os {
        Os::Linux | Os::Other => {
            let config = match env("XDG_CONFIG_HOME").filter(|c| crate::dirs::unix_absolute(c)).map(PathBuf::from) {
                Some(config) => config,
                None => home()?.join(".config"),
            };
            let path = config.join("systemd").join("user").join(SYSTEMD_UNIT);
            let systemctl = |args: &[&str]| Step::Run {
                program: "systemctl".into(),
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            Ok(vec![
                Step::Write { path, contents: systemd_unit(program, &spec.args, data) },
                systemctl(&["--user", "daemon-reload"]),
                systemctl(&["--user", "enable", "--now", SYSTEMD_UNIT]),
            ])
        }
        Os::MacOs => {
            let path = home()?.join("Library").join("LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist"));
            let load = Step::Run {
                program: "launchctl".into(),
                args: vec!["load".into(), "-w".into(), path.display().to_string()],
            };
            Ok(vec![Step::Write { path, contents: launchd_plist(program, &spec.args, data) }, load])
        }
        Os::Windows => {
            let mut command = vec![program.to_string()];
            command.extend(spec.args.iter().cloned());
            command.push(AS_SERVICE_FLAG.into());
            let command_line: Vec<String> = command.iter().map(|a| windows_quote(a)).collect();
            let sc = |args: &[&str]| Step::Run {
                program: "sc.exe".into(),
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            Ok(vec![
                sc(&[
                    "create",
                    WINDOWS_SERVICE,
                    "binPath=",
                    &command_line.join(" "),
                    "start=",
                    "auto",
                    "DisplayName=",
                    "Idlegrid compute engine",
                ]),
                sc(&["description", WINDOWS_SERVICE, "Runs Idlegrid tasks on this computer's idle time."]),
                sc(&["start", WINDOWS_SERVICE]),
            ])
        }
    }
}

/// Carry out `steps` in order; the first failure stops, naming the step.
pub fn execute(steps: &[Step]) -> Result<(), String> {
    for step in steps {
        match step {
            Step::Write { path, contents } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Step::Run { program, args } => {
                let status = std::process::Command::new(program)
                    .args(args)
                    .status()
                    .map_err(|e| format!("cannot run {program}: {e}"))?;
                if !status.success() {
                    return Err(format!("{step} failed ({status})"));
                }
            }
        }
    }
    Ok(())
}

/// The systemd user unit: restarted on failure, nice and idle I/O for the engine's own
/// threads, writing only its data folder.
pub fn systemd_unit(program: &str, args: &[String], data: &str) -> String {
    let mut exec = vec![systemd_quote(program)];
    exec.extend(args.iter().map(|a| systemd_quote(a)));
    format!(
        "# systemd user unit for the Idlegrid compute engine (written by `idlegrid engine install-service`).\n\
         [Unit]\n\
         Description=Idlegrid compute engine (runs tasks on this computer's idle time)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=10\n\
         # Tasks already run at SCHED_IDLE; the engine's own threads stay out of the way too.\n\
         Nice=10\n\
         IOSchedulingClass=idle\n\
         # The engine needs its data folder and the network, nothing else of the home folder.\n\
         ProtectSystem=strict\n\
         ReadWritePaths={}\n\
         NoNewPrivileges=true\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" "),
        systemd_quote(data)
    )
}

/// The launchd agent: started at login and kept alive, as a background process with low
/// priority I/O.
pub fn launchd_plist(program: &str, args: &[String], data: &str) -> String {
    let mut arguments = format!("        <string>{}</string>\n", xml_escape(program));
    for arg in args {
        arguments.push_str(&format!("        <string>{}</string>\n", xml_escape(arg)));
    }
    let log = Path::new(data).join("engine.log");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20   <key>Label</key>\n\
         \x20   <string>{LAUNCHD_LABEL}</string>\n\
         \x20   <key>ProgramArguments</key>\n\
         \x20   <array>\n\
         {arguments}\
         \x20   </array>\n\
         \x20   <key>RunAtLoad</key>\n\
         \x20   <true/>\n\
         \x20   <key>KeepAlive</key>\n\
         \x20   <dict>\n\
         \x20       <key>SuccessfulExit</key>\n\
         \x20       <false/>\n\
         \x20   </dict>\n\
         \x20   <key>ProcessType</key>\n\
         \x20   <string>Background</string>\n\
         \x20   <key>LowPriorityIO</key>\n\
         \x20   <true/>\n\
         \x20   <key>Nice</key>\n\
         \x20   <integer>10</integer>\n\
         \x20   <key>StandardErrorPath</key>\n\
         \x20   <string>{}</string>\n\
         </dict>\n\
         </plist>\n",
        xml_escape(&log.display().to_string())
    )
}

/// One word of a systemd command line: quoted when needed; `%` and `$` doubled (specifiers
/// and variables).
fn systemd_quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && !escaped.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// One word of a Windows command line, as the C runtime splits it: quoted when it holds a
/// space, a tab or a quote (or is empty); backslashes doubled only before a quote.
pub fn windows_quote(word: &str) -> String {
    if !word.is_empty() && !word.chars().any(|c| c == ' ' || c == '\t' || c == '"') {
        return word.to_string();
    }
    let mut quoted = String::from("\"");
    let mut backslashes = 0;
    for c in word.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                quoted.push_str(&"\\".repeat(backslashes * 2 + 1));
                quoted.push('"');
                backslashes = 0;
            }
            _ => {
                quoted.push_str(&"\\".repeat(backslashes));
                quoted.push(c);
                backslashes = 0;
            }
        }
    }
    quoted.push_str(&"\\".repeat(backslashes * 2));
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            program: PathBuf::from("/opt/idle grid/idlegrid"),
            args: [
                "--server",
                "https://grid.example:7700",
                "engine",
                "--data",
                "/home/ann/.local/share/idlegrid/engine",
            ]
            .map(String::from)
            .to_vec(),
            data_dir: PathBuf::from("/home/ann/.local/share/idlegrid/engine"),
        }
    }

    fn env(name: &str) -> Option<OsString> {
        (name == "HOME").then(|| OsString::from("/home/ann"))
    }

    #[test]
    fn linux_gets_a_systemd_user_unit_enabled_now() {
        let steps = plan(Os::Linux, &spec(), &env).unwrap();
        let Step::Write { path, contents } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!(path, &PathBuf::from("/home/ann/.config/systemd/user/idlegrid-engine.service"));
        assert!(
            contents.contains(
                "ExecStart=\"/opt/idle grid/idlegrid\" --server https://grid.example:7700 engine --data /home/ann/.local/share/idlegrid/engine\n"
            ),
            "{contents}"
        );
        assert!(contents.contains("ReadWritePaths=/home/ann/.local/share/idlegrid/engine\n"), "{contents}");
        assert_eq!(
            steps[2],
            Step::Run {
                program: "systemctl".into(),
                args: ["--user", "enable", "--now", SYSTEMD_UNIT].map(String::from).to_vec()
            }
        );
        assert_eq!(systemd_quote("50%$x"), "50%%$$x");
        assert_eq!(systemd_quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn macos_gets_a_launchd_agent() {
        let mut spec = spec();
        spec.args.push("<&>".into());
        let steps = plan(Os::MacOs, &spec, &env).unwrap();
        let Step::Write { path, contents } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!(path, &PathBuf::from("/home/ann/Library/LaunchAgents/org.idlegrid.engine.plist"));
        assert!(
            contents.contains("<string>/opt/idle grid/idlegrid</string>\n        <string>--server</string>"),
            "{contents}"
        );
        assert!(contents.contains("<string>&lt;&amp;&gt;</string>"), "{contents}");
        assert!(contents.contains("<key>ProcessType</key>\n    <string>Background</string>"), "{contents}");
        assert!(matches!(&steps[1], Step::Run { program, args } if program == "launchctl" && args[0] == "load"));
        assert!(plan(Os::MacOs, &spec, &|_| None).unwrap_err().contains("HOME"));
    }

    #[test]
    fn windows_gets_a_service_registered_with_sc() {
        let spec = ServiceSpec {
            program: PathBuf::from(r"C:\Program Files\Idlegrid\idlegrid.exe"),
            args: ["engine", "--data", r"C:\Users\ann\AppData\Local\Idlegrid\engine"].map(String::from).to_vec(),
            data_dir: PathBuf::from(r"C:\Users\ann\AppData\Local\Idlegrid\engine"),
        };
        let steps = plan(Os::Windows, &spec, &|_| None).unwrap();
        let Step::Run { program, args } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!(program, "sc.exe");
        assert_eq!(&args[..3], &["create", WINDOWS_SERVICE, "binPath="]);
        assert_eq!(
            args[3],
            r#""C:\Program Files\Idlegrid\idlegrid.exe" engine --data C:\Users\ann\AppData\Local\Idlegrid\engine --as-service"#
        );
        assert_eq!(&args[4..6], &["start=", "auto"]);
        assert!(matches!(&steps[2], Step::Run { args, .. } if args[0] == "start"));
    }

    #[test]
    fn windows_words_are_quoted_as_the_c_runtime_splits_them() {
        assert_eq!(windows_quote("plain"), "plain");
        assert_eq!(windows_quote(""), "\"\"");
        assert_eq!(windows_quote(r"a b\"), r#""a b\\""#);
        assert_eq!(windows_quote(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(windows_quote(r"C:\a b\c"), r#""C:\a b\c""#);
    }

    #[test]
    fn steps_are_carried_out_and_a_failing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep").join("unit");
        execute(&[Step::Write { path: path.clone(), contents: "x".into() }]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        let missing = Step::Run { program: "idlegrid-no-such-program".into(), args: vec![] };
        assert!(execute(&[missing]).unwrap_err().contains("cannot run idlegrid-no-such-program"));
    }
}
