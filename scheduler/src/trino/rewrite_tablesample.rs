//! `t TABLESAMPLE BERNOULLI (p)` and `TABLESAMPLE SYSTEM (p)`: each row of `t` is kept with
//! probability `p` percent (DataFusion parses the clause but ignores it). Glaux samples rows
//! for both methods; Trino's `SYSTEM` samples whole splits, which only changes how the sample
//! clusters.

use std::ops::ControlFlow;

use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::sql::sqlparser::ast::{
    Statement, TableFactor, TableSampleKind, TableSampleMethod, TableSampleUnit, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

pub fn rewrite(statement: &mut Statement) -> Result<()> {
    let mut sampler = Sampler { error: None };
    let _ = statement.visit(&mut sampler);
    match sampler.error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

struct Sampler {
    error: Option<datafusion::error::DataFusionError>,
}

impl VisitorMut for Sampler {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        match sampled(factor) {
            Ok(Some(derived)) => *factor = derived,
            Ok(None) => {}
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The derived table that samples `factor`, if it has a `TABLESAMPLE`.
fn sampled(factor: &TableFactor) -> Result<Option<TableFactor>> {
    let TableFactor::Table { name, alias, sample: Some(kind), .. } = factor else { return Ok(None) };
    let sample = match kind {
        TableSampleKind::BeforeTableAlias(sample) | TableSampleKind::AfterTableAlias(sample) => sample,
    };
    match sample.name {
        Some(TableSampleMethod::Bernoulli | TableSampleMethod::System) | None => {}
        Some(other) => return plan_err!("TABLESAMPLE {other} is not supported: use BERNOULLI or SYSTEM"),
    }
    let Some(quantity) = &sample.quantity else { return plan_err!("TABLESAMPLE needs a percentage") };
    if matches!(quantity.unit, Some(TableSampleUnit::Rows)) {
        return plan_err!("TABLESAMPLE takes a percentage, not a number of rows");
    }
    let alias = match alias {
        Some(alias) => alias.to_string(),
        None => name.0.last().map(|part| part.to_string()).unwrap_or_default(),
    };
    let sql = format!("(SELECT * FROM {name} WHERE random() * 100 < ({})) AS {alias}", quantity.value);
    let mut parser = Parser::new(&GenericDialect {}).try_with_sql(&sql).map_err(|e| plan_datafusion_err!("{e}"))?;
    parser.parse_table_factor().map(Some).map_err(|e| plan_datafusion_err!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_filters() {
        let sql = "SELECT count(*) FROM sales s TABLESAMPLE BERNOULLI (10) JOIN regions TABLESAMPLE SYSTEM (50) ON s.region = regions.name";
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql).expect("parses");
        rewrite(&mut statements[0]).expect("rewrites");
        assert_eq!(
            statements[0].to_string(),
            "SELECT count(*) FROM (SELECT * FROM sales WHERE random() * 100 < (10)) AS s \
             JOIN (SELECT * FROM regions WHERE random() * 100 < (50)) AS regions ON s.region = regions.name"
        );
    }
}
