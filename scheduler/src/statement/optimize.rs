//! `ALTER TABLE db.t EXECUTE optimize [(file_size_threshold => '128MB')] [WHERE <partition
//! predicate>]`: Trino's compaction of a Hive table's small files.
//!
//! In each partition the predicate chooses (every partition without one), the data files smaller
//! than the threshold are packed into groups of about the threshold together; each group is read
//! by one task of the executors and written as one new file into the partition, as an `INSERT`
//! writes (`write/`). The commit shows the new files and hides the old ones in one step; the old
//! ones are deleted once the queries planned before the commit have ended. A partition with
//! fewer than two small files is left as it is. Other writers' files are rewritten too: this is
//! the one statement that deletes files Glaux did not write.

use std::sync::Arc;

use arrow::datatypes::{Field, SchemaRef};
use async_trait::async_trait;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::provider_as_source;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
use futures::TryStreamExt;
use glaux_catalog::{
    FileOfPartition, FileSetTable, Partition, PartitionFilter, Privilege, Projection, TableDef, TableFormat,
    is_side_file, listing_options, uses_only,
};
use glaux_proto::QueryId;
use object_store::ObjectMeta;
use object_store::path::Path;

use super::create_table_as::{refused, rows_schema, rows_written, unsupported, written_result};
use super::insert::write_format;
use super::words::{Part, Words, quote};
use super::{Context, Family, Recognized, Statement};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};
use crate::write::{STAGING_DIR, StagedWrite};

/// The default `file_size_threshold`: the size writes aim their files at (Trino's is 100 MB).
const DEFAULT_THRESHOLD: u64 = 128 * 1024 * 1024;

pub(crate) struct Optimize {
    name: Vec<String>,
    /// Files smaller than this are rewritten, into files of about this size.
    threshold: u64,
    /// The `WHERE` clause's text.
    predicate: Option<String>,
}

pub(super) fn recognize(words: &Words<'_>, _ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let w = words.words();
    if w.first() == Some(&"OPTIMIZE") {
        // Athena's form: `OPTIMIZE t REWRITE DATA USING BIN_PACK [WHERE ...]`.
        let (name, end) = words.name_at(1)?;
        if w.get(end..end + 4) != Some(&["REWRITE", "DATA", "USING", "BIN_PACK"][..]) {
            return Some(Err(refused("OPTIMIZE t REWRITE DATA USING BIN_PACK [WHERE <partition predicate>]")));
        }
        let predicate = match words.part(end + 4) {
            None => Ok(None),
            Some(Part::Word(w)) if w == "WHERE" => text_after_where(words.sql).map(Some),
            Some(_) => Err(refused("OPTIMIZE ... USING BIN_PACK ends there or with a WHERE clause")),
        };
        let optimize = predicate.map(|predicate| Optimize { name, threshold: DEFAULT_THRESHOLD, predicate });
        return Some(optimize.map(|o| Recognized::Statement(Statement::Optimize(Box::new(o)))));
    }
    if !w.starts_with(&["ALTER", "TABLE"]) {
        return None;
    }
    let (name, end) = words.name_at(2)?;
    if w.get(end) != Some(&"EXECUTE") {
        return None;
    }
    Some(parse(words, name, end + 1).map(|o| Recognized::Statement(Statement::Optimize(Box::new(o)))))
}

/// The procedure and its arguments from `i` on.
fn parse(words: &Words<'_>, name: Vec<String>, mut i: usize) -> Result<Optimize, SchedulerError> {
    match words.part(i) {
        Some(Part::Word(w)) if w == "OPTIMIZE" => i += 1,
        Some(Part::Word(w)) => {
            return Err(unsupported(format!(
                "ALTER TABLE EXECUTE {}: the only procedure is optimize",
                w.to_lowercase()
            )));
        }
        _ => return Err(refused("ALTER TABLE ... EXECUTE must name a procedure: optimize")),
    }
    let mut threshold = DEFAULT_THRESHOLD;
    if words.part(i) == Some(&Part::Symbol('(')) {
        let argument = (words.part(i + 1), words.part(i + 2), words.part(i + 3), words.part(i + 4));
        match argument {
            (Some(Part::Word(w)), Some(Part::Other), Some(Part::Text(size)), Some(Part::Symbol(')')))
                if w == "FILE_SIZE_THRESHOLD" =>
            {
                threshold = data_size(size)
                    .ok_or_else(|| refused(format!("file_size_threshold '{size}' is not a size such as '128MB'")))?;
            }
            _ => return Err(refused("optimize takes one argument: (file_size_threshold => '128MB')")),
        }
        i += 5;
    }
    let predicate = match words.part(i) {
        None => None,
        Some(Part::Word(w)) if w == "WHERE" => Some(text_after_where(words.sql)?),
        Some(_) => return Err(refused("optimize ends with its arguments or a WHERE clause on partition columns")),
    };
    Ok(Optimize { name, threshold, predicate })
}

/// Trino's data sizes: `'128MB'`, `'1.5GB'`, `'500kB'`, `'100B'` (units of 1024, any case).
fn data_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    let bytes = number * unit as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < (1u64 << 50) as f64).then_some(bytes as u64)
}

/// The text after the statement's first top-level `WHERE`.
fn text_after_where(sql: &str) -> Result<String, SchedulerError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| refused(format!("reading the statement: {e}")))?;
    let mut depth = 0i32;
    for token in &tokens {
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("WHERE") => {
                let rest = &sql[byte_offset(sql, token.span.end)..];
                let rest = rest.trim().trim_end_matches(';').trim();
                if rest.is_empty() {
                    return Err(refused("WHERE needs a predicate on partition columns"));
                }
                return Ok(rest.to_string());
            }
            _ => {}
        }
    }
    Err(refused("no WHERE clause found"))
}

/// The byte offset of a tokenizer location (1-based line and character column).
fn byte_offset(sql: &str, location: Location) -> usize {
    let mut offset = 0;
    for (number, line) in sql.split_inclusive('\n').enumerate() {
        if number as u64 + 1 == location.line {
            let column = (location.column as usize).saturating_sub(1);
            return offset + line.char_indices().nth(column).map_or(line.len(), |(i, _)| i);
        }
        offset += line.len();
    }
    sql.len()
}

impl Optimize {
    /// The table named, `db.t` as written.
    pub fn table(&self, database: &str) -> String {
        match self.name.as_slice() {
            [table] => format!("{database}.{table}"),
            parts => parts.join("."),
        }
    }

    /// The `WHERE` clause, planned, checked to use only partition columns.
    async fn partition_predicate(&self, ctx: &Context<'_>, table: &TableDef) -> Result<Expr, SchedulerError> {
        let predicate = self.predicate.as_deref().unwrap_or("true");
        if table.partition_keys.is_empty() {
            return Err(unsupported(format!(
                "{}.{} is not partitioned: optimize takes no WHERE clause",
                table.database, table.name
            )));
        }
        let sql = format!("SELECT * FROM {}.{} WHERE {predicate}", quote(&table.database), quote(&table.name));
        let plan = super::plan_sql::plan_sql(&sql, ctx).await?;
        let predicate = filter_of(&plan).ok_or_else(|| refused("the WHERE clause is not a predicate"))?;
        let keys: Vec<&str> = table.partition_keys.iter().map(|k| k.name.as_str()).collect();
        if !uses_only(&keys, &predicate) {
            return Err(unsupported(format!(
                "optimize's WHERE clause may use only the partition columns ({})",
                keys.join(", ")
            )));
        }
        Ok(predicate)
    }

    /// The registered partitions the `WHERE` clause chooses (all without one).
    async fn chosen(&self, ctx: &Context<'_>, table: &TableDef) -> Result<Vec<Partition>, SchedulerError> {
        let registered = ctx.lake.catalog().partitions(&table.database, &table.name)?;
        if self.predicate.is_none() {
            return Ok(registered.to_vec());
        }
        let predicate = self.partition_predicate(ctx, table).await?;
        let keys: Vec<&str> = table.partition_keys.iter().map(|k| k.name.as_str()).collect();
        let fields = table
            .partition_keys
            .iter()
            .map(|k| Ok(Field::new(&k.name, k.arrow_type()?, true)))
            .collect::<datafusion::common::Result<Vec<_>>>()
            .map_err(SchedulerError::plan)?;
        let filter = PartitionFilter::new(fields, &[predicate]);
        let columns: Vec<usize> = (0..keys.len()).collect();
        let texts: Vec<Vec<&str>> = columns
            .iter()
            .map(|&c| registered.iter().map(|p| p.values.get(c).map_or("", String::as_str)).collect())
            .collect();
        let keep = filter.select(&ctx.state, &columns, &texts).map_err(SchedulerError::plan)?;
        Ok(registered.iter().zip(keep).filter(|(_, keep)| *keep).map(|(p, _)| p.clone()).collect())
    }
}

/// `expr` with its columns unqualified (as a table's own scan names them).
fn unqualified(expr: Expr) -> Result<Expr, SchedulerError> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(SchedulerError::plan)
}

/// The predicate of the plan's filter.
fn filter_of(plan: &LogicalPlan) -> Option<Expr> {
    match plan {
        LogicalPlan::Filter(filter) => Some(filter.predicate.clone()),
        other => other.inputs().into_iter().find_map(filter_of),
    }
}

/// The data files directly or deeply under `prefix` smaller than `threshold`, as readers see
/// them: with the table's extension, not side files nor under side directories.
async fn small_files(
    ctx: &Context<'_>,
    location: &ListingTableUrl,
    extension: &str,
    threshold: u64,
) -> Result<Vec<ObjectMeta>, SchedulerError> {
    let store = ctx.state.runtime_env().object_store(location.object_store()).map_err(SchedulerError::plan)?;
    let listed: Vec<ObjectMeta> = match store.list(Some(location.prefix())).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(SchedulerError::plan(datafusion::error::DataFusionError::ObjectStore(Box::new(e)))),
    };
    let data = |meta: &ObjectMeta| {
        let Some(relative) = meta.location.prefix_match(location.prefix()) else { return false };
        let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
        let name = parts.last().map(String::as_str).unwrap_or_default();
        name.ends_with(extension) && !parts.iter().any(|p| is_side_file(p) || p == STAGING_DIR)
    };
    let mut small: Vec<ObjectMeta> = listed.into_iter().filter(|meta| data(meta) && meta.size < threshold).collect();
    small.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(small)
}

/// Groups of files (in name order) of about `target` bytes together; a last group of one file
/// joins the one before (a file alone would only be copied).
fn packed(files: Vec<ObjectMeta>, target: u64) -> Vec<Vec<ObjectMeta>> {
    let mut groups: Vec<Vec<ObjectMeta>> = Vec::new();
    let mut size = 0;
    for file in files {
        match groups.last_mut() {
            Some(group) if size + file.size <= target => {
                size += file.size;
                group.push(file);
            }
            _ => {
                size = file.size;
                groups.push(vec![file]);
            }
        }
    }
    if groups.len() >= 2 && groups.last().is_some_and(|g| g.len() == 1) {
        let last = groups.pop().unwrap_or_default();
        if let Some(group) = groups.last_mut() {
            group.extend(last);
        }
    }
    groups.retain(|g| g.len() >= 2);
    groups
}

#[async_trait]
impl Family for Optimize {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let table = ctx.lake.table(&self.name, &ctx.session.database)?;
        // It adds files and deletes others.
        ctx.access.require_table(Privilege::Insert, &table.database, &table.name)?;
        ctx.access.require_table(Privilege::Delete, &table.database, &table.name)?;
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let table = ctx.lake.table(&self.name, &ctx.session.database)?;
        let name = format!("{}.{}", table.database, table.name);
        if table.format == TableFormat::Delta {
            let predicate = match &self.predicate {
                Some(_) => Some(unqualified(self.partition_predicate(ctx, &table).await?)?),
                None => None,
            };
            return match super::delta::optimize(ctx, &query, &table, predicate, self.threshold, progress).await? {
                Some(written) => written_result(query, written),
                None => rows_written(query, 0),
            };
        }
        if Projection::of(&table).map_err(SchedulerError::plan)?.is_some() {
            return Err(unsupported(format!("{name} projects its partitions: optimize cannot rewrite it")));
        }
        super::bucketing::refuse_bucketed(&table, "optimize")?;
        let format = write_format(&table)?;
        let location = match table.locations.as_slice() {
            [location] => ListingTableUrl::parse(location).map_err(SchedulerError::plan)?,
            _ => return Err(unsupported(format!("{name} has several locations: optimize rewrites one"))),
        };
        let chosen = if table.partition_keys.is_empty() {
            vec![Partition { values: Vec::new(), location: location.as_str().to_string() }]
        } else {
            self.chosen(ctx, &table).await?
        };
        let extension = listing_options(&table, &Default::default()).map_err(SchedulerError::plan)?.file_extension;
        let mut groups: Vec<Vec<FileOfPartition>> = Vec::new();
        for partition in &chosen {
            let url = ListingTableUrl::parse(&partition.location).map_err(SchedulerError::plan)?;
            if url.object_store() != location.object_store() {
                return Err(unsupported(format!("partition at {url} is in another store than {name}'s location")));
            }
            let files = small_files(ctx, &url, &extension, self.threshold).await?;
            for group in packed(files, self.threshold) {
                groups.push(group.into_iter().map(|f| (f, partition.values.clone())).collect());
            }
        }
        if groups.is_empty() {
            return rows_written(query, 0);
        }
        let replaced: Vec<Path> = groups.iter().flatten().map(|(f, _)| f.location.clone()).collect();
        let keys: Vec<String> = table.partition_keys.iter().map(|k| k.name.clone()).collect();
        let staged = StagedWrite::begin(&ctx.state, ctx.lake.catalog(), location.as_str(), &query, keys)?
            .with_registered_partitions(&chosen)?
            .replacing(replaced)?;
        // Each group is one partition of the scan, and one task's file: nothing splits or
        // spreads them.
        let mut state = ctx.state.clone();
        state.config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
        state.config_mut().options_mut().optimizer.repartition_file_scans = false;
        let parquet = datafusion::config::TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        let store = ObjectStoreUrl::parse(location.object_store().as_str()).map_err(SchedulerError::plan)?;
        let files = FileSetTable::try_new(&table, &parquet, store, groups).map_err(SchedulerError::plan)?;
        let plan = LogicalPlanBuilder::scan(table.name.clone(), provider_as_source(Arc::new(files)), None)
            .and_then(LogicalPlanBuilder::build)
            .map_err(SchedulerError::plan)?;
        let (catalog, id) = (ctx.lake.catalog(), query.to_string());
        let written = staged
            .run(ctx.queries, &state, &plan, format, progress, |partitions| {
                Ok(catalog.add_written_partitions(&table.database, &table.name, partitions, &id)?)
            })
            .await?;
        written_result(query, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<Optimize, SchedulerError> {
        let words = Words::of(sql).unwrap();
        let (name, end) = words.name_at(2).unwrap();
        parse(&words, name, end + 1)
    }

    #[test]
    fn trino_statement_is_read() {
        let o = parsed("ALTER TABLE db.t EXECUTE optimize").unwrap();
        assert_eq!((o.name, o.threshold, o.predicate), (vec!["db".into(), "t".into()], DEFAULT_THRESHOLD, None));
        let o =
            parsed("alter table t execute OPTIMIZE(file_size_threshold => '10MB')\n WHERE \"day\" = 'a(b' ;").unwrap();
        assert_eq!((o.threshold, o.predicate.as_deref()), (10 << 20, Some("\"day\" = 'a(b'")));
        assert!(parsed("ALTER TABLE t EXECUTE expire_snapshots").is_err());
        assert!(parsed("ALTER TABLE t EXECUTE optimize (file_size_threshold => 'big')").is_err());
        assert!(parsed("ALTER TABLE t EXECUTE optimize (other => '1MB')").is_err());
        assert!(parsed("ALTER TABLE t EXECUTE optimize WHERE").is_err());
        assert!(parsed("ALTER TABLE t EXECUTE optimize junk").is_err());
    }

    #[test]
    fn sizes_are_trinos() {
        assert_eq!(data_size("128MB"), Some(128 << 20));
        assert_eq!(data_size("1.5 GB"), Some(3 << 29));
        assert_eq!(data_size("500kB"), Some(500 << 10));
        assert_eq!(data_size("100"), Some(100));
        assert_eq!(data_size("0MB"), None);
        assert_eq!(data_size("1EB"), None);
        assert_eq!(data_size("-1MB"), None);
    }

    #[test]
    fn small_files_are_packed_toward_the_target() {
        let file = |name: &str, size: u64| ObjectMeta {
            location: Path::from(name),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        };
        let sizes = |groups: Vec<Vec<ObjectMeta>>| -> Vec<Vec<u64>> {
            groups.into_iter().map(|g| g.into_iter().map(|f| f.size).collect()).collect()
        };
        let files = vec![file("a", 40), file("b", 40), file("c", 40), file("d", 40), file("e", 10)];
        assert_eq!(sizes(packed(files, 100)), [vec![40, 40], vec![40, 40, 10]]);
        assert_eq!(sizes(packed(vec![file("a", 40)], 100)), Vec::<Vec<u64>>::new(), "one file alone stays");
        let files = vec![file("a", 90), file("b", 90)];
        assert_eq!(sizes(packed(files, 100)), [vec![90, 90]], "a last file alone joins the group before");
    }
}
