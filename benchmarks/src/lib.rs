//! Glaux benchmarks: TPC-H and TPC-DS data and queries, and the runner that times them on Glaux and on
//! single-process DataFusion side by side (`glaux bench`), plus the write experiments (`writes.rs`);
//! the TPC-H and TPC-DS system tests share the data.

mod parquet_out;
pub mod runner;
pub mod tpcds;
pub mod tpch;
pub mod writes;
