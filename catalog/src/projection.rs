//! Partition projection, as Athena defines it in TBLPROPERTIES: partitions computed from the
//! table's properties and the query's predicates, with nothing listed or registered.
//!
//! ```text
//! 'projection.enabled' = 'true',
//! 'projection.<col>.type' = 'enum' | 'integer' | 'date' | 'injected',
//! 'projection.<col>.values' = 'a,b,c'                       (enum)
//! 'projection.<col>.range' = '0,100' | '2023-01-01,NOW'     (integer, date; NOW[+-]N UNITS)
//! 'projection.<col>.interval' = '1', '.interval.unit' = 'HOURS', '.digits' = '2'
//! 'projection.<col>.format' = 'yyyy/MM/dd/HH'               (date, Java pattern)
//! 'storage.location.template' = 's3://bucket/events/${col}/...'
//! ```
//!
//! Each column's values are narrowed by the predicates on that column alone, then combined, so a
//! table of 100k+ hourly partitions plans in milliseconds.

use std::collections::BTreeMap;

use chrono::{Duration, Months, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, plan_err};

use crate::definitions::TableDef;
use crate::partition_filter::PartitionFilter;

/// More values than this in one column, or partitions in a query, is refused with advice.
pub const MAX_PROJECTED: usize = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl Unit {
    fn parse(text: &str) -> Option<Self> {
        let upper = text.trim().to_ascii_uppercase();
        Some(match upper.trim_end_matches('S') {
            "YEAR" => Self::Years,
            "MONTH" => Self::Months,
            "WEEK" => Self::Weeks,
            "DAY" => Self::Days,
            "HOUR" => Self::Hours,
            "MINUTE" => Self::Minutes,
            "SECOND" => Self::Seconds,
            _ => return None,
        })
    }

    fn add(self, time: NaiveDateTime, n: i64) -> Option<NaiveDateTime> {
        let months = |m: i64| {
            let months = Months::new(u32::try_from(m.unsigned_abs()).ok()?);
            if m >= 0 { time.checked_add_months(months) } else { time.checked_sub_months(months) }
        };
        match self {
            Self::Years => months(n.checked_mul(12)?),
            Self::Months => months(n),
            Self::Weeks => time.checked_add_signed(Duration::try_weeks(n)?),
            Self::Days => time.checked_add_signed(Duration::try_days(n)?),
            Self::Hours => time.checked_add_signed(Duration::try_hours(n)?),
            Self::Minutes => time.checked_add_signed(Duration::try_minutes(n)?),
            Self::Seconds => time.checked_add_signed(Duration::try_seconds(n)?),
        }
    }
}

#[derive(Debug)]
enum Domain {
    Enum(Vec<String>),
    Integer { start: i64, end: i64, interval: i64, digits: usize },
    Date { start: NaiveDateTime, end: NaiveDateTime, interval: i64, unit: Unit, format: String },
    Injected,
}

/// One projected value: as the column reads it, and as it is written in the location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectedValue {
    pub value: String,
    pub path: String,
}

#[derive(Debug)]
struct ProjectedColumn {
    name: String,
    data_type: DataType,
    domain: Domain,
}

/// A table's projection: how to enumerate each partition column, and where partitions live.
#[derive(Debug)]
pub struct Projection {
    columns: Vec<ProjectedColumn>,
    template: String,
}

/// A partition chosen by projection: its values (as the columns read them) and its location.
#[derive(Debug, PartialEq, Eq)]
pub struct ProjectedPartition {
    pub values: Vec<String>,
    pub location: String,
}

fn property<'a>(properties: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.trim())
}

/// Java `DateTimeFormatter` pattern (`yyyy-MM-dd HH:mm:ss`, `'T'` literals) to chrono's, and
/// the finest unit it shows.
fn chrono_format(java: &str) -> Result<(String, Unit)> {
    use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
    let format = glaux_functions::joda_to_strftime(java)?;
    // Projected values step by calendar units; a week or weekday field has no place in that.
    let weekly = StrftimeItems::new(&format).any(|item| {
        matches!(
            item,
            Item::Numeric(
                Numeric::IsoWeek
                    | Numeric::WeekFromMon
                    | Numeric::WeekFromSun
                    | Numeric::NumDaysFromSun
                    | Numeric::WeekdayFromMon,
                _
            ) | Item::Fixed(Fixed::ShortWeekdayName | Fixed::LongWeekdayName)
        )
    });
    if weekly {
        return plan_err!("date format {java:?}: weeks and weekdays are not supported (use y, M, d, H, m, s)");
    }
    let unit = StrftimeItems::new(&format)
        .filter_map(|item| match item {
            Item::Numeric(Numeric::Year | Numeric::YearMod100 | Numeric::IsoYear | Numeric::IsoYearMod100, _) => {
                Some(Unit::Years)
            }
            Item::Numeric(Numeric::Month, _) | Item::Fixed(Fixed::ShortMonthName | Fixed::LongMonthName) => {
                Some(Unit::Months)
            }
            Item::Numeric(Numeric::Day | Numeric::Ordinal, _) => Some(Unit::Days),
            Item::Numeric(Numeric::Hour | Numeric::Hour12, _) => Some(Unit::Hours),
            Item::Numeric(Numeric::Minute, _) => Some(Unit::Minutes),
            Item::Numeric(Numeric::Second | Numeric::Nanosecond, _)
            | Item::Fixed(Fixed::Nanosecond3 | Fixed::Nanosecond6 | Fixed::Nanosecond9) => Some(Unit::Seconds),
            _ => None,
        })
        .max_by_key(|unit| *unit as u8);
    match unit {
        Some(unit) => Ok((format, unit)),
        None => plan_err!("date format {java:?} has no date fields"),
    }
}

/// Parses `text` written in `format`; formats without a day (or month) read the first one.
fn parse_date(text: &str, format: &str) -> Option<NaiveDateTime> {
    if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
        return Some(time);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, format) {
        return date.and_hms_opt(0, 0, 0);
    }
    for (text_pad, format_pad) in [("|01", "|%d"), ("|01|01", "|%m|%d")] {
        if let Ok(date) = NaiveDate::parse_from_str(&format!("{text}{text_pad}"), &format!("{format}{format_pad}")) {
            return date.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// One end of a date range: a date in the column's format, or `NOW[+|-N UNIT]`.
fn range_end(text: &str, format: &str, now: NaiveDateTime) -> Result<NaiveDateTime> {
    let upper = text.trim().to_ascii_uppercase();
    if let Some(offset) = upper.strip_prefix("NOW") {
        let offset = offset.trim();
        if offset.is_empty() {
            return Ok(now);
        }
        let (sign, rest) = match offset.split_at(1) {
            ("+", rest) => (1, rest),
            ("-", rest) => (-1, rest),
            _ => return plan_err!("date range end {text:?}: expected NOW+N UNITS or NOW-N UNITS"),
        };
        let digits: String = rest.trim().chars().take_while(char::is_ascii_digit).collect();
        let amount: i64 =
            digits.parse().map_err(|_| DataFusionError::Plan(format!("date range end {text:?} has no amount")))?;
        let unit = Unit::parse(&rest.trim()[digits.len()..])
            .ok_or_else(|| DataFusionError::Plan(format!("date range end {text:?} has an unknown unit")))?;
        return unit
            .add(now, sign * amount)
            .ok_or_else(|| DataFusionError::Plan(format!("date range end {text:?} is out of range")));
    }
    parse_date(text.trim(), format)
        .ok_or_else(|| DataFusionError::Plan(format!("date range end {text:?} does not match the column's format")))
}

fn two_ends<'a>(column: &str, range: Option<&'a str>) -> Result<(&'a str, &'a str)> {
    let Some(range) = range else { return plan_err!("projection.{column}.range is missing") };
    match range.split_once(',') {
        Some((start, end)) => Ok((start.trim(), end.trim())),
        None => plan_err!("projection.{column}.range {range:?} must be 'start,end'"),
    }
}

impl ProjectedColumn {
    fn parse(name: &str, data_type: DataType, properties: &BTreeMap<String, String>) -> Result<Self> {
        let get = |suffix: &str| property(properties, &format!("projection.{name}.{suffix}"));
        let interval = match get("interval") {
            Some(text) => text.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
                DataFusionError::Plan(format!("projection.{name}.interval {text:?} is not a positive integer"))
            })?,
            None => 1,
        };
        let domain = match get("type").map(str::to_ascii_lowercase).as_deref() {
            Some("enum") => {
                let Some(values) = get("values") else { return plan_err!("projection.{name}.values is missing") };
                Domain::Enum(values.split(',').map(|v| v.trim().to_string()).collect())
            }
            Some("integer") => {
                let (start, end) = two_ends(name, get("range"))?;
                let number = |text: &str| {
                    text.parse::<i64>().map_err(|_| {
                        DataFusionError::Plan(format!("projection.{name}.range: {text:?} is not an integer"))
                    })
                };
                let digits = match get("digits") {
                    Some(d) => {
                        d.parse().map_err(|_| DataFusionError::Plan(format!("projection.{name}.digits {d:?}")))?
                    }
                    None => 0,
                };
                Domain::Integer { start: number(start)?, end: number(end)?, interval, digits }
            }
            Some("date") => {
                let Some(java) = get("format") else { return plan_err!("projection.{name}.format is missing") };
                let (format, finest) = chrono_format(java)?;
                let unit = match get("interval.unit") {
                    Some(text) => Unit::parse(text).ok_or_else(|| {
                        DataFusionError::Plan(format!("projection.{name}.interval.unit {text:?} is unknown"))
                    })?,
                    None => finest,
                };
                let (start, end) = two_ends(name, get("range"))?;
                let now = Utc::now().naive_utc();
                Domain::Date {
                    start: range_end(start, &format, now)?,
                    end: range_end(end, &format, now)?,
                    interval,
                    unit,
                    format,
                }
            }
            Some("injected") => Domain::Injected,
            Some(other) => {
                return plan_err!("projection.{name}.type '{other}' is unknown: use enum, integer, date or injected");
            }
            None => return plan_err!("projection.{name}.type is missing: every partition column needs one"),
        };
        Ok(Self { name: name.to_string(), data_type, domain })
    }

    /// The column's values, before any predicate; `pinned` supplies an injected column's.
    fn values(&self, pinned: Option<Vec<String>>) -> Result<Vec<ProjectedValue>> {
        let too_many = || {
            DataFusionError::Plan(format!(
                "projection of {} has more than {MAX_PROJECTED} values; narrow its range or interval",
                self.name
            ))
        };
        let mut values = Vec::new();
        match &self.domain {
            Domain::Enum(list) => {
                values = list.iter().map(|v| ProjectedValue { value: v.clone(), path: v.clone() }).collect();
            }
            Domain::Injected => match pinned {
                Some(list) => values = list.into_iter().map(|v| ProjectedValue { value: v.clone(), path: v }).collect(),
                None => {
                    return plan_err!(
                        "partition column {} is injected (projection.{}.type = 'injected'): \
                         the query must give its value with = or IN",
                        self.name,
                        self.name
                    );
                }
            },
            Domain::Integer { start, end, interval, digits } => {
                let text_column = matches!(self.data_type, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
                let mut n = *start;
                while n <= *end {
                    let padded = format!("{n:0digits$}", digits = *digits);
                    let value = if text_column { padded.clone() } else { n.to_string() };
                    values.push(ProjectedValue { value, path: padded });
                    if values.len() > MAX_PROJECTED {
                        return Err(too_many());
                    }
                    n = n.checked_add(*interval).ok_or_else(too_many)?;
                }
            }
            Domain::Date { start, end, interval, unit, format } => {
                let mut step = 0i64;
                while let Some(time) = unit.add(*start, step * interval) {
                    if time > *end {
                        break;
                    }
                    let path = time.format(format).to_string();
                    let value = match self.data_type {
                        DataType::Date32 | DataType::Date64 => time.format("%Y-%m-%d").to_string(),
                        DataType::Timestamp(_, _) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
                        _ => path.clone(),
                    };
                    values.push(ProjectedValue { value, path });
                    if values.len() > MAX_PROJECTED {
                        return Err(too_many());
                    }
                    step += 1;
                }
            }
        }
        // An injected value comes from the query, not the table's definition: it may not step
        // out of its place in the template.
        let injected = matches!(self.domain, Domain::Injected);
        if let Some(bad) = values.iter().find(|v| injected && !is_path_segment(&v.path)) {
            return plan_err!(
                "partition column {} cannot be '{}': a projected value is one path segment (no '/', '\\', '..' \
                 or control characters)",
                self.name,
                bad.path.escape_debug()
            );
        }
        Ok(values)
    }
}

/// True if `text` can stand in a location template without changing which directory it names.
fn is_path_segment(text: &str) -> bool {
    !text.is_empty() && !text.contains(['/', '\\']) && !text.contains("..") && !text.chars().any(char::is_control)
}

impl Projection {
    /// The table's projection, or `None` unless `projection.enabled` is true.
    pub fn of(table: &TableDef) -> Result<Option<Self>> {
        if !property(&table.properties, "projection.enabled").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if table.partition_keys.is_empty() {
            return plan_err!("projection.enabled is set but the table has no partition columns");
        }
        let columns = table
            .partition_keys
            .iter()
            .map(|key| ProjectedColumn::parse(&key.name, key.arrow_type()?, &table.properties))
            .collect::<Result<Vec<_>>>()?;
        let template = match property(&table.properties, "storage.location.template") {
            Some(template) => {
                if let Some(missing) = columns.iter().find(|c| !template.contains(&format!("${{{}}}", c.name))) {
                    return plan_err!("storage.location.template does not use partition column ${{{}}}", missing.name);
                }
                template.to_string()
            }
            None => {
                let Some(location) = table.locations.first() else { return plan_err!("table has no location") };
                let mut template = location.trim_end_matches('/').to_string();
                for column in &columns {
                    template.push_str(&format!("/{0}=${{{0}}}", column.name));
                }
                template
            }
        };
        Ok(Some(Self { columns, template }))
    }

    /// The partitions that satisfy `filter`: each column's values narrowed by the predicates on it
    /// alone, then every combination checked against all partition predicates.
    pub fn partitions(&self, filter: &PartitionFilter, state: &dyn Session) -> Result<Vec<ProjectedPartition>> {
        let mut per_column = Vec::with_capacity(self.columns.len());
        for (i, column) in self.columns.iter().enumerate() {
            let values = column.values(filter.pinned_values(i))?;
            let texts: Vec<&str> = values.iter().map(|v| v.value.as_str()).collect();
            let keep = filter.select(state, &[i], &[texts])?;
            per_column.push(values.into_iter().zip(keep).filter_map(|(v, k)| k.then_some(v)).collect::<Vec<_>>());
        }
        let combinations = per_column.iter().try_fold(1usize, |n, values| n.checked_mul(values.len()));
        match combinations {
            Some(n) if n <= MAX_PROJECTED => {}
            _ => {
                return plan_err!(
                    "the query would read more than {MAX_PROJECTED} projected partitions; add predicates on {}",
                    self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        // Every combination, column-major, then checked against all partition predicates at once.
        let mut rows: Vec<Vec<&ProjectedValue>> = vec![Vec::new()];
        for values in &per_column {
            rows =
                rows.into_iter().flat_map(|row| values.iter().map(move |v| [row.as_slice(), &[v]].concat())).collect();
        }
        let columns: Vec<usize> = (0..self.columns.len()).collect();
        let texts: Vec<Vec<&str>> =
            columns.iter().map(|&c| rows.iter().map(|row| row[c].value.as_str()).collect()).collect();
        let keep = if rows.is_empty() { Vec::new() } else { filter.select(state, &columns, &texts)? };
        Ok(rows
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(row, _)| {
                let mut location = self.template.clone();
                for (column, value) in self.columns.iter().zip(row) {
                    location = location.replace(&format!("${{{}}}", column.name), &value.path);
                }
                if !location.ends_with('/') {
                    location.push('/');
                }
                ProjectedPartition { values: row.iter().map(|v| v.value.clone()).collect(), location }
            })
            .collect())
    }

    /// The fixed start of the location template (up to its first `${...}`): every projected
    /// partition lives under it.
    pub fn template_prefix(&self) -> &str {
        let end = self.template.find("${").unwrap_or(self.template.len());
        let prefix = &self.template[..end];
        // Up to the last '/', so `.../dt=${dt}/` gives `.../`.
        &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)]
    }

    /// How many partitions the projection spans with no predicate (`None` when a column is
    /// injected, which has no bounds of its own). For "partitions selected of total".
    pub fn total(&self) -> Option<usize> {
        self.columns.iter().try_fold(1usize, |n, column| match column.values(None) {
            Ok(values) => n.checked_mul(values.len()),
            Err(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{ColumnDef, TableFormat};
    use chrono::Datelike;
    use datafusion::arrow::datatypes::Field;
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::SessionContext;

    fn table(properties: &[(&str, &str)], keys: &[(&str, DataType)]) -> TableDef {
        TableDef {
            database: "default".into(),
            name: "t".into(),
            locations: vec!["s3://lake/events/".into()],
            format: TableFormat::Json,
            columns: vec![ColumnDef::new("v", &DataType::Int64)],
            partition_keys: keys.iter().map(|(k, t)| ColumnDef::new(*k, t)).collect(),
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn filter(table: &TableDef, filters: &[datafusion::logical_expr::Expr]) -> PartitionFilter {
        let keys = table.partition_keys.iter().map(|k| Field::new(&k.name, k.arrow_type().unwrap(), true)).collect();
        PartitionFilter::new(keys, filters)
    }

    #[test]
    fn hourly_layout_over_years_plans_only_the_hours_asked_for() {
        let table = table(
            &[
                ("projection.enabled", "true"),
                ("projection.dt.type", "date"),
                ("projection.dt.format", "yyyy/MM/dd/HH"),
                ("projection.dt.range", "2015/01/01/00,NOW"),
                ("projection.dt.interval.unit", "HOURS"),
                ("storage.location.template", "s3://lake/firehose/${dt}/"),
            ],
            &[("dt", DataType::Utf8)],
        );
        let projection = Projection::of(&table).unwrap().unwrap();
        assert!(projection.total().unwrap() > 90_000);
        let state = SessionContext::new().state();
        let f = filter(&table, &[col("dt").between(lit("2023/06/18/22"), lit("2023/06/19/01"))]);
        let partitions = projection.partitions(&f, &state).unwrap();
        let locations: Vec<&str> = partitions.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            vec![
                "s3://lake/firehose/2023/06/18/22/",
                "s3://lake/firehose/2023/06/18/23/",
                "s3://lake/firehose/2023/06/19/00/",
                "s3://lake/firehose/2023/06/19/01/"
            ]
        );
    }

    proptest::proptest! {
        /// Whatever value a query injects, the partition it names is one directory below the
        /// template's fixed prefix, or the query is refused.
        #[test]
        fn injected_values_stay_in_their_place(value in "\\PC{0,12}") {
            let table = table(
                &[
                    ("projection.enabled", "true"),
                    ("projection.device.type", "injected"),
                    ("storage.location.template", "s3://lake/events/device=${device}/"),
                ],
                &[("device", DataType::Utf8)],
            );
            let projection = Projection::of(&table).unwrap().unwrap();
            let state = SessionContext::new().state();
            let f = filter(&table, &[col("device").eq(lit(value.clone()))]);
            if let Ok(partitions) = projection.partitions(&f, &state) {
                for partition in partitions {
                    let rest = partition.location.strip_prefix("s3://lake/events/device=").unwrap();
                    proptest::prop_assert_eq!(rest.matches('/').count(), 1, "{}", partition.location);
                    proptest::prop_assert!(!partition.location.contains(".."), "{}", partition.location);
                }
            }
        }
    }

    #[test]
    fn enum_integer_and_injected_columns_combine() {
        let table = table(
            &[
                ("projection.enabled", "true"),
                ("projection.region.type", "enum"),
                ("projection.region.values", "eu,us,apac"),
                ("projection.shard.type", "integer"),
                ("projection.shard.range", "1,12"),
                ("projection.shard.digits", "2"),
                ("projection.device.type", "injected"),
            ],
            &[("region", DataType::Utf8), ("shard", DataType::Int32), ("device", DataType::Utf8)],
        );
        let projection = Projection::of(&table).unwrap().unwrap();
        assert_eq!(projection.total(), None);
        let state = SessionContext::new().state();
        let unpinned = filter(&table, &[col("region").eq(lit("eu"))]);
        let error = projection.partitions(&unpinned, &state).unwrap_err().to_string();
        assert!(error.contains("injected"), "{error}");
        let f = filter(
            &table,
            &[col("device").eq(lit("phone")), col("region").not_eq(lit("apac")).and(col("shard").gt(lit(10)))],
        );
        let partitions = projection.partitions(&f, &state).unwrap();
        assert_eq!(partitions.len(), 4);
        assert_eq!(partitions[0].values, vec!["eu", "11", "phone"]);
        assert_eq!(partitions[0].location, "s3://lake/events/region=eu/shard=11/device=phone/");
        assert_eq!(projection.template_prefix(), "s3://lake/events/");
        for escape in ["../../.glaux", "a/b", "..", "", "x\\y", "a\nb"] {
            let f = filter(&table, &[col("device").eq(lit(escape)), col("region").eq(lit("eu"))]);
            let error = projection.partitions(&f, &state).unwrap_err().to_string();
            assert!(error.contains("one path segment"), "{escape:?}: {error}");
        }
        let table = self::table(&[("projection.enabled", "true")], &[("x", DataType::Utf8)]);
        assert!(Projection::of(&table).unwrap_err().to_string().contains("projection.x.type"));
    }

    #[test]
    fn java_date_patterns_and_relative_ranges() {
        assert_eq!(chrono_format("yyyy-MM-dd'T'HH").unwrap(), ("%Y-%m-%dT%H".to_string(), Unit::Hours));
        assert_eq!(chrono_format("yyyy/MM").unwrap().1, Unit::Months);
        assert!(chrono_format("yyyy-ww").is_err());
        let now = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap().and_hms_opt(5, 0, 0).unwrap();
        assert_eq!(range_end("NOW-3YEARS", "%Y", now).unwrap().year(), 2021);
        assert_eq!(range_end("2023/06", "%Y/%m", now).unwrap().month(), 6);
        assert!(range_end("NOW-3 FORTNIGHTS", "%Y", now).is_err());
    }
}
