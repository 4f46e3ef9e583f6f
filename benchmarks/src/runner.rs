//! Runs a query set on a Glaux cluster and on single-process DataFusion over the same files, one
//! engine after the other for each query, and reports medians and their ratio.

use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use glaux_client::GlauxClient;
use serde::Serialize;

/// One query's runs on both engines.
#[derive(Debug, Serialize)]
pub struct QueryTiming {
    pub name: String,
    /// Timed runs, after the first.
    pub glaux_ms: Vec<f64>,
    pub datafusion_ms: Vec<f64>,
    /// Timed runs on Glaux with retry policy `task` (when asked for), beside the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub task_retry_ms: Vec<f64>,
    /// The first run of each engine: cold caches (executors' Parquet metadata, DataFusion's
    /// statistics and metadata caches), though the files may be in the OS page cache.
    pub glaux_first_ms: Option<f64>,
    pub datafusion_first_ms: Option<f64>,
    /// Rows Glaux returned; equal to DataFusion's unless `error` says otherwise.
    pub rows: usize,
    pub bytes_scanned: u64,
    pub error: Option<String>,
}

impl QueryTiming {
    pub fn glaux_median(&self) -> Option<f64> {
        median(&self.glaux_ms)
    }

    pub fn datafusion_median(&self) -> Option<f64> {
        median(&self.datafusion_ms)
    }
}

pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// The value below which `p` percent of the samples lie.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1))).copied()
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// Runs each `(name, sql)` `iterations` times on each engine (after one warm-up run each), and
/// checks that both return the same number of rows. With `task_retries`, Glaux also runs each
/// query with retry policy `task` right after its run with `query`.
pub async fn compare(
    client: &mut GlauxClient,
    reference: &SessionContext,
    queries: &[(String, String)],
    iterations: usize,
    task_retries: bool,
) -> Vec<QueryTiming> {
    let mut timings = Vec::new();
    for (name, sql) in queries {
        let mut timing = QueryTiming {
            name: name.clone(),
            glaux_ms: Vec::new(),
            datafusion_ms: Vec::new(),
            task_retry_ms: Vec::new(),
            glaux_first_ms: None,
            datafusion_first_ms: None,
            rows: 0,
            bytes_scanned: 0,
            error: None,
        };
        let mut datafusion_rows = 0;
        for run in 0..=iterations {
            if task_retries {
                client.set_header(glaux_client::RETRY_POLICY_HEADER, "task");
                let started = Instant::now();
                let task = client.query(sql).await;
                client.set_header(glaux_client::RETRY_POLICY_HEADER, "query");
                match task {
                    Ok(output) if output.rows() != timing.rows && run > 0 => {
                        timing.error = Some(format!("Glaux returned {} rows with task retries", output.rows()));
                        break;
                    }
                    Ok(_) if run > 0 => timing.task_retry_ms.push(ms(started.elapsed())),
                    Ok(_) => {}
                    Err(e) => {
                        timing.error = Some(format!("Glaux with task retries: {e}"));
                        break;
                    }
                }
            }
            let started = Instant::now();
            match client.query(sql).await {
                Ok(output) => {
                    match run {
                        0 => timing.glaux_first_ms = Some(ms(started.elapsed())),
                        _ => timing.glaux_ms.push(ms(started.elapsed())),
                    }
                    timing.rows = output.rows();
                    timing.bytes_scanned = output.stats.map_or(0, |s| s.scan.bytes_scanned);
                }
                Err(e) => {
                    timing.error = Some(format!("Glaux: {e}"));
                    break;
                }
            }
            let started = Instant::now();
            let result = match reference.sql(sql).await {
                Ok(df) => df.collect().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(batches) => {
                    match run {
                        0 => timing.datafusion_first_ms = Some(ms(started.elapsed())),
                        _ => timing.datafusion_ms.push(ms(started.elapsed())),
                    }
                    datafusion_rows = batches.iter().map(|b| b.num_rows()).sum();
                }
                Err(e) => {
                    timing.error = Some(format!("DataFusion: {e}"));
                    break;
                }
            }
        }
        if timing.error.is_none() && timing.rows != datafusion_rows {
            timing.error = Some(format!("Glaux returned {} rows, DataFusion {datafusion_rows}", timing.rows));
        }
        eprintln!(
            "{name}: glaux {} ms, datafusion {} ms{}",
            timing.glaux_median().map_or("-".into(), |m| format!("{m:.1}")),
            timing.datafusion_median().map_or("-".into(), |m| format!("{m:.1}")),
            timing.error.as_ref().map_or(String::new(), |e| format!(" ({e})"))
        );
        timings.push(timing);
    }
    timings
}

/// The per-query table (warm medians) with totals and the Glaux/DataFusion ratio, then the
/// totals of the first (cold) runs.
pub fn render(timings: &[QueryTiming]) -> String {
    let mut out = format!("{:<8} {:>12} {:>15} {:>7} {:>8}\n", "query", "glaux ms", "datafusion ms", "ratio", "rows");
    let (mut glaux_total, mut datafusion_total) = (0.0, 0.0);
    for t in timings {
        match (t.glaux_median(), t.datafusion_median(), &t.error) {
            (Some(g), Some(d), None) => {
                glaux_total += g;
                datafusion_total += d;
                out.push_str(&format!("{:<8} {g:>12.1} {d:>15.1} {:>7.2} {:>8}\n", t.name, g / d, t.rows));
            }
            (_, _, error) => {
                out.push_str(&format!("{:<8} failed: {}\n", t.name, error.as_deref().unwrap_or("no runs")));
            }
        }
    }
    let ratio = if datafusion_total > 0.0 { glaux_total / datafusion_total } else { f64::NAN };
    out.push_str(&format!("{:<8} {glaux_total:>12.1} {datafusion_total:>15.1} {ratio:>7.2}\n", "total"));
    let ok = timings.iter().filter(|t| t.error.is_none());
    let (glaux_cold, datafusion_cold) = ok
        .fold((0.0, 0.0), |(g, d), t| (g + t.glaux_first_ms.unwrap_or(0.0), d + t.datafusion_first_ms.unwrap_or(0.0)));
    let ratio = if datafusion_cold > 0.0 { glaux_cold / datafusion_cold } else { f64::NAN };
    out.push_str(&format!("{:<8} {glaux_cold:>12.1} {datafusion_cold:>15.1} {ratio:>7.2}\n", "cold"));
    if timings.iter().any(|t| !t.task_retry_ms.is_empty()) {
        out.push_str(&format!("\n{:<8} {:>12} {:>12} {:>11}\n", "query", "query ms", "task ms", "task/query"));
        let (mut query_total, mut task_total) = (0.0, 0.0);
        for t in timings.iter().filter(|t| t.error.is_none()) {
            if let (Some(q), Some(k)) = (t.glaux_median(), median(&t.task_retry_ms)) {
                (query_total, task_total) = (query_total + q, task_total + k);
                out.push_str(&format!("{:<8} {q:>12.1} {k:>12.1} {:>11.2}\n", t.name, k / q));
            }
        }
        let ratio = if query_total > 0.0 { task_total / query_total } else { f64::NAN };
        out.push_str(&format!("{:<8} {query_total:>12.1} {task_total:>12.1} {ratio:>11.2}\n", "total"));
    }
    out
}

/// Round trips of `sql` through Flight SQL: `(p50, p99)` in milliseconds.
pub async fn latency(client: &mut GlauxClient, sql: &str, iterations: usize) -> Result<(f64, f64), String> {
    client.query(sql).await.map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        client.query(sql).await.map_err(|e| e.to_string())?;
        samples.push(ms(started.elapsed()));
    }
    Ok((percentile(&samples, 50.0).unwrap_or(f64::NAN), percentile(&samples, 99.0).unwrap_or(f64::NAN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
    }
}
