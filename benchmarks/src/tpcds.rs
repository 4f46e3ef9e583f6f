//! TPC-DS: the 24 tables generated as Parquet by `tpcdsgen` (no downloads; one file per table),
//! and the 99 queries with the specification's qualification parameters, as DuckDB's `tpcds`
//! extension ships them (`tpcds_queries()`, MIT), adapted where DataFusion's SQL differs (see
//! `benchmarks/queries/tpcds/README.md`).

use std::path::Path;

use tpcdsgen::config::{Session, SessionBuilder};
use tpcdsgen_arrow::*;

pub use crate::parquet_out::GenerateError;
use crate::parquet_out::write;

pub const TABLES: [&str; 24] = [
    "call_center",
    "catalog_page",
    "catalog_returns",
    "catalog_sales",
    "customer",
    "customer_address",
    "customer_demographics",
    "date_dim",
    "household_demographics",
    "income_band",
    "inventory",
    "item",
    "promotion",
    "reason",
    "ship_mode",
    "store",
    "store_returns",
    "store_sales",
    "time_dim",
    "warehouse",
    "web_page",
    "web_returns",
    "web_sales",
    "web_site",
];

/// The 99 queries, `QUERIES[0]` being Q1.
pub const QUERIES: [&str; 99] = [
    include_str!("../queries/tpcds/q1.sql"),
    include_str!("../queries/tpcds/q2.sql"),
    include_str!("../queries/tpcds/q3.sql"),
    include_str!("../queries/tpcds/q4.sql"),
    include_str!("../queries/tpcds/q5.sql"),
    include_str!("../queries/tpcds/q6.sql"),
    include_str!("../queries/tpcds/q7.sql"),
    include_str!("../queries/tpcds/q8.sql"),
    include_str!("../queries/tpcds/q9.sql"),
    include_str!("../queries/tpcds/q10.sql"),
    include_str!("../queries/tpcds/q11.sql"),
    include_str!("../queries/tpcds/q12.sql"),
    include_str!("../queries/tpcds/q13.sql"),
    include_str!("../queries/tpcds/q14.sql"),
    include_str!("../queries/tpcds/q15.sql"),
    include_str!("../queries/tpcds/q16.sql"),
    include_str!("../queries/tpcds/q17.sql"),
    include_str!("../queries/tpcds/q18.sql"),
    include_str!("../queries/tpcds/q19.sql"),
    include_str!("../queries/tpcds/q20.sql"),
    include_str!("../queries/tpcds/q21.sql"),
    include_str!("../queries/tpcds/q22.sql"),
    include_str!("../queries/tpcds/q23.sql"),
    include_str!("../queries/tpcds/q24.sql"),
    include_str!("../queries/tpcds/q25.sql"),
    include_str!("../queries/tpcds/q26.sql"),
    include_str!("../queries/tpcds/q27.sql"),
    include_str!("../queries/tpcds/q28.sql"),
    include_str!("../queries/tpcds/q29.sql"),
    include_str!("../queries/tpcds/q30.sql"),
    include_str!("../queries/tpcds/q31.sql"),
    include_str!("../queries/tpcds/q32.sql"),
    include_str!("../queries/tpcds/q33.sql"),
    include_str!("../queries/tpcds/q34.sql"),
    include_str!("../queries/tpcds/q35.sql"),
    include_str!("../queries/tpcds/q36.sql"),
    include_str!("../queries/tpcds/q37.sql"),
    include_str!("../queries/tpcds/q38.sql"),
    include_str!("../queries/tpcds/q39.sql"),
    include_str!("../queries/tpcds/q40.sql"),
    include_str!("../queries/tpcds/q41.sql"),
    include_str!("../queries/tpcds/q42.sql"),
    include_str!("../queries/tpcds/q43.sql"),
    include_str!("../queries/tpcds/q44.sql"),
    include_str!("../queries/tpcds/q45.sql"),
    include_str!("../queries/tpcds/q46.sql"),
    include_str!("../queries/tpcds/q47.sql"),
    include_str!("../queries/tpcds/q48.sql"),
    include_str!("../queries/tpcds/q49.sql"),
    include_str!("../queries/tpcds/q50.sql"),
    include_str!("../queries/tpcds/q51.sql"),
    include_str!("../queries/tpcds/q52.sql"),
    include_str!("../queries/tpcds/q53.sql"),
    include_str!("../queries/tpcds/q54.sql"),
    include_str!("../queries/tpcds/q55.sql"),
    include_str!("../queries/tpcds/q56.sql"),
    include_str!("../queries/tpcds/q57.sql"),
    include_str!("../queries/tpcds/q58.sql"),
    include_str!("../queries/tpcds/q59.sql"),
    include_str!("../queries/tpcds/q60.sql"),
    include_str!("../queries/tpcds/q61.sql"),
    include_str!("../queries/tpcds/q62.sql"),
    include_str!("../queries/tpcds/q63.sql"),
    include_str!("../queries/tpcds/q64.sql"),
    include_str!("../queries/tpcds/q65.sql"),
    include_str!("../queries/tpcds/q66.sql"),
    include_str!("../queries/tpcds/q67.sql"),
    include_str!("../queries/tpcds/q68.sql"),
    include_str!("../queries/tpcds/q69.sql"),
    include_str!("../queries/tpcds/q70.sql"),
    include_str!("../queries/tpcds/q71.sql"),
    include_str!("../queries/tpcds/q72.sql"),
    include_str!("../queries/tpcds/q73.sql"),
    include_str!("../queries/tpcds/q74.sql"),
    include_str!("../queries/tpcds/q75.sql"),
    include_str!("../queries/tpcds/q76.sql"),
    include_str!("../queries/tpcds/q77.sql"),
    include_str!("../queries/tpcds/q78.sql"),
    include_str!("../queries/tpcds/q79.sql"),
    include_str!("../queries/tpcds/q80.sql"),
    include_str!("../queries/tpcds/q81.sql"),
    include_str!("../queries/tpcds/q82.sql"),
    include_str!("../queries/tpcds/q83.sql"),
    include_str!("../queries/tpcds/q84.sql"),
    include_str!("../queries/tpcds/q85.sql"),
    include_str!("../queries/tpcds/q86.sql"),
    include_str!("../queries/tpcds/q87.sql"),
    include_str!("../queries/tpcds/q88.sql"),
    include_str!("../queries/tpcds/q89.sql"),
    include_str!("../queries/tpcds/q90.sql"),
    include_str!("../queries/tpcds/q91.sql"),
    include_str!("../queries/tpcds/q92.sql"),
    include_str!("../queries/tpcds/q93.sql"),
    include_str!("../queries/tpcds/q94.sql"),
    include_str!("../queries/tpcds/q95.sql"),
    include_str!("../queries/tpcds/q96.sql"),
    include_str!("../queries/tpcds/q97.sql"),
    include_str!("../queries/tpcds/q98.sql"),
    include_str!("../queries/tpcds/q99.sql"),
];

/// Generates TPC-DS at `scale_factor` under `dir`, one directory per table with one Parquet file.
pub fn generate(dir: &Path, scale_factor: f64) -> Result<(), GenerateError> {
    let session = SessionBuilder::new()
        .with_scale_factor(scale_factor)
        .build()
        .map_err(|error| GenerateError::Scale(scale_factor, error.to_string()))?;
    let session = || -> Session { session.clone() };
    write(dir, "call_center", 1, CallCenterArrow::new(session()))?;
    write(dir, "catalog_page", 1, CatalogPageArrow::new(session()))?;
    write(dir, "catalog_returns", 1, CatalogReturnsArrow::new(session()))?;
    write(dir, "catalog_sales", 1, CatalogSalesArrow::new(session()))?;
    write(dir, "customer", 1, CustomerArrow::new(session()))?;
    write(dir, "customer_address", 1, CustomerAddressArrow::new(session()))?;
    write(dir, "customer_demographics", 1, CustomerDemographicsArrow::new(session()))?;
    write(dir, "date_dim", 1, DateDimArrow::new(session()))?;
    write(dir, "household_demographics", 1, HouseholdDemographicsArrow::new(session()))?;
    write(dir, "income_band", 1, IncomeBandArrow::new(session()))?;
    write(dir, "inventory", 1, InventoryArrow::new(session()))?;
    write(dir, "item", 1, ItemArrow::new(session()))?;
    write(dir, "promotion", 1, PromotionArrow::new(session()))?;
    write(dir, "reason", 1, ReasonArrow::new(session()))?;
    write(dir, "ship_mode", 1, ShipModeArrow::new(session()))?;
    write(dir, "store", 1, StoreArrow::new(session()))?;
    write(dir, "store_returns", 1, StoreReturnsArrow::new(session()))?;
    write(dir, "store_sales", 1, StoreSalesArrow::new(session()))?;
    write(dir, "time_dim", 1, TimeDimArrow::new(session()))?;
    write(dir, "warehouse", 1, WarehouseArrow::new(session()))?;
    write(dir, "web_page", 1, WebPageArrow::new(session()))?;
    write(dir, "web_returns", 1, WebReturnsArrow::new(session()))?;
    write(dir, "web_sales", 1, WebSalesArrow::new(session()))?;
    write(dir, "web_site", 1, WebSiteArrow::new(session()))?;
    Ok(())
}

/// `CREATE EXTERNAL TABLE` for every table under `location` (a path or URL ending in '/').
pub fn ddl(location: &str) -> Vec<String> {
    TABLES.iter().map(|t| format!("CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{location}{t}/'")).collect()
}
