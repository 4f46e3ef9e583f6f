//! A Delta table's log as it changes under Glaux: commits by another program are read at once,
//! and a table deleted and created again at the same location is read from its new log (Glaux
//! keeps the latest snapshot it read and reads only the commits since).

use crate::delta::delta_rs;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_follow_the_log_through_outside_commits_and_a_new_table_at_the_same_location() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    let location = cluster.warehouse().join("again");
    let create = |values: &str| {
        format!(
            "CREATE TABLE again WITH (table_type = 'DELTA', location = '{}/') AS SELECT * FROM (VALUES {values}) \
             AS v(id, name, qty, day)",
            location.display()
        )
    };
    let all = "SELECT id, name, qty, day FROM again ORDER BY id";
    let first = create("(CAST(1 AS bigint), 'old', CAST(10 AS bigint), '2024-01-01')");
    assert_eq!(rows_of(&client.query(&first).await?.batches), ["1"]);
    assert_eq!(rows_of(&client.query(all).await?.batches), ["1 | old | 10 | 2024-01-01"]);

    // delta-rs commits version 1: the next read (within the listing cache's TTL) has its row.
    let written = delta_rs("append", &location.display().to_string(), None);
    assert_eq!(written.versions.keys().copied().collect::<Vec<_>>(), [1]);
    let expected = ["1 | old | 10 | 2024-01-01", "100 | ext | 1 | 2024-01-01"];
    assert_eq!(rows_of(&client.query(all).await?.batches), expected);

    // Dropped, its files deleted, and created again with versions 0 and 1 of its own.
    client.query("DROP TABLE again").await?;
    std::fs::remove_dir_all(&location)?;
    let second = create("(CAST(7 AS bigint), 'new', CAST(70 AS bigint), '2024-02-01')");
    assert_eq!(rows_of(&client.query(&second).await?.batches), ["1"]);
    client.query("INSERT INTO again VALUES (8, 'new', 80, '2024-02-02')").await?;
    let expected = ["7 | new | 70 | 2024-02-01", "8 | new | 80 | 2024-02-02"];
    assert_eq!(rows_of(&client.query(all).await?.batches), expected);
    let history = rows_of(&client.query("SELECT version, operation FROM \"again$history\" ORDER BY 1").await?.batches);
    assert_eq!(history, ["0 | CREATE TABLE", "1 | WRITE"]);
    Ok(())
}
