//! `ALTER TABLE` statements that change a table's columns, in Athena's (Hive's) words and in
//! Trino's:
//!
//! ```text
//! ALTER TABLE t ADD COLUMNS (col type [COMMENT '..'], ...)     -- Athena
//! ALTER TABLE t ADD COLUMN col type                            -- Trino
//! ALTER TABLE t CHANGE [COLUMN] old new type [COMMENT '..']    -- Athena
//! ALTER TABLE t RENAME COLUMN old TO new                       -- Trino
//! ALTER TABLE t DROP [COLUMN] col                              -- Athena (Iceberg), Trino
//! ```

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{CatalogError, Result};
use crate::hive_ddl::Tokens;

/// What an `ALTER TABLE` does to the columns.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnChange {
    /// New columns, after the others, NULL in the rows already written.
    Add(Vec<(String, DataType)>),
    /// `old` is named `new`; `data_type` as the statement says it (Athena's `CHANGE` repeats
    /// the type; a different one is a type change).
    Rename {
        old: String,
        new: String,
        data_type: Option<DataType>,
    },
    Drop(String),
}

/// Reads `sql` as an `ALTER TABLE` of columns: `None` if it is not one, else the table's name
/// as written (`[db.]t`, lowercased unless quoted) and the change.
pub fn parse_alter_columns(sql: &str) -> Option<Result<(Vec<String>, ColumnChange)>> {
    let mut tokens = Tokens::new(sql).ok()?;
    if !(tokens.keyword("ALTER") && tokens.keyword("TABLE")) {
        return None;
    }
    let mut name = vec![tokens.identifier().ok()?];
    while tokens.peek() == Some(&Token::Period) {
        tokens.next();
        name.push(tokens.identifier().ok()?);
    }
    let change = if tokens.keyword("ADD") {
        if tokens.keyword("COLUMNS") {
            tokens.columns().map(ColumnChange::Add)
        } else if tokens.keyword("COLUMN") {
            let column = tokens.identifier();
            column.and_then(|c| Ok(ColumnChange::Add(vec![(c, tokens.hive_type()?)])))
        } else {
            return None;
        }
    } else if tokens.keyword("CHANGE") {
        tokens.keyword("COLUMN");
        (|| {
            let old = tokens.identifier()?;
            let new = tokens.identifier()?;
            let data_type = Some(tokens.hive_type()?);
            if tokens.keyword("COMMENT") {
                tokens.next();
            }
            Ok(ColumnChange::Rename { old, new, data_type })
        })()
    } else if tokens.keyword("RENAME") {
        if !tokens.keyword("COLUMN") {
            return None;
        }
        (|| {
            let old = tokens.identifier()?;
            tokens.expect_keyword("TO")?;
            Ok(ColumnChange::Rename { old, new: tokens.identifier()?, data_type: None })
        })()
    } else if tokens.keyword("DROP") {
        if tokens.peek_keyword("PARTITION") || tokens.peek_keyword("IF") {
            return None;
        }
        tokens.keyword("COLUMN");
        tokens.identifier().map(ColumnChange::Drop)
    } else if tokens.keyword("REPLACE") {
        if !tokens.keyword("COLUMNS") {
            return None;
        }
        Err(CatalogError::Unsupported(
            "ALTER TABLE REPLACE COLUMNS is not supported: ADD COLUMNS, CHANGE COLUMN and DROP COLUMN are".into(),
        ))
    } else {
        return None;
    };
    Some(change.and_then(|change| match tokens.peek() {
        None => Ok((name, change)),
        Some(_) => Err(tokens.unexpected("the end of the statement")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> (Vec<String>, ColumnChange) {
        parse_alter_columns(sql).expect("an ALTER of columns").expect("parses")
    }

    #[test]
    fn reads_athenas_and_trinos_column_changes() {
        let add = parsed("ALTER TABLE db.Reviews ADD COLUMNS (helpful INT COMMENT 'votes', tags array<string>)");
        assert_eq!(add.0, ["db", "reviews"]);
        let tags = DataType::List(std::sync::Arc::new(datafusion::arrow::datatypes::Field::new(
            "element",
            DataType::Utf8,
            true,
        )));
        assert!(matches!(&add.1, ColumnChange::Add(c) if c.len() == 2 && c[0] == ("helpful".into(), DataType::Int32)));
        assert!(matches!(&add.1, ColumnChange::Add(c) if c[1].1.equals_datatype(&tags)), "{add:?}");
        assert_eq!(
            parsed("ALTER TABLE t ADD COLUMN n bigint").1,
            ColumnChange::Add(vec![("n".into(), DataType::Int64)])
        );
        let change = parsed("ALTER TABLE t CHANGE COLUMN a b string COMMENT 'x'").1;
        assert_eq!(change, ColumnChange::Rename { old: "a".into(), new: "b".into(), data_type: Some(DataType::Utf8) });
        let rename = parsed("ALTER TABLE t RENAME COLUMN a TO \"B\"").1;
        assert_eq!(rename, ColumnChange::Rename { old: "a".into(), new: "B".into(), data_type: None });
        assert_eq!(parsed("ALTER TABLE t DROP COLUMN c").1, ColumnChange::Drop("c".into()));
        assert_eq!(parsed("ALTER TABLE t DROP c").1, ColumnChange::Drop("c".into()));
    }

    #[test]
    fn leaves_other_alters_alone_and_refuses_what_it_cannot_do() {
        for other in [
            "ALTER TABLE t SET TBLPROPERTIES ('a' = 'b')",
            "ALTER TABLE t ADD PARTITION (day = '1')",
            "ALTER TABLE t DROP PARTITION (day = '1')",
            "ALTER TABLE t DROP IF EXISTS PARTITION (day = '1')",
            "SELECT 1",
        ] {
            assert!(parse_alter_columns(other).is_none(), "{other}");
        }
        for bad in [
            "ALTER TABLE t ADD COLUMNS (a)",
            "ALTER TABLE t ADD COLUMN a int extra",
            "ALTER TABLE t REPLACE COLUMNS (a int)",
        ] {
            assert!(matches!(parse_alter_columns(bad), Some(Err(_))), "{bad}");
        }
    }
}
