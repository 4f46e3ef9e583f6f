//! `--config glaux.toml` (or `GLAUX_CONFIG`): one file that can set every flag of every role.
//!
//! Top-level keys set a flag for every role that has it (`warehouse = "/lake"` serves the
//! scheduler and the executors alike); a role's table (`[scheduler]`, `[executor]`,
//! `[standalone]`, `[shell]`, ...) sets that role's flags and beats the top level. Keys are the
//! flags' long names (`http-addr` or `http_addr`); a flag taking several values takes an array,
//! a switch takes `true`. Flags beat the environment, which beats the file: a file value is used
//! only when the flag is not on the command line and its environment variable is not set.
//! Unknown keys are errors, so a typo never passes silently.
//!
//! It works on the command line itself: the file's values become flags appended to it before
//! clap parses, so every flag, present and future, is settable without a list kept here.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgAction, CommandFactory};

use crate::args::Cli;

/// Files larger than this are refused (a configuration is a few hundred bytes).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The command line with the file's settings added.
pub(crate) struct Configured {
    pub argv: Vec<OsString>,
    /// Ids of the flags the file set (for `glaux config show`).
    pub from_file: BTreeSet<String>,
    pub path: Option<PathBuf>,
}

/// Global options taking a value: skipped when looking for the subcommand.
const GLOBAL_VALUES: [&str; 2] = ["--config", "--log-format"];

/// Adds the settings of the configuration file named on `argv` (or by `GLAUX_CONFIG`) to it.
pub(crate) fn apply(argv: Vec<OsString>) -> anyhow::Result<Configured> {
    let words: Vec<String> = argv.iter().map(|w| w.to_string_lossy().into_owned()).collect();
    let named = words.iter().enumerate().skip(1).find_map(|(i, word)| {
        word.strip_prefix("--config=")
            .map(str::to_string)
            .or_else(|| (word == "--config").then(|| words.get(i + 1).cloned()).flatten())
    });
    let path = named.or_else(|| std::env::var("GLAUX_CONFIG").ok().filter(|p| !p.is_empty())).map(PathBuf::from);
    let Some(path) = path else { return Ok(Configured { argv, from_file: BTreeSet::new(), path: None }) };
    let Some(role) = subcommand(&words) else {
        return Ok(Configured { argv, from_file: BTreeSet::new(), path: Some(path) });
    };
    let table = read(&path)?;
    let (argv, from_file) = with_settings(argv, &words, &role, &table)
        .with_context(|| format!("in the configuration file {}", path.display()))?;
    Ok(Configured { argv, from_file, path: Some(path) })
}

/// The subcommand `words` run (the first word that is neither an option nor a global's value).
fn subcommand(words: &[String]) -> Option<String> {
    let mut skip = false;
    for word in words.iter().skip(1) {
        if std::mem::take(&mut skip) {
            continue;
        }
        if word.starts_with('-') {
            skip = GLOBAL_VALUES.contains(&word.as_str());
            continue;
        }
        return Some(word.clone());
    }
    None
}

fn read(path: &PathBuf) -> anyhow::Result<toml::Table> {
    let size = std::fs::metadata(path).with_context(|| format!("reading the configuration file {}", path.display()))?;
    if size.len() > MAX_FILE_BYTES {
        bail!("the configuration file {} is larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("the configuration file {} is not valid TOML", path.display()))
}

/// `argv` with the file's values for `role` appended as flags, and the ids of those flags.
fn with_settings(
    mut argv: Vec<OsString>,
    words: &[String],
    role: &str,
    table: &toml::Table,
) -> anyhow::Result<(Vec<OsString>, BTreeSet<String>)> {
    let cli = Cli::command();
    let Some(command) = cli.find_subcommand(role) else { return Ok((argv, BTreeSet::new())) };
    // The role's own flags, and the global ones (`log-format`).
    let known = |key: &str| {
        let key = key.replace('_', "-");
        command.get_arguments().chain(cli.get_arguments()).find(|arg| arg.get_long() == Some(key.as_str())).cloned()
    };
    let any_role_knows = |key: &str| {
        let key = key.replace('_', "-");
        cli.get_subcommands().any(|c| c.get_arguments().any(|arg| arg.get_long() == Some(key.as_str())))
            || cli.get_arguments().any(|arg| arg.get_long() == Some(key.as_str()))
    };
    // The role's table beats the top level.
    let mut settings: Vec<(String, toml::Value)> = Vec::new();
    for (key, value) in table {
        if key == "config" {
            bail!("`config` names the file itself: it cannot be set in it");
        }
        match value {
            toml::Value::Table(_) if cli.find_subcommand(key).is_some() => {}
            toml::Value::Table(_) => bail!("[{key}] is not a role of glaux"),
            _ if !any_role_knows(key) => bail!("`{key}` is not a flag of any role"),
            _ if known(key).is_some() => settings.push((key.clone(), value.clone())),
            _ => {}
        }
    }
    if let Some(toml::Value::Table(own)) = table.get(role) {
        for (key, value) in own {
            if known(key).is_none() {
                bail!("[{role}] `{key}` is not a flag of glaux {role}");
            }
            settings.retain(|(k, _)| k.replace('_', "-") != key.replace('_', "-"));
            settings.push((key.clone(), value.clone()));
        }
    }
    let mut from_file = BTreeSet::new();
    for (key, value) in settings {
        let Some(arg) = known(&key) else { continue };
        let long = arg.get_long().unwrap_or_default().to_string();
        let given = words.iter().any(|w| w == &format!("--{long}") || w.starts_with(&format!("--{long}=")))
            || arg.get_short().is_some_and(|short| words.iter().any(|w| w == &format!("-{short}")));
        let in_environment = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some());
        if given || in_environment {
            continue;
        }
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for item in values {
            match (switch, item) {
                (true, toml::Value::Boolean(true)) => argv.push(format!("--{long}").into()),
                (true, toml::Value::Boolean(false)) => {}
                (true, other) => bail!("`{key}` is a switch: true or false, not {other}"),
                (false, toml::Value::String(text)) => argv.push(format!("--{long}={text}").into()),
                (false, toml::Value::Integer(n)) => argv.push(format!("--{long}={n}").into()),
                (false, toml::Value::Float(x)) => argv.push(format!("--{long}={x}").into()),
                (false, toml::Value::Boolean(b)) => argv.push(format!("--{long}={b}").into()),
                (false, other) => bail!("`{key}` takes a string or a number, not {other}"),
            }
        }
        from_file.insert(arg.get_id().to_string());
    }
    Ok((argv, from_file))
}

/// Whether a flag's value is a secret (never printed).
fn secret(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    ["secret", "password", "token"].iter().any(|word| id.contains(word)) && !id.ends_with("file")
}

/// Environment variables Glaux reads besides its flags', and whether each is a secret.
const ENVIRONMENT: [(&str, bool); 9] = [
    ("GLAUX_LOG", false),
    ("GLAUX_CLUSTER_SECRET", true),
    ("GLAUX_PASSWORD", true),
    ("GLAUX_STORAGE_CONFIG", false),
    ("AWS_ENDPOINT_URL", false),
    ("AWS_REGION", false),
    ("AWS_ACCESS_KEY_ID", true),
    ("AWS_SECRET_ACCESS_KEY", true),
    ("AWS_SESSION_TOKEN", true),
];

/// `glaux config show ROLE [FLAGS]`: the role's effective configuration, each value with where
/// it came from, secrets redacted.
pub(crate) fn show(config: Option<&std::path::Path>, role: &str, flags: &[String]) -> anyhow::Result<String> {
    let mut argv: Vec<OsString> = vec!["glaux".into()];
    if let Some(config) = config {
        let mut named = OsString::from("--config=");
        named.push(config);
        argv.push(named);
    }
    argv.push(role.into());
    argv.extend(flags.iter().map(OsString::from));
    let configured = apply(argv)?;
    let matches = Cli::command().try_get_matches_from(configured.argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some((_, own)) = matches.subcommand() else { bail!("no role given: glaux config show scheduler|executor|...") };
    let command = Cli::command();
    let Some(sub) = command.find_subcommand(role) else { bail!("`{role}` is not a role of glaux") };
    let file = configured.path.as_ref().map_or_else(|| "none".to_string(), |p| p.display().to_string());
    let mut out = format!(
        "# glaux {role}: the effective configuration (flags beat the environment, which beats the file)\n\
         # configuration file: {file}\n[{role}]\n"
    );
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
            continue;
        }
        let source = match own.value_source(id) {
            _ if configured.from_file.contains(id) => "file",
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::EnvVariable) => "environment",
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => {
                out.push_str(&format!("# {long} is not set\n"));
                continue;
            }
        };
        let values: Vec<String> =
            own.get_raw(id).map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let shown = if secret(id) {
            "\"<redacted>\"".to_string()
        } else if values.len() == 1 {
            toml::Value::String(values[0].clone()).to_string()
        } else {
            toml::Value::Array(values.into_iter().map(toml::Value::String).collect()).to_string()
        };
        out.push_str(&format!("{long} = {shown}  # {source}\n"));
    }
    out.push_str("# environment\n");
    for (name, is_secret) in ENVIRONMENT {
        match std::env::var(name) {
            Ok(_) if is_secret => out.push_str(&format!("# {name} is set (redacted)\n")),
            Ok(value) => out.push_str(&format!("# {name} = {}\n", toml::Value::String(value))),
            Err(_) => {}
        }
    }
    Ok(out)
}
