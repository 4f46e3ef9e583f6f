//! `TableWriteExec`: each partition of its input written as files under a staging location, by
//! the task that runs it.
//!
//! A write's last executor stage ends in this node: every partition writes its rows with
//! DataFusion's file sinks (Parquet, JSON lines or delimited text; Hive-style `key=value/`
//! directories for the partition columns, which leave the files) into a directory of its own under
//! the statement's staging location, and returns one row: that directory and the rows written.
//! Nothing here is visible to readers; the scheduler commits the directories the successful
//! partitions report (`scheduler/src/write/`), so a partition that ran twice (a re-run attempt)
//! leaves only files nobody commits, which go with the staging location.
//!
//! Files are sized toward the spec's target: a writer feeds the sink a run of batches, and when
//! the values' bytes fed would fill a file of the target size it ends the run (its files close)
//! and starts the next with new files. How many value bytes make a file's byte is measured on
//! each run's files (listed when it ends), so the next run is sized from what the format and codec
//! really did with these rows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::common::file_options::json_writer::JsonWriterOptions;
use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, exec_err, internal_err, plan_err};
use datafusion::config::{ConfigNonZeroUsize, TableParquetOptions};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileOutputMode, FileSinkConfig};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt, stream};

/// The value Hive writes in a path for a null partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The file format of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFormat {
    Parquet,
    /// JSON lines.
    Json,
    /// Delimited text, no header (Athena's TEXTFILE and CSV).
    Text {
        delimiter: u8,
    },
}

/// The codec of a write's files: inside Parquet's pages, or around a whole text file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCompression {
    None,
    Snappy,
    Zstd,
    Gzip,
    Lz4,
}

impl WriteCompression {
    /// From Athena's `write_compression` names (any case).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "NONE" | "UNCOMPRESSED" => Self::None,
            "SNAPPY" => Self::Snappy,
            "ZSTD" => Self::Zstd,
            "GZIP" => Self::Gzip,
            "LZ4" => Self::Lz4,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Snappy => "SNAPPY",
            Self::Zstd => "ZSTD",
            Self::Gzip => "GZIP",
            Self::Lz4 => "LZ4",
        }
    }
}

/// What a [`TableWriteExec`] writes, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSpec {
    /// The statement's staging location, a URL ending in `/`; each partition writes into a
    /// directory of its own under it.
    pub staging: String,
    pub format: WriteFormat,
    pub compression: WriteCompression,
    /// Columns of the input whose values name directories instead of being stored (the last
    /// columns of the input, in directory order).
    pub partition_columns: Vec<String>,
    /// The size a writer's files aim at: once its files hold about this much, it starts new ones
    /// (0: one file per partition and writer).
    pub target_file_bytes: u64,
}

impl WriteSpec {
    /// Refuses a format and codec that do not go together (Athena's rules: Snappy and LZ4 are
    /// Parquet's; text files are whole-file GZIP or ZSTD).
    pub fn check(&self) -> Result<()> {
        match (&self.format, self.compression) {
            (WriteFormat::Parquet, _) => Ok(()),
            (_, WriteCompression::None | WriteCompression::Gzip | WriteCompression::Zstd) => Ok(()),
            (_, other) => {
                plan_err!("write_compression {} is for Parquet; text files take GZIP, ZSTD or NONE", other.name())
            }
        }
    }

    /// The extension of the files it writes, without the dot.
    pub fn file_extension(&self) -> String {
        let base = match self.format {
            WriteFormat::Parquet => return "parquet".into(),
            WriteFormat::Json => "json",
            WriteFormat::Text { .. } => "txt",
        };
        match self.compression {
            WriteCompression::Gzip => format!("{base}.gz"),
            WriteCompression::Zstd => format!("{base}.zst"),
            _ => base.into(),
        }
    }
}

/// The schema of what each partition of a [`TableWriteExec`] returns.
pub fn write_report_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("directory", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

#[derive(Debug)]
pub struct TableWriteExec {
    input: Arc<dyn ExecutionPlan>,
    spec: WriteSpec,
    properties: Arc<PlanProperties>,
}

impl TableWriteExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>, spec: WriteSpec) -> Result<Self> {
        spec.check()?;
        if !spec.staging.ends_with('/') {
            return internal_err!("a write's staging location must end in '/': {}", spec.staging);
        }
        let schema = input.schema();
        let count = spec.partition_columns.len();
        let last: Vec<&str> = schema
            .fields()
            .iter()
            .skip(schema.fields().len().saturating_sub(count))
            .map(|f| f.name().as_str())
            .collect();
        if count >= schema.fields().len() || last != spec.partition_columns {
            return plan_err!(
                "partition columns {:?} must be the last columns of the query, after at least one other column",
                spec.partition_columns
            );
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(write_report_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self { input, spec, properties: Arc::new(properties) })
    }

    pub fn spec(&self) -> &WriteSpec {
        &self.spec
    }

    fn sink(&self, directory: ListingTableUrl, schema: SchemaRef) -> Arc<dyn DataSink> {
        let partition_cols = self.spec.partition_columns.iter().map(|c| (c.clone(), DataType::Utf8)).collect();
        let config = FileSinkConfig {
            original_url: directory.to_string(),
            object_store_url: directory.object_store(),
            file_group: FileGroup::default(),
            table_paths: vec![directory],
            output_schema: schema,
            table_partition_cols: partition_cols,
            insert_op: InsertOp::Append,
            keep_partition_by_columns: false,
            file_extension: self.spec.file_extension(),
            file_output_mode: FileOutputMode::Directory,
        };
        let whole_file = match self.spec.compression {
            WriteCompression::Gzip => CompressionTypeVariant::GZIP,
            WriteCompression::Zstd => CompressionTypeVariant::ZSTD,
            _ => CompressionTypeVariant::UNCOMPRESSED,
        };
        match self.spec.format {
            WriteFormat::Parquet => {
                let mut options = TableParquetOptions::default();
                options.global.compression = Some(
                    match self.spec.compression {
                        WriteCompression::None => "uncompressed",
                        WriteCompression::Snappy => "snappy",
                        WriteCompression::Zstd => "zstd(3)",
                        WriteCompression::Gzip => "gzip(6)",
                        WriteCompression::Lz4 => "lz4_raw",
                    }
                    .into(),
                );
                Arc::new(ParquetSink::new(config, options))
            }
            WriteFormat::Json => Arc::new(JsonSink::new(config, JsonWriterOptions::new(whole_file))),
            WriteFormat::Text { delimiter } => {
                let builder = arrow::csv::WriterBuilder::new().with_header(false).with_delimiter(delimiter);
                Arc::new(CsvSink::new(config, CsvWriterOptions::new(builder, whole_file)))
            }
        }
    }
}

/// Partition columns as text, nulls as Hive's [`NULL_PARTITION`]: the values are written in
/// directory names, never in the files.
fn partition_values_as_text(
    batch: RecordBatch,
    partition_columns: &[String],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for name in partition_columns {
        let index = batch.schema().index_of(name)?;
        let text = cast(&columns[index], &DataType::Utf8)?;
        let Some(strings) = text.as_any().downcast_ref::<StringArray>() else {
            return internal_err!("partition column {name} did not cast to text");
        };
        // Hive writes null and empty values alike as its null partition (rebuilt only when a
        // batch has one: most have none).
        let offsets = strings.value_offsets();
        let any_empty = offsets.windows(2).any(|w| w[0] == w[1]);
        columns[index] = if strings.null_count() == 0 && !any_empty {
            text
        } else {
            Arc::new(
                strings
                    .iter()
                    .map(|v| Some(v.filter(|v| !v.is_empty()).unwrap_or(NULL_PARTITION)))
                    .collect::<StringArray>(),
            )
        };
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// How many partitions one writer (a partition of a task) may write: each is an open file with
/// its buffers until the writer ends (Athena allows 100 per statement).
pub const MAX_PARTITIONS_PER_WRITER: usize = 1_000;

/// The partition-value combinations a writer has written.
#[derive(Default)]
struct PartitionsSeen(std::collections::HashSet<Vec<String>>);

impl PartitionsSeen {
    /// Counts `batch`'s partitions; beyond [`MAX_PARTITIONS_PER_WRITER`] the write fails.
    fn add(&mut self, batch: &RecordBatch, columns: &[String]) -> Result<()> {
        if columns.is_empty() {
            return Ok(());
        }
        let texts = columns
            .iter()
            .map(|c| batch.column_by_name(c).and_then(|a| a.as_any().downcast_ref::<StringArray>()))
            .collect::<Option<Vec<_>>>();
        let Some(texts) = texts else { return internal_err!("partition columns are not text") };
        // One column (the usual case) without a vector per row.
        let keys: std::collections::HashSet<Vec<&str>> = match texts.as_slice() {
            [only] => {
                let values: std::collections::HashSet<&str> = only.iter().flatten().collect();
                values.into_iter().map(|v| vec![v]).collect()
            }
            _ => (0..batch.num_rows()).map(|row| texts.iter().map(|t| t.value(row)).collect()).collect(),
        };
        for key in keys {
            let key: Vec<String> = key.into_iter().map(str::to_string).collect();
            if self.0.len() >= MAX_PARTITIONS_PER_WRITER && !self.0.contains(&key) {
                return exec_err!(
                    "the write would create more than {MAX_PARTITIONS_PER_WRITER} partitions from one task; \
                     partition by fewer distinct values (or write in several statements)"
                );
            }
            self.0.insert(key);
        }
        Ok(())
    }
}

/// The bytes of the values `batch` holds: fixed-width values at their width, strings and binaries
/// at their length (what Arrow's memory size would count many times over where batches share
/// buffers, as string views read from Parquet do).
fn logical_bytes(batch: &RecordBatch) -> u64 {
    use arrow::array::AsArray;
    batch
        .columns()
        .iter()
        .map(|column| {
            let rows = column.len() as u64;
            match column.data_type() {
                DataType::Utf8View => column.as_string_view().views().iter().map(|v| u64::from(*v as u32) + 4).sum(),
                DataType::BinaryView => column.as_binary_view().views().iter().map(|v| u64::from(*v as u32) + 4).sum(),
                DataType::Utf8 => {
                    let offsets = column.as_string::<i32>().value_offsets();
                    (offsets[offsets.len() - 1] - offsets[0]) as u64 + 4 * rows
                }
                DataType::LargeUtf8 => {
                    let offsets = column.as_string::<i64>().value_offsets();
                    (offsets[offsets.len() - 1] - offsets[0]) as u64 + 8 * rows
                }
                DataType::Boolean => rows.div_ceil(8),
                other => match other.primitive_width() {
                    Some(width) => rows * width as u64,
                    None => column.to_data().get_slice_memory_size().map_or(0, |b| b as u64),
                },
            }
        })
        .sum()
}

/// A writer's file size target, and its estimate of the value bytes that make one byte of file.
#[derive(Clone, Copy)]
struct Target {
    bytes: u64,
    values_per_byte: f64,
}

/// Before a write has measured its files: Parquet keeps about a quarter of the values' bytes (it
/// encodes and compresses), text about as much (numbers as digits, names repeated; a codec
/// shrinks it again).
fn first_guess(format: &WriteFormat) -> f64 {
    match format {
        WriteFormat::Parquet => 4.0,
        WriteFormat::Json | WriteFormat::Text { .. } => 1.0,
    }
}

/// Writes `input` with `sink` in runs of about a file of `target.bytes` each (one run if the
/// target is 0); the rows written.
async fn write_in_runs(
    sink: Arc<dyn DataSink>,
    input: SendableRecordBatchStream,
    context: &Arc<TaskContext>,
    (store, directory): (Arc<dyn datafusion::object_store::ObjectStore>, &ListingTableUrl),
    mut target: Target,
) -> Result<u64> {
    let schema = input.schema();
    let input = Arc::new(tokio::sync::Mutex::new(input));
    let (mut rows, mut on_disk) = (0u64, 0u64);
    loop {
        let budget = if target.bytes == 0 { f64::INFINITY } else { target.bytes as f64 * target.values_per_byte };
        let Some(first) = input.lock().await.next().await else { return Ok(rows) };
        let first = first?;
        let fed = Arc::new(AtomicU64::new(logical_bytes(&first)));
        let ended = Arc::new(AtomicBool::new(false));
        let state = (Arc::clone(&input), Arc::clone(&fed), Arc::clone(&ended));
        let rest = stream::unfold(state, move |(input, fed, ended)| async move {
            if fed.load(Ordering::Relaxed) as f64 >= budget {
                return None;
            }
            let next = input.lock().await.next().await;
            match next {
                None => {
                    ended.store(true, Ordering::Relaxed);
                    None
                }
                Some(batch) => {
                    if let Ok(batch) = &batch {
                        fed.fetch_add(logical_bytes(batch), Ordering::Relaxed);
                    }
                    Some((batch, (input, fed, ended)))
                }
            }
        });
        let run = stream::once(std::future::ready(Ok(first))).chain(rest);
        rows += sink.write_all(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), run)), context).await?;
        if ended.load(Ordering::Relaxed) || target.bytes == 0 {
            return Ok(rows);
        }
        // Value bytes fed per byte of this run's files: the next run's measure.
        let listed: Vec<_> = store.list(Some(directory.prefix())).try_collect().await?;
        let total: u64 = listed.iter().map(|m| m.size).sum();
        let written = total.saturating_sub(on_disk);
        on_disk = total;
        if written > 0 {
            let measured = fed.load(Ordering::Relaxed) as f64 / written as f64;
            target.values_per_byte = measured.clamp(1.0 / 16.0, 256.0);
        }
    }
}

impl DisplayAs for TableWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TableWriteExec: format={:?}, compression={}", self.spec.format, self.spec.compression.name())?;
        if !self.spec.partition_columns.is_empty() {
            write!(f, ", partitioned_by={:?}", self.spec.partition_columns)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TableWriteExec {
    fn name(&self) -> &str {
        "TableWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)] // DataFusion 55 still requires this deprecated method of every node
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self::try_new(input, self.spec.clone())?)),
            Err(children) => internal_err!("TableWriteExec has one input, got {}", children.len()),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition >= self.properties.output_partitioning().partition_count() {
            return exec_err!("TableWriteExec has no partition {partition}");
        }
        let input = self.input.execute(partition, Arc::clone(&context))?;
        // Partition columns travel as text: their values become directory names.
        let fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if self.spec.partition_columns.contains(f.name()) {
                    Field::new(f.name(), DataType::Utf8, false)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let (columns, texts) = (self.spec.partition_columns.clone(), Arc::clone(&schema));
        let mut seen = PartitionsSeen::default();
        let batches = input.map(move |batch| {
            let batch = partition_values_as_text(batch?, &columns, &texts)?;
            seen.add(&batch, &columns)?;
            Ok(batch)
        });
        let input: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), batches));
        // A directory per partition and attempt: a partition run again never writes into the
        // directory of its earlier attempt.
        let directory = format!("{}{partition}-{}/", self.spec.staging, crate::QueryId::random());
        let directory = ListingTableUrl::parse(&directory)?;
        let sink = self.sink(directory.clone(), schema);
        // One file per directory until it is large: the row count alone splits files.
        let mut config = context.session_config().clone();
        config.options_mut().execution.minimum_parallel_output_files = ConfigNonZeroUsize::try_new(1)?;
        let context = Arc::new(TaskContext::new(
            context.task_id(),
            context.session_id(),
            config,
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            context.runtime_env(),
        ));
        let store = context.runtime_env().object_store(directory.object_store())?;
        let target = Target { bytes: self.spec.target_file_bytes, values_per_byte: first_guess(&self.spec.format) };
        let written_to = directory.clone();
        let written = stream::once(async move {
            let rows = write_in_runs(sink, input, &context, (store, &written_to), target).await?;
            let report = RecordBatch::try_new(
                write_report_schema(),
                vec![Arc::new(StringArray::from(vec![directory.to_string()])), Arc::new(UInt64Array::from(vec![rows]))],
            )?;
            Ok::<_, DataFusionError>(report)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(write_report_schema(), written)))
    }
}
