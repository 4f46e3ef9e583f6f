//! Trino's SQL functions for Glaux, as DataFusion UDFs and UDAFs.
//!
//! Athena users bring queries written for Trino: its function names, argument orders, NULL
//! handling and errors. [`register`] adds them to a DataFusion session; the scheduler plans with
//! them and every executor registers the same set, so plan fragments that call them decode and
//! run anywhere in the cluster. Where Trino and DataFusion share a name but differ
//! (`date_trunc` on dates, `regexp_replace`, `split_part`, `element_at`, `contains`, `md5` of
//! varbinary, `from_unixtime`, `to_unixtime`), Glaux answers as Trino does.
//!
//! - `json`: `json_extract_scalar`, `json_extract`, `json_parse`, ... over JSON text.
//! - `datetime`: fields, `date_trunc`/`date_add`/`date_diff`, MySQL and Joda patterns, ISO 8601.
//! - `strings`: `split`, regular expressions, URLs, UTF-8 and hex.
//! - `deletion_vectors`: `glaux_delta_deleted`, the rows a Delta deletion vector deletes.
//! - `hashes`: `sha2(x, bits)` (Spark's and Hive's, for hashing rows).
//! - `arrays`: `element_at`, `contains`, `sequence`, `slice`.
//! - `conditional`: `if`, `typeof`; `try_eval`: `try`.
//! - `math`: `truncate`, `rand(n)`, `width_bucket`, ...
//! - `aggregates`: `count_if`, `max_by`/`min_by`, `map_agg`, `histogram`, `checksum`,
//!   `geometric_mean`, `approx_percentile` (one percentage or an array of them), and Trino's names
//!   for DataFusion's (`arbitrary`, `every`).
//! - `hive_bucket`: the bucket Hive's bucketing puts values in (`bucketed_by` writes use it).
//! - `types`: Arrow types under Trino's names (for `typeof` and error messages).
//! - `udf`: the small frame each scalar function is written in.

mod aggregates;
mod approx_percentile;
mod arrays;
mod conditional;
mod datetime;
mod deletion_vectors;
mod hashes;
mod hive_bucket;
mod json;
mod math;
mod strings;
mod try_eval;
mod types;
mod udf;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use datetime::{joda_to_strftime, mysql_to_strftime};
pub use deletion_vectors::{deletion_vector_type, deletion_vector_value};
pub use hive_bucket::MAX_BUCKETS;
pub use try_eval::TryRule;
pub use types::trino_type_name;

/// Every scalar function Glaux adds or answers differently from DataFusion.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut functions = Vec::new();
    functions.extend(json::functions());
    functions.extend(datetime::functions());
    functions.extend(strings::functions());
    functions.extend(hashes::functions());
    functions.extend(deletion_vectors::functions());
    functions.extend(arrays::functions());
    functions.extend(conditional::functions());
    functions.extend(math::functions());
    functions.extend(try_eval::functions());
    functions.extend(hive_bucket::functions());
    functions
}

/// Every aggregate function Glaux adds, and Trino's names for DataFusion's.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    aggregates::functions()
}

/// Registers Glaux's functions in `ctx`, replacing DataFusion's of the same names.
pub fn register(ctx: &SessionContext) {
    for function in scalar_functions() {
        ctx.register_udf(function);
    }
    for function in aggregate_functions() {
        ctx.register_udaf(function);
    }
}
