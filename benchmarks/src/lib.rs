//! Glaux benchmarks: TPC-H data and queries, shared by the `glaux-bench` runner and the TPC-H
//! correctness test.

pub mod tpch;
