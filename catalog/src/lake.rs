//! [`Lake`]: the catalog with the storage rules of the deployment, and the `CREATE EXTERNAL
//! TABLE` that needs both: a location checked against the rules, a definition completed by the
//! crawler, and the partitions its layout has now.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::common::TableReference;
use datafusion::logical_expr::CreateExternalTable;
use glaux_storage::{LocationError, StorageConfig};

use crate::crawler::Crawler;
use crate::definitions::{ColumnDef, Partition, TableDef, TableFormat};
use crate::error::{CatalogError, Result};
use crate::hive_ddl::HiveTable;
use crate::projection::Projection;
use crate::providers::table_provider;
use crate::store::Catalog;
use crate::{DEFAULT_CATALOG, DEFAULT_DATABASE};

/// The catalog and the storage its tables live in.
#[derive(Clone, Debug)]
pub struct Lake {
    catalog: Arc<dyn Catalog>,
    storage: StorageConfig,
}

impl Lake {
    /// A lake over `catalog`, making sure its default database exists.
    pub fn try_new(catalog: Arc<dyn Catalog>, storage: StorageConfig) -> Result<Self> {
        catalog.create_database(DEFAULT_DATABASE)?;
        Ok(Self { catalog, storage })
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    pub fn storage(&self) -> &StorageConfig {
        &self.storage
    }

    /// The definition of the table written as `name` (`t`, `db.t`, `glaux.db.t`), unqualified
    /// names resolving in `database`.
    pub fn table(&self, name: &[String], database: &str) -> Result<TableDef> {
        let (database, table) = match name {
            [table] => (database, table),
            [database, table] => (database.as_str(), table),
            [catalog, database, table] if catalog == DEFAULT_CATALOG => (database.as_str(), table),
            _ => return Err(CatalogError::Invalid(format!("{} is not a table name", name.join(".")))),
        };
        self.catalog
            .table(database, table)?
            .ok_or_else(|| CatalogError::UnknownTable { database: database.to_string(), table: table.to_string() })
    }

    /// `CREATE EXTERNAL TABLE` in DataFusion's dialect; unqualified names go to `database`.
    pub async fn create_external_table(
        &self,
        session: &dyn Session,
        create: &CreateExternalTable,
        database: &str,
    ) -> Result<()> {
        let Some((database, table)) =
            self.new_table_name(create.name.clone(), create.if_not_exists, create.or_replace, database)?
        else {
            return Ok(());
        };
        let format = TableFormat::from_stored_as(&create.file_type)?;
        if format == TableFormat::Delta {
            let [location] = create.locations.as_slice() else {
                return Err(CatalogError::Invalid("a Delta table has exactly one LOCATION".into()));
            };
            let properties = create.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            return self.register_delta_table(session, (database, table), location, properties).await;
        }
        let mut locations = Vec::new();
        for location in &create.locations {
            locations.push(self.checked_location(location)?);
        }
        let schema = create.schema.as_arrow();
        // DataFusion keeps the quotes of a quoted `PARTITIONED BY ("key")` name.
        let partition_cols: Vec<String> = create
            .table_partition_cols
            .iter()
            .map(|key| match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Some(unquoted) => unquoted.replace("\"\"", "\""),
                None => key.clone(),
            })
            .collect();
        let partition_keys: Vec<ColumnDef> = partition_cols
            .iter()
            .map(|key| {
                let data_type = schema.field_with_name(key).map_or(DataType::Utf8, |f| f.data_type().clone());
                ColumnDef::new(key, &data_type)
            })
            .collect();
        let definition = TableDef {
            database,
            name: table,
            locations,
            format,
            columns: schema
                .fields()
                .iter()
                .filter(|f| !partition_cols.contains(f.name()))
                .map(|f| ColumnDef::new(f.name(), f.data_type()))
                .collect(),
            partition_keys,
            properties: create.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        self.store_table(session, definition, create.or_replace).await
    }

    /// `CREATE EXTERNAL TABLE` in Athena's (Hive's) dialect; unqualified names go to `database`.
    pub async fn create_hive_table(&self, session: &dyn Session, hive: &HiveTable, database: &str) -> Result<()> {
        let name = match hive.name.as_slice() {
            [table] => TableReference::bare(table.as_str()),
            [database, table] => TableReference::partial(database.as_str(), table.as_str()),
            [catalog, database, table] => TableReference::full(catalog.as_str(), database.as_str(), table.as_str()),
            _ => return Err(CatalogError::Invalid(format!("{} is not a table name", hive.name.join(".")))),
        };
        let Some((database, table)) = self.new_table_name(name, hive.if_not_exists, false, database)? else {
            return Ok(());
        };
        if hive.creates {
            return self.create_delta_table(session, (database, table), hive).await;
        }
        let column = |(name, data_type): &(String, DataType)| ColumnDef::new(name, data_type);
        let location = self.checked_location(&hive.location)?;
        let mut properties = hive.properties.clone();
        let format = match hive.format {
            Some(format) => format,
            // The crawler recognizes a Delta table by its log, as Glue's does.
            None if Crawler { session }.has_delta_log(&location).await? => TableFormat::Delta,
            None => Crawler { session }.infer_format(&location, &mut properties).await?,
        };
        if format == TableFormat::Delta {
            return self.register_delta_table(session, (database, table), &location, properties).await;
        }
        let definition = TableDef {
            database,
            name: table,
            locations: vec![location],
            format,
            columns: hive.columns.iter().map(column).collect(),
            partition_keys: hive.partition_keys.iter().map(column).collect(),
            properties,
        };
        self.store_table(session, definition, false).await
    }

    /// `CREATE TABLE t (columns) [PARTITIONED BY ...] [LOCATION '...'] TBLPROPERTIES
    /// ('table_type' = 'DELTA')`: an empty Delta table (version 0) at the location (the
    /// warehouse's `<db>/<t>/` without one), registered from its log.
    async fn create_delta_table(&self, session: &dyn Session, table: (String, String), hive: &HiveTable) -> Result<()> {
        refuse_credentials(&hive.properties)?;
        let location = match hive.location.as_str() {
            "" => self.default_location(&table.0, &table.1)?,
            given => {
                let url = self.storage.check_location(given)?.to_string();
                if url.ends_with('/') { url } else { format!("{url}/") }
            }
        };
        let fields: Vec<datafusion::arrow::datatypes::Field> = hive
            .columns
            .iter()
            .chain(&hive.partition_keys)
            .map(|(name, data_type)| datafusion::arrow::datatypes::Field::new(name, data_type.clone(), true))
            .collect();
        let schema = datafusion::arrow::datatypes::Schema::new(fields);
        let keys: Vec<String> = hive.partition_keys.iter().map(|(k, _)| k.clone()).collect();
        crate::delta::create(session.runtime_env(), &location, &table.1, &schema, &keys, &[]).await?;
        let properties = hive.properties.clone();
        self.register_delta_table(session, table, &location, properties).await
    }

    /// Registers the Delta table a statement of Glaux's created at `location` as
    /// `database.table` (named with [`Self::name_new_table`]).
    pub async fn register_delta(&self, session: &dyn Session, table: (String, String), location: &str) -> Result<()> {
        self.register_delta_table(session, table, location, Default::default()).await
    }

    /// After its log changed its columns: the Delta table `definition`'s columns and partition
    /// keys as its log says now (for catalog listings; queries read the log each time).
    pub async fn refresh_delta(&self, session: &dyn Session, definition: &TableDef) -> Result<()> {
        let location = definition.locations.first().cloned().unwrap_or_default();
        let delta = crate::delta::open(session.runtime_env(), &location, crate::delta::Snapshot::Latest).await?;
        let (columns, partition_keys) = crate::delta::definition_parts(&delta)?;
        let refreshed = TableDef { columns, partition_keys, ..definition.clone() };
        self.catalog.create_table(&refreshed, &[], true)
    }

    /// Registers the Delta table at `location` as `database.table`: its columns and partition
    /// keys as its log says now (queries read them from the log each time).
    async fn register_delta_table(
        &self,
        session: &dyn Session,
        (database, table): (String, String),
        location: &str,
        mut properties: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        refuse_credentials(&properties)?;
        let location = self.checked_location(location)?;
        let delta = crate::delta::open(session.runtime_env(), &location, crate::delta::Snapshot::Latest).await?;
        let (columns, partition_keys) = crate::delta::definition_parts(&delta)?;
        properties.retain(|k, _| !k.eq_ignore_ascii_case(crate::delta::TABLE_TYPE));
        properties.insert(crate::delta::TABLE_TYPE.into(), "DELTA".into());
        let definition = TableDef {
            database,
            name: table,
            locations: vec![location],
            format: TableFormat::Delta,
            columns,
            partition_keys,
            properties,
        };
        self.catalog.create_table(&definition, &[], false)?;
        Ok(())
    }

    /// The database and name for a new table, or `None` if it exists and `IF NOT EXISTS` says to
    /// do nothing.
    fn new_table_name(
        &self,
        name: TableReference,
        if_not_exists: bool,
        or_replace: bool,
        database: &str,
    ) -> Result<Option<(String, String)>> {
        let name = name.resolve(DEFAULT_CATALOG, database);
        if name.catalog.as_ref() != DEFAULT_CATALOG {
            return Err(CatalogError::Invalid(format!(
                "unknown catalog {}: tables live in {DEFAULT_CATALOG}",
                name.catalog
            )));
        }
        let (database, table) = (name.schema.to_string(), name.table.to_string());
        if !self.catalog.database_exists(&database)? {
            return Err(CatalogError::UnknownDatabase { database, hint: "; CREATE DATABASE it first" });
        }
        if self.catalog.table(&database, &table)?.is_some() {
            if if_not_exists {
                return Ok(None);
            }
            if !or_replace {
                return Err(CatalogError::TableExists { database, table });
            }
        }
        Ok(Some((database, table)))
    }

    /// Completes a definition (columns from the files if none were declared), checks that it
    /// builds, and stores it with the partitions its layout has now (unless it projects them),
    /// so a new table reads at once, whichever dialect declared it. `MSCK REPAIR TABLE` and
    /// `ALTER TABLE ADD PARTITION` register the partitions that come later.
    async fn store_table(&self, session: &dyn Session, mut definition: TableDef, replace: bool) -> Result<()> {
        refuse_credentials(&definition.properties)?;
        let crawler = Crawler { session };
        crawler.infer_compression(&mut definition).await?;
        if definition.columns.is_empty() {
            // The crawler: columns from the files, and Hive partition keys from the layout.
            if definition.partition_keys.is_empty() {
                definition.partition_keys = crawler.infer_partition_keys(&definition).await?;
            }
            definition.columns = crawler.infer_columns(&definition).await?;
        } else if definition.format == TableFormat::Parquet {
            crawler.match_file_case(&mut definition).await;
        }
        table_provider(&definition, &self.catalog, &Default::default(), None)?;
        let partitions = match Projection::of(&definition)? {
            // Projected partitions must lie where this deployment may read, like any location.
            Some(projection) => {
                self.storage.check_location(projection.template_prefix())?;
                Vec::new()
            }
            None if !definition.partition_keys.is_empty() => crawler.discover_partitions(&definition).await?.partitions,
            None => Vec::new(),
        };
        self.catalog.create_table(&definition, &partitions, replace)?;
        Ok(())
    }

    /// Registers a table whose files a statement of Glaux's wrote, with its partitions, in one
    /// step. `definition`'s location was checked when the statement was planned.
    /// `write` is the write's id in the catalog's journal: its files become the table's in the
    /// same step.
    pub fn register_written_table(&self, definition: &TableDef, partitions: &[Partition], write: &str) -> Result<()> {
        refuse_credentials(&definition.properties)?;
        table_provider(definition, &self.catalog, &Default::default(), None)?;
        self.catalog.create_written_table(definition, partitions, write)
    }

    /// The name a new table gets (`None` if it exists and `if_not_exists`), refused if its
    /// database is unknown or it exists.
    pub fn name_new_table(
        &self,
        name: TableReference,
        if_not_exists: bool,
        database: &str,
    ) -> Result<Option<(String, String)>> {
        self.new_table_name(name, if_not_exists, false, database)
    }

    /// Where a table written without a location goes: `<first warehouse root>/<db>/<table>/`.
    pub fn default_location(&self, database: &str, table: &str) -> Result<String> {
        match self.storage.local_roots().first() {
            Some(root) => {
                let path = root.join(database).join(table);
                let url = url::Url::from_directory_path(&path)
                    .map_err(|()| CatalogError::Invalid(format!("{} is not an absolute path", path.display())))?;
                Ok(url.to_string())
            }
            None => Err(CatalogError::Invalid(
                "no warehouse root to write the table under: give it an external_location".into(),
            )),
        }
    }

    /// Checks a location against the storage rules (a local one must exist), and ends a local
    /// directory's URL in '/' so DataFusion lists it as a prefix.
    pub(crate) fn checked_location(&self, location: &str) -> Result<String> {
        let url = self.storage.check_location(location)?;
        if url.scheme() == "file" {
            let path = url.to_file_path().unwrap_or_default();
            if !path.exists() {
                return Err(LocationError::Missing(location.to_string()).into());
            }
            if path.is_dir() && !url.as_str().ends_with('/') {
                return Ok(format!("{url}/"));
            }
        }
        Ok(url.to_string())
    }
}

/// Parts of a property key that name a credential.
const CREDENTIAL_WORDS: [&str; 8] =
    ["secret", "password", "passwd", "token", "credential", "access_key", "accesskey", "private_key"];

/// Refuses table properties (`OPTIONS`, `TBLPROPERTIES`, `SERDEPROPERTIES`) whose keys look like
/// credentials: the catalog would keep them and `SHOW CREATE TABLE` would show them to every
/// reader. Credentials belong in the storage config, on the servers. The value is never repeated.
pub fn refuse_credentials<'a>(properties: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (key, _) in properties {
        let squashed = key.to_ascii_lowercase().replace(['.', '-'], "_");
        if CREDENTIAL_WORDS.iter().any(|word| squashed.contains(word)) {
            return Err(CatalogError::Invalid(format!(
                "table property '{key}' looks like a credential, and tables never keep credentials (every reader \
                 could see it): configure object-store access on the servers (--storage-config)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn properties_that_look_like_credentials_are_refused_without_their_values() {
        for key in ["aws.secret_access_key", "AWS.ACCESS-KEY-ID", "s3.session.token", "password", "gcp.private_key"] {
            let properties = BTreeMap::from([(key.to_string(), "hunter2".to_string())]);
            let error = refuse_credentials(&properties).unwrap_err().to_string();
            assert!(error.contains(key) && !error.contains("hunter2"), "{error}");
        }
        let fine = BTreeMap::from([
            ("format.has_header".to_string(), "true".to_string()),
            ("projection.enabled".to_string(), "true".to_string()),
            ("serialization.null.format".to_string(), "".to_string()),
        ]);
        assert!(refuse_credentials(&fine).is_ok());
    }
}
