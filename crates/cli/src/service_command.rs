//! `idlegrid engine install-service`: the engine as a service of this computer (a systemd user
//! unit, a launchd agent or a Windows service; `idlegrid-platform` writes and registers it),
//! with the server, CA, data folder and settings file given on this command line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use idlegrid_platform::service::{self, ServiceSpec};

/// `path` made absolute (the service does not start where this command ran), as UTF-8.
fn absolute(path: &Path, what: &str) -> anyhow::Result<String> {
    let absolute = std::path::absolute(path).with_context(|| format!("cannot resolve {what} {}", path.display()))?;
    absolute.to_str().map(String::from).with_context(|| format!("{what} {} is not valid UTF-8", absolute.display()))
}

/// The command line the service runs: the global options, then `engine` with its own.
pub fn service_args(
    server: &str,
    server_ca: Option<&Path>,
    data: &Path,
    config: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let mut args = vec!["--server".to_string(), server.to_string()];
    if let Some(ca) = server_ca {
        args.extend(["--server-ca".to_string(), absolute(ca, "the server CA")?]);
    }
    args.extend(["engine".to_string(), "--data".to_string(), absolute(data, "the data folder")?]);
    if let Some(config) = config {
        anyhow::ensure!(config.is_file(), "the settings file {} does not exist", config.display());
        args.extend(["--config".to_string(), absolute(config, "the settings file")?]);
    }
    Ok(args)
}

pub fn install(
    server: &str,
    server_ca: Option<&Path>,
    data: &Path,
    config: Option<&Path>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("cannot tell where this program is")?;
    let args = service_args(server, server_ca, data, config)?;
    let spec = ServiceSpec { program, args, data_dir: PathBuf::from(absolute(data, "the data folder")?) };
    let steps = service::plan(idlegrid_platform::THIS_OS, &spec, &|name| std::env::var_os(name))
        .map_err(|e| anyhow::anyhow!("cannot install the service: {e}"))?;
    for step in &steps {
        println!("{step}");
    }
    if dry_run {
        println!("(dry run: nothing was changed)");
        return Ok(());
    }
    // The service's sandbox (systemd's ReadWritePaths) needs the folder to exist.
    idlegrid_platform::create_private_dir(&spec.data_dir)
        .with_context(|| format!("cannot create the data folder {}", spec.data_dir.display()))?;
    service::execute(&steps).map_err(|e| anyhow::anyhow!("cannot install the service: {e}"))?;
    println!("the engine runs as a service now, and at every start of this computer");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_gets_absolute_paths_and_the_options_given() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("engine.toml");
        std::fs::write(&config, "").unwrap();
        let args = service_args("https://grid:7700", None, Path::new("engine-data"), Some(&config)).unwrap();
        assert_eq!(&args[..4], &["--server", "https://grid:7700", "engine", "--data"]);
        assert!(Path::new(&args[4]).is_absolute() && args[4].ends_with("engine-data"), "{args:?}");
        assert_eq!(args[5], "--config");
        let missing = service_args("s", None, Path::new("d"), Some(&dir.path().join("absent.toml"))).unwrap_err();
        assert!(missing.to_string().contains("absent.toml does not exist"), "{missing}");
    }
}
