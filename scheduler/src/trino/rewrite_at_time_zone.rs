//! `ts AT TIME ZONE 'zone'` as Trino means it: the instant `ts` shown in `zone`. A timestamp
//! without a zone is an instant in the session zone (UTC) to Trino, but wall-clock time in
//! `zone` to DataFusion; converting to UTC first gives Trino's answer for both kinds.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};

pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::AtTimeZone { timestamp, time_zone } = expr
            && !is_utc(time_zone)
            && !matches!(timestamp.as_ref(), Expr::Nested(inner) if matches!(inner.as_ref(), Expr::AtTimeZone { time_zone, .. } if is_utc(time_zone)))
        {
            let utc = Expr::AtTimeZone {
                timestamp: timestamp.clone(),
                time_zone: Box::new(Expr::value(Value::SingleQuotedString("UTC".into()))),
            };
            **timestamp = Expr::Nested(Box::new(utc));
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_utc(zone: &Expr) -> bool {
    matches!(zone, Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("UTC")))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    #[test]
    fn naive_timestamps_are_utc_instants() {
        let mut statements = Parser::parse_sql(
            &GenericDialect {},
            "SELECT ts AT TIME ZONE 'America/New_York', ts AT TIME ZONE 'UTC' FROM t",
        )
        .expect("parses");
        rewrite(&mut statements[0]);
        assert_eq!(
            statements[0].to_string(),
            "SELECT (ts AT TIME ZONE 'UTC') AT TIME ZONE 'America/New_York', ts AT TIME ZONE 'UTC' FROM t"
        );
    }
}
