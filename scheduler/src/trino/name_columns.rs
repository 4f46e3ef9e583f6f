//! Athena's names for result columns a query does not name: `_col0`, `_col1`, ... by position,
//! for every select-list expression that is not a column (a column keeps its name, unless the
//! list names it twice: `SELECT "name", NAME`). Besides
//! matching Athena, this lets `SELECT count(*), count(*)` run: DataFusion refuses two columns
//! of one name.

use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};

pub fn rewrite(statement: &mut Statement) {
    if let Statement::Query(query) = statement {
        name(&mut query.body);
    }
}

fn name(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut columns = std::collections::HashSet::new();
            for (i, item) in select.projection.iter_mut().enumerate() {
                let SelectItem::UnnamedExpr(expr) = item else { continue };
                // A column keeps its name, unless the select list names it twice.
                let column = match expr {
                    Expr::Identifier(ident) => Some(ident.value.to_lowercase()),
                    Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.to_lowercase()),
                    _ => None,
                };
                if column.is_some_and(|c| columns.insert(c)) {
                    continue;
                }
                *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::new(format!("_col{i}")) };
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name(left);
            name(right);
        }
        SetExpr::Query(query) => name(&mut query.body),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    #[test]
    fn unnamed_expressions_are_numbered() {
        let mut statements = Parser::parse_sql(
            &GenericDialect {},
            "SELECT region, t.day, count(*), count(*) AS n, sum(qty) FROM t GROUP BY 1, 2",
        )
        .expect("parses");
        rewrite(&mut statements[0]);
        assert_eq!(
            statements[0].to_string(),
            "SELECT region, t.day, count(*) AS _col2, count(*) AS n, sum(qty) AS _col4 FROM t GROUP BY 1, 2"
        );
    }
}
