//! Glaux benchmarks: TPC-H data and queries, and the runner that times them on Glaux and on
//! single-process DataFusion side by side (`glaux bench`); the TPC-H system test shares the data.

pub mod runner;
pub mod tpch;
