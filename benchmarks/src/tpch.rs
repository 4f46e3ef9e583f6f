//! TPC-H: the eight tables generated as Parquet by `tpchgen` (no downloads), and the 22 queries
//! with the specification's validation parameters. Where a query's `ORDER BY` leaves ties that a
//! `LIMIT` cuts through, a key is added to the ordering so results compare exactly.

use std::path::Path;

pub use crate::parquet_out::GenerateError;
use crate::parquet_out::write;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

pub const TABLES: [&str; 8] = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"];

/// The 22 queries, `QUERIES[0]` being Q1.
pub const QUERIES: [&str; 22] = [
    include_str!("../queries/tpch/q1.sql"),
    include_str!("../queries/tpch/q2.sql"),
    include_str!("../queries/tpch/q3.sql"),
    include_str!("../queries/tpch/q4.sql"),
    include_str!("../queries/tpch/q5.sql"),
    include_str!("../queries/tpch/q6.sql"),
    include_str!("../queries/tpch/q7.sql"),
    include_str!("../queries/tpch/q8.sql"),
    include_str!("../queries/tpch/q9.sql"),
    include_str!("../queries/tpch/q10.sql"),
    include_str!("../queries/tpch/q11.sql"),
    include_str!("../queries/tpch/q12.sql"),
    include_str!("../queries/tpch/q13.sql"),
    include_str!("../queries/tpch/q14.sql"),
    include_str!("../queries/tpch/q15.sql"),
    include_str!("../queries/tpch/q16.sql"),
    include_str!("../queries/tpch/q17.sql"),
    include_str!("../queries/tpch/q18.sql"),
    include_str!("../queries/tpch/q19.sql"),
    include_str!("../queries/tpch/q20.sql"),
    include_str!("../queries/tpch/q21.sql"),
    include_str!("../queries/tpch/q22.sql"),
];

/// Generates TPC-H at `scale_factor` under `dir`, one directory per table. The six scaled tables
/// are written in `parts` files each (so scans have files to spread), nation and region in one.
pub fn generate(dir: &Path, scale_factor: f64, parts: i32) -> Result<(), GenerateError> {
    write(dir, "nation", 1, NationArrow::new(NationGenerator::new(scale_factor, 1, 1)))?;
    write(dir, "region", 1, RegionArrow::new(RegionGenerator::new(scale_factor, 1, 1)))?;
    for part in 1..=parts {
        write(dir, "part", part, PartArrow::new(PartGenerator::new(scale_factor, part, parts)))?;
        write(dir, "supplier", part, SupplierArrow::new(SupplierGenerator::new(scale_factor, part, parts)))?;
        write(dir, "partsupp", part, PartSuppArrow::new(PartSuppGenerator::new(scale_factor, part, parts)))?;
        write(dir, "customer", part, CustomerArrow::new(CustomerGenerator::new(scale_factor, part, parts)))?;
        write(dir, "orders", part, OrderArrow::new(OrderGenerator::new(scale_factor, part, parts)))?;
        write(dir, "lineitem", part, LineItemArrow::new(LineItemGenerator::new(scale_factor, part, parts)))?;
    }
    Ok(())
}

/// `CREATE EXTERNAL TABLE` for every table under `location` (a path or URL ending in '/').
pub fn ddl(location: &str) -> Vec<String> {
    TABLES.iter().map(|t| format!("CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{location}{t}/'")).collect()
}
