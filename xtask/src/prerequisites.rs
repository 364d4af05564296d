//! What the whole test suite needs beyond the Rust toolchain, how to tell whether this machine
//! has it, and how to install it on Debian. The one list: README and `.ci/run` defer to it.

use std::process::{Command, Stdio};

/// How to tell that a prerequisite is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// One of these programs is on the PATH.
    Program(&'static [&'static str]),
    /// `python3 -c 'import <modules>'` succeeds.
    PythonImports(&'static str),
    /// `cargo <subcommand> --version` succeeds.
    CargoSubcommand(&'static str),
    /// clang compiles a C program against WASI libc for wasm32-wasi.
    ClangForWasi,
    /// Something answers TCP connections at this address, unless the environment variable
    /// names another place for it.
    Listening { address: &'static str, unless_env: &'static str },
    /// `rustup target list --installed` names every one of these targets.
    RustTargets(&'static [&'static str]),
}

/// How to install a prerequisite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Debian packages (apt-get, as root).
    Apt(&'static [&'static str]),
    /// Debian packages, then a shell script that makes them usable (as root).
    AptThen(&'static [&'static str], &'static str),
    /// Python packages (pip, for the `python3` on the PATH).
    Pip(&'static [&'static str]),
    /// Node.js programs (`npm install -g`, as root).
    Npm(&'static [&'static str]),
    /// A Rust program (`cargo install --locked`).
    Cargo(&'static str),
    /// Rust targets (`rustup target add`).
    Rustup(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prerequisite {
    pub name: &'static str,
    /// What needs it, for the user deciding whether to install it.
    pub needed_by: &'static str,
    pub probe: Probe,
    pub install: Install,
}

/// PostgreSQL for the tests: started, database `test`, trusted on 127.0.0.1 for the user
/// `postgres` (a test machine's setting; IDLEGRID_TEST_POSTGRES points the tests elsewhere).
const POSTGRES_SETUP: &str = "for hba in /etc/postgresql/*/main/pg_hba.conf; do \
grep -q '^host test postgres 127.0.0.1/32 trust' \"$hba\" || sed -i '1i host test postgres 127.0.0.1/32 trust' \"$hba\"; done \
&& service postgresql start && (su postgres -c 'createdb test' 2>/dev/null || true)";

/// Everything `cargo xtask test` needs, in install order (Python with pip before pip packages).
pub const PREREQUISITES: &[Prerequisite] = &[
    Prerequisite {
        name: "cargo-nextest",
        needed_by: "the test runner",
        probe: Probe::CargoSubcommand("nextest"),
        install: Install::Cargo("cargo-nextest"),
    },
    Prerequisite {
        name: "Xvfb",
        needed_by: "the idle-detection tests (a real X server)",
        probe: Probe::Program(&["Xvfb"]),
        install: Install::Apt(&["xvfb"]),
    },
    Prerequisite {
        name: "Chromium",
        needed_by: "the test of the engine's status page in a real browser",
        probe: Probe::Program(&["chromium", "chromium-browser"]),
        install: Install::Apt(&["chromium"]),
    },
    Prerequisite {
        name: "ChromeDriver",
        needed_by: "the tests of the web manager in a real browser (WebDriver)",
        probe: Probe::Program(&["chromedriver"]),
        install: Install::Apt(&["chromium-driver"]),
    },
    Prerequisite {
        name: "clang for WebAssembly with WASI libc",
        needed_by: "the example tasks written in C",
        probe: Probe::ClangForWasi,
        install: Install::Apt(&["clang", "lld", "wasi-libc", "libclang-rt-dev-wasm32"]),
    },
    Prerequisite {
        name: "mingw-w64",
        needed_by: "the engine built for Windows",
        probe: Probe::Program(&["x86_64-w64-mingw32-gcc"]),
        install: Install::Apt(&["mingw-w64"]),
    },
    Prerequisite {
        name: "Wine",
        needed_by: "the engine's tests on Windows (under Wine)",
        probe: Probe::Program(&["wine"]),
        install: Install::Apt(&["wine"]),
    },
    Prerequisite {
        name: "Rust targets for Windows and macOS",
        needed_by: "the Windows build of the engine and the macOS type-check",
        probe: Probe::RustTargets(crate::platforms::TARGETS),
        install: Install::Rustup(crate::platforms::TARGETS),
    },
    Prerequisite {
        name: "PostgreSQL at 127.0.0.1:5432 (database test)",
        needed_by: "the PostgreSQL store and scale-out tests",
        probe: Probe::Listening { address: "127.0.0.1:5432", unless_env: "IDLEGRID_TEST_POSTGRES" },
        install: Install::AptThen(&["postgresql"], POSTGRES_SETUP),
    },
    Prerequisite {
        name: "Python 3 with pip",
        needed_by: "the test tools below and the Python client's tests",
        probe: Probe::PythonImports("pip"),
        install: Install::Apt(&["python3", "python3-pip"]),
    },
    Prerequisite {
        name: "aiosmtpd",
        needed_by: "the test of e-mailed notices (a real SMTP server)",
        probe: Probe::PythonImports("aiosmtpd"),
        install: Install::Pip(&["aiosmtpd"]),
    },
    Prerequisite {
        name: "schemathesis",
        needed_by: "the API fuzzing test against the OpenAPI description",
        probe: Probe::Program(&["st", "schemathesis"]),
        install: Install::Pip(&["schemathesis"]),
    },
    Prerequisite {
        name: "moto's S3 server",
        needed_by: "the tests of elements in S3-compatible storage",
        probe: Probe::Program(&["moto_server"]),
        install: Install::Pip(&["moto[server]"]),
    },
    Prerequisite {
        name: "Node.js with npm",
        needed_by: "the S3-compatible server s3rver below",
        probe: Probe::Program(&["npm"]),
        install: Install::Apt(&["nodejs", "npm"]),
    },
    Prerequisite {
        name: "s3rver, an S3-compatible server",
        needed_by: "the tests of elements in S3-compatible storage (a second server besides moto)",
        probe: Probe::Program(&["s3rver"]),
        install: Install::Npm(&["s3rver@3.7.1"]),
    },
    Prerequisite {
        name: "the Python client with pytest",
        needed_by: "the Python client's test suite",
        probe: Probe::PythonImports("idlegrid, httpx, cryptography, pytest"),
        install: Install::Pip(&["./clients/python[test]"]),
    },
];

/// How the install commands run on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// Root commands need `sudo` in front (not root, sudo present).
    pub sudo: bool,
    /// The Python is "externally managed" (Debian's own): pip needs `--break-system-packages`.
    pub pip_break_system_packages: bool,
}

/// Shell commands that install `missing`, in order: one apt-get for every Debian package, the
/// setup scripts, one pip for every Python package, one npm for every Node.js program, then
/// cargo installs. Pure.
pub fn install_commands(missing: &[&Prerequisite], host: Host) -> Vec<String> {
    let root = if host.sudo { "sudo " } else { "" };
    let mut apt: Vec<&str> = Vec::new();
    let mut scripts = Vec::new();
    let mut pip: Vec<&str> = Vec::new();
    let mut npm: Vec<&str> = Vec::new();
    let mut cargo = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for prerequisite in missing {
        match prerequisite.install {
            Install::Apt(packages) => apt.extend(packages),
            Install::AptThen(packages, script) => {
                apt.extend(packages);
                scripts.push(script);
            }
            Install::Pip(packages) => pip.extend(packages),
            Install::Npm(packages) => npm.extend(packages),
            Install::Cargo(krate) => cargo.push(krate),
            Install::Rustup(list) => targets.extend(list),
        }
    }
    let mut commands = Vec::new();
    if !apt.is_empty() {
        commands.push(format!(
            "{root}apt-get update && {root}env DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
            apt.join(" ")
        ));
    }
    for script in scripts {
        commands.push(if host.sudo { format!("sudo sh -c {}", shell_quote(script)) } else { script.to_string() });
    }
    if !pip.is_empty() {
        let flag = if host.pip_break_system_packages { " --break-system-packages" } else { "" };
        let packages: Vec<String> = pip.iter().map(|p| shell_quote(p)).collect();
        commands.push(format!("python3 -m pip install{flag} {}", packages.join(" ")));
    }
    if !npm.is_empty() {
        let packages: Vec<String> = npm.iter().map(|p| shell_quote(p)).collect();
        commands.push(format!("{root}npm install -g --no-audit --no-fund {}", packages.join(" ")));
    }
    for krate in cargo {
        commands.push(format!("cargo install {krate} --locked"));
    }
    if !targets.is_empty() {
        commands.push(format!("rustup target add {}", targets.join(" ")));
    }
    commands
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What to tell a user who lacks `missing`: the list, and the commands that install it.
pub fn missing_report(missing: &[&Prerequisite], host: Host, install_flag: &str) -> String {
    let mut text = String::from("the tests need what this machine lacks:\n");
    for prerequisite in missing {
        text.push_str(&format!("  - {}, for {}\n", prerequisite.name, prerequisite.needed_by));
    }
    text.push_str("Install it with (Debian; run from the repository's root):\n");
    for command in install_commands(missing, host) {
        text.push_str(&format!("  {command}\n"));
    }
    text.push_str(&format!("or let `cargo xtask test {install_flag}` run these commands."));
    text
}

fn quiet(command: &mut Command) -> bool {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command.status().map(|s| s.success()).unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether this machine has it (runs the probe).
pub fn present(prerequisite: &Prerequisite, cargo: &dyn Fn() -> Command) -> bool {
    match prerequisite.probe {
        Probe::Program(names) => names.iter().any(|name| on_path(name)),
        Probe::PythonImports(modules) => quiet(Command::new("python3").args(["-c", &format!("import {modules}")])),
        Probe::CargoSubcommand(name) => quiet(cargo().args([name, "--version"])),
        Probe::ClangForWasi => {
            let dir = std::env::temp_dir().join(format!("idlegrid-wasi-probe-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let source = dir.join("probe.c");
            let compiled = std::fs::write(&source, "#include <stdio.h>\nint main(void) { puts(\"x\"); return 0; }\n")
                .is_ok()
                && quiet(
                    Command::new("clang").args(["--target=wasm32-wasi", "-o"]).arg(dir.join("probe.wasm")).arg(&source),
                );
            let _ = std::fs::remove_dir_all(&dir);
            compiled
        }
        Probe::RustTargets(targets) => {
            Command::new("rustup").args(["target", "list", "--installed"]).output().is_ok_and(|output| {
                let installed = String::from_utf8_lossy(&output.stdout);
                targets.iter().all(|target| installed.lines().any(|line| line.trim() == *target))
            })
        }
        Probe::Listening { address, unless_env } => {
            std::env::var_os(unless_env).is_some()
                || address.parse().is_ok_and(|addr| {
                    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
                })
        }
    }
}

/// This machine's way of running the install commands.
pub fn this_host() -> Host {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let managed = Command::new("python3")
        .args([
            "-c",
            "import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')) else 1)",
        ])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    Host { sudo: !root && on_path("sudo"), pip_break_system_packages: managed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Vec<&'static Prerequisite> {
        names.iter().map(|n| PREREQUISITES.iter().find(|p| p.name.starts_with(n)).expect("known")).collect()
    }

    #[test]
    fn one_apt_get_and_one_pip_for_everything_in_order() {
        let missing = named(&["moto", "Xvfb", "PostgreSQL", "cargo-nextest", "the Python client", "Chromium"]);
        let commands = install_commands(&missing, Host::default());
        assert_eq!(commands.len(), 4, "{commands:#?}");
        assert_eq!(
            commands[0],
            "apt-get update && env DEBIAN_FRONTEND=noninteractive apt-get install -y xvfb postgresql chromium"
        );
        assert!(commands[1].contains("createdb test") && commands[1].starts_with("for hba in"), "{}", commands[1]);
        assert_eq!(commands[2], "python3 -m pip install 'moto[server]' './clients/python[test]'");
        assert_eq!(commands[3], "cargo install cargo-nextest --locked");
    }

    #[test]
    fn sudo_and_a_managed_python_are_provided_for() {
        let host = Host { sudo: true, pip_break_system_packages: true };
        let commands = install_commands(&named(&["PostgreSQL", "aiosmtpd"]), host);
        assert!(commands[0].starts_with("sudo apt-get update && sudo env DEBIAN_FRONTEND"), "{}", commands[0]);
        assert!(commands[1].starts_with("sudo sh -c 'for hba in"), "{}", commands[1]);
        assert_eq!(commands[2], "python3 -m pip install --break-system-packages aiosmtpd");
    }

    #[test]
    fn node_programs_come_after_node_itself() {
        let commands = install_commands(&named(&["s3rver", "Node.js", "moto"]), Host { sudo: true, ..Host::default() });
        assert_eq!(commands.len(), 3, "{commands:#?}");
        assert!(commands[0].ends_with("apt-get install -y nodejs npm"), "{}", commands[0]);
        assert_eq!(commands[1], "python3 -m pip install 'moto[server]'");
        assert_eq!(commands[2], "sudo npm install -g --no-audit --no-fund s3rver@3.7.1");
    }

    #[test]
    fn cross_building_needs_mingw_wine_and_rust_targets() {
        let commands = install_commands(&named(&["mingw-w64", "Wine", "Rust targets"]), Host::default());
        assert_eq!(
            commands,
            [
                "apt-get update && env DEBIAN_FRONTEND=noninteractive apt-get install -y mingw-w64 wine",
                "rustup target add x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin",
            ]
        );
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        assert!(install_commands(&[], Host::default()).is_empty());
    }

    #[test]
    fn the_report_names_each_missing_thing_and_how_to_get_it() {
        let report = missing_report(&named(&["schemathesis", "clang"]), Host::default(), "--install");
        assert!(report.contains("schemathesis, for the API fuzzing test"), "{report}");
        assert!(report.contains("apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32"), "{report}");
        assert!(report.contains("python3 -m pip install schemathesis"), "{report}");
        assert!(report.contains("cargo xtask test --install"), "{report}");
    }

    #[test]
    fn every_prerequisite_has_a_probe_and_an_install() {
        for prerequisite in PREREQUISITES {
            assert!(!install_commands(&[prerequisite], Host::default()).is_empty(), "{}", prerequisite.name);
        }
    }
}
