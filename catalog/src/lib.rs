//! The lake catalog: databases, tables, partitions and prepared statements that survive
//! restarts, and how a table's definition becomes something DataFusion scans.
//!
//! - [`Catalog`]: the storage contract; [`SqliteCatalog`] keeps it in an embedded SQLite file.
//! - [`TableDef`], [`ColumnDef`], [`TableFormat`], [`Partition`]: what a table is.
//! - [`parse_hive_create_table`]: Athena's (Hive's) `CREATE EXTERNAL TABLE`, as pasted from
//!   Athena or Glue; [`show_create_table`] writes a definition back as DDL.
//! - [`Lake`]: the catalog with the storage rules of the deployment, for DDL that needs both:
//!   creating a table (the crawler completes what the statement leaves out: format, columns,
//!   partition keys, codec), and partitions (`MSCK REPAIR TABLE`, `ALTER TABLE ADD|DROP
//!   PARTITION`, `SHOW PARTITIONS`).
//! - [`LakeCatalogProvider`]: the catalog as DataFusion's `glaux` catalog; [`table_provider`]
//!   builds a table's provider from its definition whenever a query names it (a `ListingTable`,
//!   or a `LakeTable` for a partitioned table, whose partitions come from the catalog or from
//!   [`Projection`] and are chosen from the query's predicates before anything is listed).
//! - [`CatalogError`]: failures by kind.
//!
//! Invariant: this crate knows nothing of front doors, clusters or queries; what it reads from
//! storage it reads through the DataFusion session it is given.

mod alter_columns;
mod crawler;
mod definitions;
mod delta;
mod error;
mod file_set;
mod grant_rows;
mod grants;
mod hive_ddl;
mod lake;
mod lake_table;
mod lowercase_columns;
mod partition_filter;
mod partitions;
mod projection;
mod providers;
mod show_create;
mod sqlite;
mod sqlite_history;
mod sqlite_keys;
mod sqlite_saved;
mod sqlite_workgroups;
mod sqlite_writes;
mod store;

pub use definitions::{ColumnDef, Partition, TableDef, TableFormat, is_side_file};
pub use delta::{
    DeltaTableProvider, NameSuffix, NewFile, Snapshot as DeltaSnapshot, TABLE_TYPE, is_delta, snapshot_name, split_name,
};
/// Delta Lake tables' logs: opening a snapshot, committing written files.
pub mod delta_log {
    pub use crate::delta::{
        FILE_COLUMN, ROW_COLUMN, Rewrite, VACUUM_AGE, add_columns, append, create, drop_column, open, physical_names,
        rename_column, rewrite, set_properties, vacuum,
    };
    pub use deltalake_core::DeltaTable;
}
pub use alter_columns::{ColumnChange, parse_alter_columns};
pub use error::{CatalogError, Result};
pub use file_set::{FileOfPartition, FileSetTable};
pub use grants::{Access, Columns, Grant, Grantee, Privilege, Securable, location_prefix};
pub use hive_ddl::{COMPRESSION, FILE_EXTENSION, HiveTable, is_create_external_table, parse_hive_create_table};
pub use lake::Lake;
pub use lake_table::{PruningReport, TableScanReport};
pub use partition_filter::{HIVE_NULL_PARTITION, PartitionFilter, typed_value, uses_only};
pub use partitions::{PartitionSpec, add_partitions, drop_partitions, repair_table, show_partitions};
pub use projection::Projection;
pub use providers::{LakeCatalogProvider, listing_options, table_provider};
pub use show_create::show_create_table;
pub use sqlite::SqliteCatalog;
pub use sqlite_keys::AccessKey;
pub use sqlite_workgroups::{PRIMARY as PRIMARY_WORKGROUP, WorkGroup, WorkGroupSettings};
/// The query history's records and states.
pub mod history {
    pub use crate::sqlite_history::{CANCELLED, FAILED, QUEUED, QueryFilter, QueryRecord, RUNNING, SUCCEEDED};
}
pub use store::{Catalog, NamedQuery, PendingWrite, PreparedStatement};

/// The catalog every table lives in, as clients name it (`glaux.db.t`).
pub const DEFAULT_CATALOG: &str = "glaux";
/// The database unqualified names resolve in until a client chooses another (`USE`).
pub const DEFAULT_DATABASE: &str = "default";
