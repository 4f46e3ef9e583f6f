//! Retry policy `task`: executors as real processes, one killed (SIGKILL) while a query runs, and
//! the query completes with single-node DataFusion's rows.

use std::time::{Duration, Instant};

use glaux_bench::tpch;
use tokio::process::Child;

use crate::binary::spawn_until;
use crate::harness::*;

const SECRET: [(&str, &str); 1] = [("GLAUX_CLUSTER_SECRET", "a1b2c3d4e5f60718293a4b5c6d7e8f90")];

async fn executor(scheduler: &str, warehouse: &str) -> (Child, String) {
    let args = ["executor", "--scheduler", scheduler, "--warehouse", warehouse, "--task-slots", "1"];
    spawn_until(&args, &SECRET, "serving on ").await
}

/// Waits until a query over `probe` runs at least `tasks` tasks: the executors have joined.
async fn wait_for_tasks(client: &mut glaux_client::GlauxClient, probe: &str, tasks: u64) -> TestResult {
    let mut ran = 0;
    for _ in 0..200 {
        ran = client.query(probe).await?.stats.map_or(0, |s| s.tasks);
        if ran >= tasks {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the executors did not join: '{probe}' ran {ran} tasks, not {tasks}").into())
}

/// When in a query an executor died, as the query's progress showed it at the kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The first stages run: no task's output has been read whole.
    BeforeAnyOutput,
    /// Some outputs were read whole; stages below the final gather still run.
    BetweenStages,
    /// Every stage below the final gather is done: the scheduler reads the last stages' outputs.
    FinalGather,
    /// The client has the first rows, and more are coming.
    MidStream,
    /// The statement ended before the kill (its executor is killed afterwards all the same).
    Ended,
}

impl Phase {
    fn of(progress: &glaux_client::QueryProgress, gathered: u64) -> Self {
        if progress.rows > 0 {
            Phase::MidStream
        } else if progress.tasks_done == 0 {
            Phase::BeforeAnyOutput
        } else if progress.tasks_done + gathered >= progress.tasks {
            Phase::FinalGather
        } else {
            Phase::BetweenStages
        }
    }
}

/// When to kill.
#[derive(Clone, Copy, Debug)]
enum Aim {
    /// This share of the time the statement took alone.
    At(f64),
    /// As soon as its progress shows this phase.
    In(Phase),
}

/// How a statement with killed executors went.
struct Killed {
    output: Result<glaux_client::QueryOutput, glaux_client::ClientError>,
    lost: Vec<String>,
    phase: Phase,
    /// From submitting to the kill, and from the kill to the statement's end.
    after: Duration,
    ended_after: Duration,
}

/// Tasks of the stages the scheduler gathers (`EXPLAIN`'s stages right under stage 0).
async fn gathered_tasks(client: &mut glaux_client::GlauxClient, sql: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let plan = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    let tasks = plan
        .lines()
        .filter_map(|line| line.strip_prefix("  Stage "))
        .filter_map(|header| header.split(", ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    if tasks == 0 {
        return Err(format!("no gathered stage in the plan of {sql}:\n{plan}").into());
    }
    Ok(tasks)
}

/// Three executor processes for a scheduler, and some killed at a chosen moment of a statement.
struct Cluster {
    addr: String,
    warehouse: String,
    executors: Vec<(Child, String)>,
    client: glaux_client::GlauxClient,
    killed: usize,
}

impl Cluster {
    /// Runs `timing` (alike to `sql`) to time it, then `sql` with `victims` executors killed at
    /// `aim`; new executors take the killed ones' places afterwards. Statements that `EXPLAIN`
    /// cannot show (writes) are aimed at a share of their time.
    async fn run_killed(
        &mut self,
        timing: &str,
        sql: &str,
        aim: Aim,
        victims: usize,
    ) -> Result<Killed, Box<dyn std::error::Error>> {
        wait_for_tasks(&mut self.client, "SELECT sum(l_quantity) FROM lineitem", 3).await?;
        let started = Instant::now();
        self.client.query(timing).await?;
        let took = started.elapsed();
        let gathered = match aim {
            Aim::In(_) => gathered_tasks(&mut self.client, sql).await?,
            Aim::At(_) => 0,
        };
        let mut dying = Vec::new();
        for _ in 0..victims {
            dying.push(self.executors.remove(self.killed % self.executors.len()));
            self.killed += 1;
        }
        let info = self.client.submit(sql).await?;
        let mut reader = self.client.clone();
        let collect = reader.collect(&info);
        tokio::pin!(collect);
        let started = Instant::now();
        let mut phase = Phase::Ended;
        let mut ended = None;
        while ended.is_none() {
            let poll = async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.client.progress(&info).await
            };
            tokio::select! {
                output = &mut collect => ended = Some(output),
                progress = poll => {
                    let Some(progress) = progress? else { continue };
                    let now = Phase::of(&progress, gathered);
                    let due = match aim {
                        Aim::At(share) => started.elapsed() >= took.mul_f64(share),
                        Aim::In(wanted) => now == wanted,
                    };
                    if due {
                        phase = now;
                        break;
                    }
                }
            }
        }
        let after = started.elapsed();
        for (victim, _) in &mut dying {
            victim.start_kill()?;
        }
        let killed_at = Instant::now();
        let output = match ended {
            Some(output) => output,
            None => collect.await,
        };
        let ended_after = killed_at.elapsed();
        let mut lost = Vec::new();
        for (mut victim, addr) in dying {
            victim.wait().await?;
            lost.push(addr);
            self.executors.push(executor(&self.addr, &self.warehouse).await);
        }
        Ok(Killed { output, lost, phase, after, ended_after })
    }
}

/// Each of TPC-H's 22 queries on three executor processes, one of them killed: every other query
/// at a share of its time (10% to 90%), the others as their final gather starts (every stage
/// below it done). Every query returns DataFusion's rows, whatever it lost and when. Then a large
/// result whose executor dies after its first rows reached the client arrives with every row
/// exactly once; a `CREATE TABLE AS` and an `INSERT` whose executor dies commit exactly once; a
/// query that loses two executors at once finishes on the third; and one that loses all three
/// fails soon, naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_retry_policy_survives_executors_killed_in_every_tpch_query() -> TestResult {
    let data = tempfile::tempdir()?;
    tpch::generate(data.path(), 0.01, 3)?;
    let ddl = tpch::ddl(&format!("{}/", data.path().display()));
    let reference = datafusion::prelude::SessionContext::new();
    for statement in &ddl {
        reference.sql(statement).await?.collect().await?;
    }
    let warehouse = data.path().display().to_string();
    let (_scheduler, addr) = spawn_until(
        &["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse, "--retry-policy", "task"],
        &SECRET,
        "Flight SQL on ",
    )
    .await;
    let mut executors = Vec::new();
    for _ in 0..3 {
        executors.push(executor(&addr, &warehouse).await);
    }
    let mut client = glaux_client::GlauxClient::connect(&addr).await?;
    for statement in &ddl {
        client.query(statement).await?;
    }
    let mut cluster = Cluster { addr, warehouse, executors, client, killed: 0 };
    let (mut report, mut failures, mut rerun_queries, mut phases) = (Vec::new(), Vec::new(), 0, Vec::new());
    for (i, sql) in tpch::QUERIES.iter().enumerate() {
        let expected = rows_of(&reference.sql(sql).await?.collect().await?);
        let aim = if i % 2 == 0 { Aim::At(0.1 + (i as f64 * 0.37) % 0.8) } else { Aim::In(Phase::FinalGather) };
        let Killed { output, lost, phase, after, .. } = cluster.run_killed(sql, sql, aim, 1).await?;
        let what = format!("Q{}: {lost:?} killed after {after:?}, aimed {aim:?}, {phase:?}", i + 1);
        phases.push(phase);
        match output {
            Ok(output) if rows_of(&output.batches) == expected => {
                let reruns = output.stats.as_ref().map_or(0, |s| s.tasks_rerun);
                rerun_queries += usize::from(reruns > 0);
                report.push(format!("{what}: {reruns} tasks ran again"));
            }
            Ok(output) => {
                failures.push(format!("{what}: {} rows differ from DataFusion's {}", output.rows(), expected.len()))
            }
            Err(error) => failures.push(format!("{what}: {error}")),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{} of 22 queries failed:\n{}", failures.len(), failures.join("\n"));
    // Most kills land while the query still needs the killed executor's work, in every phase.
    assert!(rerun_queries >= 11, "only {rerun_queries} of 22 queries ran tasks again:\n{}", report.join("\n"));
    let count = |wanted: Phase| phases.iter().filter(|p| **p == wanted).count();
    assert!(count(Phase::FinalGather) >= 6, "few kills in the final gather:\n{}", report.join("\n"));
    assert!(count(Phase::BeforeAnyOutput) >= 2, "few kills before any output:\n{}", report.join("\n"));

    // 300,000 rows, an executor killed once the first reached the client: every row once.
    let sql = "SELECT l_orderkey, l_linenumber, l_quantity, n_nationkey FROM lineitem CROSS JOIN nation \
               WHERE n_nationkey < 5";
    let mut expected = rows_of(&reference.sql(sql).await?.collect().await?);
    expected.sort();
    let Killed { output, lost, phase, after, .. } = cluster.run_killed(sql, sql, Aim::In(Phase::MidStream), 1).await?;
    let what = format!("{lost:?} killed after {after:?} ({phase:?})");
    assert_eq!(phase, Phase::MidStream, "{what}");
    let mut rows = rows_of(&output?.batches);
    rows.sort();
    assert_eq!(rows.len(), expected.len(), "{what}");
    assert!(rows == expected, "every row exactly once ({what})");

    // A CTAS, then an INSERT, whose executor dies commits exactly once: the table holds each row once.
    let warehouse = cluster.warehouse.clone();
    let write = |verb: &str, name: &str, filter: &str| {
        let select = format!("SELECT l_orderkey, l_linenumber, l_quantity FROM lineitem {filter}");
        match verb {
            "CREATE" => format!(
                "CREATE TABLE {name} WITH (format = 'PARQUET', external_location = '{warehouse}/{name}/') AS {select}"
            ),
            _ => format!("INSERT INTO {name} {select}"),
        }
    };
    let select = "SELECT l_orderkey, l_linenumber, l_quantity FROM lineitem";
    let mut expected = rows_of(&reference.sql(select).await?.collect().await?);
    let (timing, copy) = (write("CREATE", "timing_copy", ""), write("CREATE", "lineitem_copy", ""));
    let Killed { output, lost, after, .. } = cluster.run_killed(&timing, &copy, Aim::At(0.5), 1).await?;
    output?;
    let mut rows = rows_of(&cluster.client.query("SELECT * FROM lineitem_copy").await?.batches);
    rows.sort();
    expected.sort();
    assert!(rows == expected, "the written table holds every row once ({lost:?} killed after {after:?})");
    let filter = "WHERE l_linenumber <= 2";
    let (timing, insert) = (write("INSERT", "timing_copy", filter), write("INSERT", "lineitem_copy", filter));
    let Killed { output, lost, after, .. } = cluster.run_killed(&timing, &insert, Aim::At(0.5), 1).await?;
    output?;
    expected.extend(rows_of(&reference.sql(&format!("{select} {filter}")).await?.collect().await?));
    expected.sort();
    let mut rows = rows_of(&cluster.client.query("SELECT * FROM lineitem_copy").await?.batches);
    rows.sort();
    assert_eq!(rows.len(), expected.len(), "{lost:?} killed after {after:?}");
    assert!(rows == expected, "the inserted rows are there once ({lost:?} killed after {after:?})");

    // Two executors lost at once: the repair that finds the second gone while re-running tasks
    // on it starts over on the third.
    let sql = tpch::QUERIES[8];
    let expected = rows_of(&reference.sql(sql).await?.collect().await?);
    let Killed { output, lost, phase, after, .. } = cluster.run_killed(sql, sql, Aim::At(0.4), 2).await?;
    let output = output.map_err(|e| format!("{lost:?} killed after {after:?} ({phase:?}): {e}"))?;
    assert!(rows_of(&output.batches) == expected, "Q9 with {lost:?} killed after {after:?}");
    let reruns = output.stats.as_ref().map_or(0, |s| s.tasks_rerun);
    eprintln!("Q9: {lost:?} killed after {after:?} ({phase:?}): {reruns} tasks ran again");

    // All three lost: the query fails within 10 s, naming them.
    let Killed { output, lost, phase, after, ended_after } =
        cluster.run_killed(sql, sql, Aim::In(Phase::BetweenStages), 3).await?;
    let what = format!("{lost:?} killed after {after:?} ({phase:?}), ended {ended_after:?} later");
    let error = output.err().ok_or_else(|| format!("a query without executors succeeded: {what}"))?.to_string();
    assert!(ended_after < Duration::from_secs(10), "{what}: {error}");
    assert!(lost.iter().all(|executor| error.contains(executor.as_str())), "{what}: {error}");
    Ok(())
}
