//! `FROM t CROSS JOIN UNNEST(t.a [, t.b]) [WITH ORDINALITY] AS u(x [, y] [, n])`, Trino's way to
//! turn arrays into rows, as a derived table DataFusion plans:
//!
//! ```sql
//! FROM (SELECT t.*, unnest(t.a) AS x, unnest(t.b) AS y,
//!              unnest(generate_series(1, greatest(cardinality(t.a), cardinality(t.b)))) AS n
//!       FROM t) AS t
//! ```
//!
//! DataFusion zips several `unnest`s in one projection as Trino zips the arrays of one UNNEST.
//! The derived table keeps `t`'s name, so `t.col` still resolves, and references to `u.x` become
//! `t.x`. A map unnests into its keys and values (`UNNEST(m) AS u(k, v)`), an array of rows into
//! one column per field (`UNNEST(items) AS u(sku, qty)`, named by position). Telling those two
//! apart takes the array's type: [`rewrite`] names the expressions whose type it needs
//! ([`Probe`]s), and the caller plans them and rewrites again with their types. The comma form
//! (`FROM t, UNNEST(...)`) and `JOIN UNNEST(...) ON true` are the same. An UNNEST whose left
//! side is a join is refused with a hint (put the join in a subquery).

use std::collections::HashMap;
use std::ops::ControlFlow;

use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, plan_datafusion_err, plan_err};
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Join, JoinConstraint, JoinOperator, Select, Statement, TableFactor, Value, VisitMut, VisitorMut,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// An UNNEST whose array type decides its rewrite: `sql` selects the array from the table
/// before it, so planning `sql` tells the type; `key` names it for [`rewrite`].
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub key: String,
    pub sql: String,
}

/// Rewrites the statement's UNNESTs, with the array types known so far (by [`Probe::key`]);
/// returns the probes for arrays whose type would change the rewrite and is not known. Without
/// a type, a single array unnested into two columns is read as a map.
pub fn rewrite(statement: &mut Statement, types: &HashMap<String, DataType>) -> Result<Vec<Probe>> {
    let with = match statement {
        Statement::Query(query) => query.with.as_ref().map(|w| format!("{w} ")).unwrap_or_default(),
        _ => String::new(),
    };
    let mut unnester = Unnester { renames: HashMap::new(), error: None, types, with, probes: Vec::new() };
    let _ = statement.visit(&mut unnester);
    if let Some(error) = unnester.error {
        return Err(error);
    }
    let probes = unnester.probes;
    if unnester.renames.is_empty() {
        return Ok(probes);
    }
    // `u.x` is now a column of the derived table that took the left side's name.
    let renames = unnester.renames;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 2
            && let Some(table) = renames.get(&parts[0].value.to_lowercase())
        {
            parts[0] = Ident::new(table.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(probes)
}

struct Unnester<'a> {
    /// Unnest alias → the name of the derived table now holding its columns.
    renames: HashMap<String, String>,
    error: Option<DataFusionError>,
    types: &'a HashMap<String, DataType>,
    /// The statement's `WITH` clause, which a probe needs for the tables it names.
    with: String,
    probes: Vec<Probe>,
}

impl VisitorMut for Unnester<'_> {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        match self.unnest_select(select) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

fn is_unnest(factor: &TableFactor) -> bool {
    matches!(factor, TableFactor::UNNEST { .. })
}

/// Joins that mean "every element with its row": `CROSS JOIN`, and `[LEFT] JOIN ... ON true`.
fn is_lateral_join(operator: &JoinOperator) -> bool {
    let on_true = |c: &JoinConstraint| match c {
        JoinConstraint::None => true,
        JoinConstraint::On(Expr::Value(v)) => matches!(v.value, Value::Boolean(true)),
        _ => false,
    };
    match operator {
        JoinOperator::CrossJoin(c) => on_true(c),
        JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
            on_true(c)
        }
        _ => false,
    }
}

impl Unnester<'_> {
    fn unnest_select(&mut self, select: &mut Select) -> Result<()> {
        // `FROM t, UNNEST(...)`: the comma is a cross join.
        let mut i = 1;
        while i < select.from.len() {
            if is_unnest(&select.from[i].relation) {
                let item = select.from.remove(i);
                let joins = &mut select.from[i - 1].joins;
                joins.push(Join {
                    relation: item.relation,
                    global: false,
                    join_operator: JoinOperator::CrossJoin(JoinConstraint::None),
                });
                joins.extend(item.joins);
            } else {
                i += 1;
            }
        }
        for from in &mut select.from {
            if is_unnest(&from.relation) {
                // `FROM UNNEST(ARRAY[...]) AS u(x)`: rows of the arrays alone.
                from.relation = self.fold(None, from.relation.clone())?;
            }
            let mut j = 0;
            while j < from.joins.len() {
                if !is_unnest(&from.joins[j].relation) {
                    j += 1;
                    continue;
                }
                if j > 0 {
                    return plan_err!(
                        "UNNEST after a JOIN is not supported yet: join in a subquery, then UNNEST from it \
                         (FROM (SELECT ... FROM a JOIN b ON ...) ab CROSS JOIN UNNEST(ab.items) AS u(item))"
                    );
                }
                if !is_lateral_join(&from.joins[j].join_operator) {
                    return plan_err!("UNNEST joins its table with CROSS JOIN, or JOIN ... ON true");
                }
                let join = from.joins.remove(0);
                let left = from.relation.clone();
                from.relation = self.fold(Some(left), join.relation)?;
            }
        }
        Ok(())
    }

    /// `left CROSS JOIN unnest` as one derived table named as `left` is (without `left`, the
    /// unnest alone, named as its alias).
    fn fold(&mut self, left: Option<TableFactor>, unnest: TableFactor) -> Result<TableFactor> {
        let TableFactor::UNNEST { alias, array_exprs, with_offset, with_ordinality, .. } = unnest else {
            return plan_err!("not an UNNEST");
        };
        if with_offset {
            return plan_err!("UNNEST ... WITH OFFSET is not Trino SQL: use WITH ORDINALITY");
        }
        let name = match &left {
            Some(TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. }) => {
                alias.name.value.clone()
            }
            Some(TableFactor::Table { name, alias: None, .. }) => {
                name.0.last().map(|p| p.to_string()).unwrap_or_default()
            }
            Some(_) => {
                return plan_err!("the table before UNNEST needs a name: FROM (...) AS t CROSS JOIN UNNEST(t.items)");
            }
            None => alias.as_ref().map_or_else(|| "_unnest".to_string(), |a| a.name.value.clone()),
        };
        let columns: Vec<String> =
            alias.as_ref().map(|a| a.columns.iter().map(|c| c.name.to_string()).collect()).unwrap_or_default();
        let column = |i: usize| columns.get(i).cloned().unwrap_or_else(|| format!("_col{i}"));
        let mut items = if left.is_some() { vec![format!("{name}.*")] } else { Vec::new() };
        let arrays: Vec<String> = array_exprs.iter().map(ToString::to_string).collect();
        // One array given several names: a map's keys and values, or the fields of rows.
        let values = columns.len().saturating_sub(usize::from(with_ordinality));
        let element_type = if arrays.len() == 1 && values >= 2 {
            let key = format!("{}\u{0}{}", left.as_ref().map(ToString::to_string).unwrap_or_default(), arrays[0]);
            let known = self.types.get(&key).cloned();
            if known.is_none() {
                let from = left.as_ref().map(|l| format!(" FROM {l}")).unwrap_or_default();
                self.probes.push(Probe { sql: format!("{}SELECT {}{from}", self.with, arrays[0]), key });
            }
            known
        } else {
            None
        };
        match element_type {
            Some(DataType::List(field) | DataType::LargeList(field))
                if matches!(field.data_type(), DataType::Struct(_)) =>
            {
                let DataType::Struct(fields) = field.data_type() else { return plan_err!("not a row") };
                if fields.len() != values {
                    return plan_err!(
                        "UNNEST of an array of rows with {} fields ({}) names {values} columns",
                        fields.len(),
                        fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
                items.extend(fields.iter().enumerate().map(|(i, f)| {
                    format!("get_field(unnest({}), '{}') AS {}", arrays[0], f.name().replace('\'', "''"), column(i))
                }));
            }
            _ if arrays.len() == 1 && values == 2 => {
                items.push(format!("unnest(map_keys({})) AS {}", arrays[0], column(0)));
                items.push(format!("unnest(map_values({})) AS {}", arrays[0], column(1)));
            }
            _ => items.extend(arrays.iter().enumerate().map(|(i, array)| format!("unnest({array}) AS {}", column(i)))),
        }
        if with_ordinality {
            let lengths: Vec<String> = arrays.iter().map(|a| format!("cardinality({a})")).collect();
            let longest =
                if lengths.len() == 1 { lengths[0].clone() } else { format!("greatest({})", lengths.join(", ")) };
            items.push(format!("unnest(generate_series(1, {longest})) AS {}", column(values.max(arrays.len()))));
        }
        let sql = match left {
            Some(left) => {
                if let Some(alias) = &alias {
                    self.renames.insert(alias.name.value.to_lowercase(), name.clone());
                }
                format!("(SELECT {} FROM {left}) AS {name}", items.join(", "))
            }
            None => format!("(SELECT {}) AS {name}", items.join(", ")),
        };
        let mut parser = Parser::new(&GenericDialect {}).try_with_sql(&sql).map_err(|e| plan_datafusion_err!("{e}"))?;
        parser.parse_table_factor().map_err(|e| plan_datafusion_err!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| plan_datafusion_err!("{e}"))?;
        rewrite(&mut statements[0], &HashMap::new())?;
        Ok(statements[0].to_string())
    }

    #[test]
    fn unnest_becomes_a_derived_table() {
        assert_eq!(
            rewritten("SELECT o.id, i.item FROM orders o CROSS JOIN UNNEST(o.items) AS i(item) WHERE i.item <> 'x' ORDER BY i.item")
                .expect("rewrites"),
            "SELECT o.id, o.item FROM (SELECT o.*, unnest(o.items) AS item FROM orders o) AS o WHERE o.item <> 'x' ORDER BY o.item"
        );
        assert_eq!(
            rewritten("SELECT * FROM t, UNNEST(a, b) WITH ORDINALITY AS u(x, y, n)").expect("rewrites"),
            "SELECT * FROM (SELECT t.*, unnest(a) AS x, unnest(b) AS y, \
             unnest(generate_series(1, greatest(cardinality(a), cardinality(b)))) AS n FROM t) AS t"
        );
        assert_eq!(
            rewritten("SELECT k, v FROM t CROSS JOIN UNNEST(t.m) AS u(k, v)").expect("rewrites"),
            "SELECT k, v FROM (SELECT t.*, unnest(map_keys(t.m)) AS k, unnest(map_values(t.m)) AS v FROM t) AS t"
        );
        assert_eq!(
            rewritten("SELECT u.x, n FROM UNNEST(ARRAY['a', 'b']) WITH ORDINALITY AS u(x, n)").expect("rewrites"),
            "SELECT u.x, n FROM (SELECT unnest(ARRAY['a', 'b']) AS x, \
             unnest(generate_series(1, cardinality(ARRAY['a', 'b']))) AS n) AS u"
        );
        assert!(rewritten("SELECT * FROM a JOIN b ON a.x = b.x CROSS JOIN UNNEST(b.arr) AS u(v)").is_err());
        // Rows of an array of rows, once the type is known.
        let sql = "SELECT o.id, i.sku FROM orders o CROSS JOIN UNNEST(o.items) AS i(sku, qty)";
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql).expect("parses");
        let probes = rewrite(&mut statements[0].clone(), &HashMap::new()).expect("rewrites");
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].sql, "SELECT o.items FROM orders o");
        let row = DataType::Struct(
            vec![Field::new("sku", DataType::Utf8, true), Field::new("qty", DataType::Int32, true)].into(),
        );
        let types =
            HashMap::from([(probes[0].key.clone(), DataType::List(Arc::new(Field::new_list_field(row, true))))]);
        assert!(rewrite(&mut statements[0], &types).expect("rewrites").is_empty());
        assert_eq!(
            statements[0].to_string(),
            "SELECT o.id, o.sku FROM (SELECT o.*, get_field(unnest(o.items), 'sku') AS sku, \
             get_field(unnest(o.items), 'qty') AS qty FROM orders o) AS o"
        );
        let plain = "SELECT * FROM a JOIN b ON a.x = b.x";
        assert_eq!(rewritten(plain).expect("nothing to do"), plain);
    }
}
