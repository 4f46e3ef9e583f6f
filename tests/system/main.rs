//! System tests: real schedulers and executors on 127.0.0.1:0, talked to through real clients.
//!
//! One test binary for the whole system, because each one links all of DataFusion.

mod athena_ddl;
mod bad_input;
mod binary;
mod bucketing;
mod cancel;
mod catalog;
mod conformance;
mod delta;
mod delta_log;
mod delta_merge;
mod events;
mod flight_sql;
mod grants;
mod hardening;
mod harness;
mod hosts;
mod membership;
mod operations;
mod optimize;
mod partitions;
mod postgres;
mod pruning;
mod queries;
mod result_endpoints;
mod retries;
mod s3;
mod security;
mod tpcds;
mod tpch;
mod write_cancel;
mod writes;
