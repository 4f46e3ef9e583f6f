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

/// Three executor processes for a scheduler, and one killed at a chosen moment of a query.
struct Cluster {
    addr: String,
    warehouse: String,
    executors: Vec<(Child, String)>,
    client: glaux_client::GlauxClient,
    killed: usize,
}

impl Cluster {
    /// Runs `timing` (alike to `sql`) to time it, then `sql` with one executor killed `fraction`
    /// of that time in; a new executor takes the killed one's place afterwards. Returns the
    /// output (or error) of `sql`, the executor killed and when.
    async fn run_killed(
        &mut self,
        timing: &str,
        sql: &str,
        fraction: f64,
    ) -> Result<
        (Result<glaux_client::QueryOutput, glaux_client::ClientError>, String, Duration),
        Box<dyn std::error::Error>,
    > {
        wait_for_tasks(&mut self.client, "SELECT sum(l_quantity) FROM lineitem", 3).await?;
        let started = Instant::now();
        self.client.query(timing).await?;
        let delay = started.elapsed().mul_f64(fraction);
        let (mut victim, lost) = self.executors.remove(self.killed % self.executors.len());
        self.killed += 1;
        let (output, killed) = tokio::join!(self.client.query(sql), async {
            tokio::time::sleep(delay).await;
            victim.kill().await
        });
        killed?;
        self.executors.push(executor(&self.addr, &self.warehouse).await);
        Ok((output, lost, delay))
    }
}

/// Each of TPC-H's 22 queries on three executor processes, one of them killed at a different
/// moment of the query (from 10% to 90% of its time: while stages run, while the final gather
/// reads): every query returns DataFusion's rows, whatever it lost and when. Then a large result
/// read while an executor dies arrives with every row exactly once, and a `CREATE TABLE AS` whose
/// executor dies commits its rows exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_retry_policy_survives_an_executor_killed_in_every_tpch_query() -> TestResult {
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
    let (mut report, mut failures, mut rerun_queries) = (Vec::new(), Vec::new(), 0);
    for (i, sql) in tpch::QUERIES.iter().enumerate() {
        let expected = rows_of(&reference.sql(sql).await?.collect().await?);
        let fraction = 0.1 + (i as f64 * 0.37) % 0.8;
        let (output, lost, delay) = cluster.run_killed(sql, sql, fraction).await?;
        match output {
            Ok(output) if rows_of(&output.batches) == expected => {
                let reruns = output.stats.as_ref().map_or(0, |s| s.tasks_rerun);
                rerun_queries += usize::from(reruns > 0);
                report.push(format!("Q{}: {lost} killed after {delay:?}: {reruns} tasks ran again", i + 1));
            }
            Ok(output) => failures.push(format!(
                "Q{}: {} rows differ from DataFusion's {} (killed after {delay:?})",
                i + 1,
                output.rows(),
                expected.len()
            )),
            Err(error) => failures.push(format!("Q{} (killed after {delay:?}): {error}", i + 1)),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{} of 22 queries failed:\n{}", failures.len(), failures.join("\n"));
    // Most kills land while the query still needs the killed executor's work.
    assert!(rerun_queries >= 11, "only {rerun_queries} of 22 queries ran tasks again:\n{}", report.join("\n"));

    // A result of 60,000 rows read while an executor dies: every row once.
    let sql = "SELECT l_orderkey, l_linenumber, l_quantity FROM lineitem";
    let mut expected = rows_of(&reference.sql(sql).await?.collect().await?);
    expected.sort();
    let (output, lost, delay) = cluster.run_killed(sql, sql, 0.5).await?;
    let mut rows = rows_of(&output?.batches);
    rows.sort();
    assert_eq!(rows.len(), expected.len(), "{lost} killed after {delay:?}");
    assert!(rows == expected, "every row exactly once ({lost} killed after {delay:?})");

    // A CTAS whose executor dies commits exactly once: the table holds each row once.
    let ctas = |name: &str| {
        format!(
            "CREATE TABLE {name} WITH (format = 'PARQUET', external_location = '{}/{name}/') AS \
             SELECT l_orderkey, l_linenumber, l_quantity FROM lineitem",
            cluster.warehouse
        )
    };
    let (timing, copy) = (ctas("timing_copy"), ctas("lineitem_copy"));
    let (output, lost, delay) = cluster.run_killed(&timing, &copy, 0.5).await?;
    output?;
    let mut rows = rows_of(&cluster.client.query("SELECT * FROM lineitem_copy").await?.batches);
    rows.sort();
    assert!(rows == expected, "the written table holds every row once ({lost} killed after {delay:?})");
    Ok(())
}
