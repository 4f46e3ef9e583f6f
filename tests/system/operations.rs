//! Operating the real `glaux` binary: its configuration file and its logs.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::binary::{GLAUX, shell, spawn_until};
use crate::harness::*;

/// One configuration file for every role: top-level keys for all, a table per role; flags beat
/// the environment, which beats the file; `glaux config show` says where each value came from and
/// prints no secret; unknown keys are refused; with `log-format = "json"` every line of a
/// statement (its planning and its audit line) carries its query id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configuration_file_sets_any_flag_below_the_environment_and_flags() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lake = write_lake(dir.path());
    let warehouse = dir.path().display().to_string();
    let config = dir.path().join("glaux.toml");
    std::fs::write(
        &config,
        format!(
            "warehouse = \"{warehouse}\"\nlog-format = \"json\"\n\n[scheduler]\nflight-sql-addr = \"127.0.0.1:0\"\n\
             http-addr = \"127.0.0.1:0\"\npostgres-addr = \"127.0.0.1:1\"\nusers = \"/from/the/file\"\n\n\
             [executor]\ntask-slots = 3\n"
        ),
    )?;
    let config_arg = config.display().to_string();
    let secret = "0123456789abcdef0123456789abcdef";
    let shown = Command::new(GLAUX)
        .args(["--config", &config_arg, "config", "show", "scheduler", "--postgres-addr", "127.0.0.1:7"])
        .env("GLAUX_USERS_FILE", "/from/the/environment")
        .env("GLAUX_CLUSTER_SECRET", secret)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}\n{}", String::from_utf8_lossy(&shown.stderr));
    for line in [
        "http-addr = \"127.0.0.1:0\"  # file",
        "postgres-addr = \"127.0.0.1:7\"  # flag",
        "users = \"/from/the/environment\"  # environment",
        &format!("warehouse = \"{warehouse}\"  # file"),
        "max-connections = \"1024\"  # default",
        "# GLAUX_CLUSTER_SECRET is set (redacted)",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains(secret), "{text}");
    let executor =
        Command::new(GLAUX).args(["config", "show", "executor"]).env("GLAUX_CONFIG", &config_arg).output().await?;
    let text = String::from_utf8_lossy(&executor.stdout);
    assert!(text.lines().any(|l| l == "task-slots = \"3\"  # file"), "{text}");

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[scheduler]\nhttp-adr = \"127.0.0.1:0\"\n")?;
    let refused = Command::new(GLAUX).args(["scheduler", "--config", &typo.display().to_string()]).output().await?;
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && error.contains("`http-adr` is not a flag of glaux scheduler"), "{error}");

    // A file starts a real scheduler (its ports, its JSON logs); the flag beats the file's port.
    let run = dir.path().join("run.toml");
    let text = std::fs::read_to_string(&config)?.replace("users = \"/from/the/file\"\n", "");
    std::fs::write(&run, text)?;
    let log = dir.path().join("scheduler.log");
    let mut scheduler = Command::new(GLAUX)
        .args(["scheduler", "--config", &run.display().to_string(), "--postgres-addr", "127.0.0.1:0"])
        .env("GLAUX_CLUSTER_SECRET", secret)
        .env("GLAUX_LOG", "info,glaux_scheduler=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(scheduler.stdout.take().ok_or("stdout")?).lines();
    let (mut flight, mut http) = (None, None);
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await?? {
        if let Some(rest) = line.split("Athena API on ").nth(1) {
            http = Some(rest.trim_end_matches('.').to_string());
        }
        if let Some(rest) = line.split("Flight SQL on ").nth(1) {
            flight = rest.split_whitespace().next().map(String::from);
            break;
        }
    }
    assert!(http.is_some_and(|h| h.starts_with("http://127.0.0.1:")), "the file's http-addr");
    let flight = flight.ok_or("no Flight SQL address")?;
    let run_arg = run.display().to_string();
    let (_executor, _) = spawn_until(
        &["executor", "--config", &run_arg, "--scheduler", &flight],
        &[("GLAUX_CLUSTER_SECRET", secret)],
        "serving on ",
    )
    .await;
    let ddl = lake_ddl(&format!("{}/", lake.display())).join(";\n");
    let output = shell(&flight, &ddl).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut answered = false;
    for _ in 0..50 {
        if shell(&flight, "SELECT count(*) FROM sales").await.status.success() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the executor the file configured answers");
    scheduler.kill().await?;
    let logged = std::fs::read_to_string(&log)?;
    let lines: Vec<serde_json::Value> = logged.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let audit = lines
        .iter()
        .rfind(|l| l["target"] == "glaux::audit" && l["fields"]["statement"] == "query")
        .ok_or(format!("no audit line of the query in:\n{logged}"))?;
    let id = audit["fields"]["query_id"].as_str().ok_or("the audit line has no query id")?;
    assert_eq!(id.len(), 36, "{id}");
    let planned = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "statement planned")
        .filter_map(|l| l["span"]["query_id"].as_str())
        .collect::<Vec<_>>();
    assert!(planned.contains(&id), "the planning line of {id} carries it: {planned:?}");
    Ok(())
}
