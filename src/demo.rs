//! The demo lake: an events data lake generated on first use.
//!
//! Layout, as Firehose + Glue users know it: `events/name=<event>/d=<yyyy-mm-dd>/*.parquet` with
//! columns `tstamp` (timestamp), `payload` (a JSON string) and `payload_md5`, holding 100,000 user
//! sessions over June 2023 of `anonymous_visited`, `account_created` and `measurement_recorded`.
//! It is generated with DataFusion's `COPY ... PARTITIONED BY`, deterministically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use datafusion::prelude::SessionContext;

const SESSIONS: u32 = 100_000;

/// The generating query: each session visits, some create an account, most record measurements.
fn events_sql(sessions: u32) -> String {
    format!(
        r#"
SELECT name, d, tstamp, payload, md5(payload) AS payload_md5
FROM (
  SELECT
    CASE
      WHEN k = 0 THEN 'anonymous_visited'
      WHEN k = 1 AND sid % 3 = 0 THEN 'account_created'
      ELSE 'measurement_recorded'
    END AS name,
    to_char(ts, '%Y-%m-%d') AS d,
    ts AS tstamp,
    '{{"session_id": "s' || sid || '", "dvce_os": "' ||
      CASE sid % 4 WHEN 0 THEN 'iOS' WHEN 1 THEN 'Android' WHEN 2 THEN 'Windows' ELSE 'macOS' END ||
      '", "event_index": ' || k || ', "value": ' || CAST(((sid * 7919 + k * 104729) % 1000) / 10.0 AS VARCHAR) || '}}' AS payload
  FROM (
    SELECT s.value AS sid, g.value AS k,
           CAST(to_timestamp(1685577600 + ((s.value - 1) * 2588400 / {sessions}) + g.value * 97) AS TIMESTAMP) AS ts
    FROM generate_series(1, {sessions}) AS s
    CROSS JOIN generate_series(0, 4) AS g
    WHERE g.value <= s.value % 5
  )
)
"#
    )
}

/// Returns the events table's directory, generating it first if it is missing.
pub async fn ensure_demo_lake(warehouse: &Path) -> anyhow::Result<PathBuf> {
    let lake = warehouse.join("demo").join("events");
    let complete = warehouse.join("demo").join(".events-complete");
    if complete.exists() && lake.exists() {
        return Ok(lake);
    }
    eprintln!("Generating the demo events lake in {} (once) ...", lake.display());
    let staging = warehouse.join("demo").join(".events-staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).context("clearing an interrupted generation")?;
    }
    std::fs::create_dir_all(&staging)?;
    let ctx = SessionContext::new();
    let copy = format!(
        "COPY ({}) TO '{}/' STORED AS PARQUET PARTITIONED BY (name, d)",
        events_sql(SESSIONS),
        staging.display()
    );
    ctx.sql(&copy).await?.collect().await.context("generating the demo lake")?;
    if lake.exists() {
        std::fs::remove_dir_all(&lake)?;
    }
    std::fs::rename(&staging, &lake)?;
    std::fs::write(complete, b"")?;
    Ok(lake)
}

/// The DDL that declares the demo table over `lake`.
pub fn create_table_sql(lake: &Path) -> String {
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS events (tstamp TIMESTAMP, payload VARCHAR, payload_md5 VARCHAR, \
         name VARCHAR, d VARCHAR) STORED AS PARQUET PARTITIONED BY (name, d) LOCATION '{}/'",
        lake.display()
    )
}

pub const EXAMPLES: &str = "\
Try:
  SELECT name, count(*) FROM events GROUP BY name ORDER BY 2 DESC;
  SELECT d, count(*) FROM events WHERE name = 'account_created' AND d >= '2023-06-20' GROUP BY d ORDER BY d;
  EXPLAIN SELECT count(*) FROM events WHERE name = 'anonymous_visited';";
