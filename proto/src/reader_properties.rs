//! What a stage reader knows of its rows (sort orders, constants, equal columns) on the wire, by
//! column index and literal value. An executor rebuilds the operators above a reader from the plan it is
//! sent; an operator whose shape depends on these (a window that needs no ordering on a constant
//! partition column) must be rebuilt as the scheduler planned it, or it refuses to build.

use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use datafusion::common::{Result, ScalarValue, exec_datafusion_err};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use prost::Message;

use crate::generated::{EquivalenceClassNode, ReaderOrdering, SortColumn};

/// The encodable part of `properties`: orderings (each up to its first expression that is not a
/// plain column), and equivalence classes (their columns and literals).
pub(crate) fn encode(properties: &EquivalenceProperties) -> (Vec<ReaderOrdering>, Vec<EquivalenceClassNode>) {
    let orderings = properties
        .oeq_class()
        .iter()
        .map(|ordering| ReaderOrdering {
            columns: ordering
                .iter()
                .map_while(|sort| {
                    column_index(&sort.expr).map(|index| SortColumn {
                        index,
                        descending: sort.options.descending,
                        nulls_first: sort.options.nulls_first,
                    })
                })
                .collect(),
        })
        .filter(|ordering| !ordering.columns.is_empty())
        .collect();
    let classes = properties.eq_group().iter().filter_map(|class| {
        let mut node = EquivalenceClassNode::default();
        for expr in class.iter() {
            if let Some(index) = column_index(expr) {
                node.columns.push(index);
            } else if let Some(literal) = expr.downcast_ref::<Literal>()
                && let Some(value) = scalar_bytes(literal.value())
            {
                node.literals.push(value);
            }
        }
        let constant = class.iter().find_map(|expr| properties.is_expr_constant(expr));
        match constant {
            // With its value, a constant is the same in every partition. Without one it travels as
            // constant within each partition only: two "the same everywhere, value unknown"
            // classes would decode as equal to each other.
            Some(AcrossPartitions::Uniform(Some(value))) => {
                node.constant = true;
                node.uniform_value = scalar_bytes(&value).unwrap_or_default();
                node.uniform = !node.uniform_value.is_empty();
            }
            Some(_) => node.constant = true,
            None => {}
        }
        let members = node.columns.len() + node.literals.len();
        (members > 1 || (members == 1 && node.constant)).then_some(node)
    });
    (orderings, classes.collect())
}

fn column_index(expr: &Arc<dyn PhysicalExpr>) -> Option<u32> {
    expr.downcast_ref::<Column>().map(|c| c.index() as u32)
}

fn scalar_bytes(value: &ScalarValue) -> Option<Vec<u8>> {
    datafusion_proto::protobuf::ScalarValue::try_from(value).ok().map(|v| v.encode_to_vec())
}

fn scalar(bytes: &[u8]) -> Result<ScalarValue> {
    let value = datafusion_proto::protobuf::ScalarValue::decode(bytes)
        .map_err(|e| exec_datafusion_err!("malformed stage reader literal: {e}"))?;
    ScalarValue::try_from(&value).map_err(|e| exec_datafusion_err!("malformed stage reader literal: {e}"))
}

/// The properties of rows of `schema` as encoded; a column outside the schema is refused.
pub(crate) fn decode(
    schema: SchemaRef,
    orderings: Vec<ReaderOrdering>,
    classes: Vec<EquivalenceClassNode>,
) -> Result<EquivalenceProperties> {
    let column = |index: u32| -> Result<Arc<dyn PhysicalExpr>> {
        let field = schema
            .fields()
            .get(index as usize)
            .ok_or_else(|| exec_datafusion_err!("malformed stage reader: no column {index}"))?;
        Ok(Arc::new(Column::new(field.name(), index as usize)))
    };
    let mut properties = EquivalenceProperties::new(Arc::clone(&schema));
    for class in classes {
        let mut members = class.columns.iter().map(|&i| column(i)).collect::<Result<Vec<_>>>()?;
        for literal in &class.literals {
            members.push(Arc::new(Literal::new(scalar(literal)?)));
        }
        let Some(first) = members.first().cloned() else { continue };
        for other in &members[1..] {
            properties.add_equal_conditions(Arc::clone(&first), Arc::clone(other))?;
        }
        if class.constant {
            let across = if class.uniform {
                AcrossPartitions::Uniform(Some(scalar(&class.uniform_value)?))
            } else {
                AcrossPartitions::Heterogeneous
            };
            properties.add_constants([ConstExpr::new(first, across)])?;
        }
    }
    let orderings = orderings
        .into_iter()
        .map(|ordering| {
            ordering
                .columns
                .into_iter()
                .map(|c| {
                    let options = SortOptions { descending: c.descending, nulls_first: c.nulls_first };
                    Ok(PhysicalSortExpr::new(column(c.index)?, options))
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    properties.add_orderings(orderings);
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::compute::SortOptions;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::{Column, col};
    use datafusion::physical_expr::{
        AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr, PhysicalSortExpr,
    };
    use datafusion::physical_plan::{ExecutionPlan, Partitioning};

    use crate::ids::{QueryId, StageId};
    use crate::{StageReaderExec, reader_as_sent};

    #[test]
    fn orderings_constants_and_equal_columns_reach_the_executor() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("year", DataType::Int32, true),
            Field::new("item", DataType::Utf8, true),
            Field::new("brand", DataType::Utf8, true),
            Field::new("sales", DataType::Float64, true),
        ]));
        let column = |name: &str| col(name, &schema).expect("column");
        let mut properties = EquivalenceProperties::new(Arc::clone(&schema));
        properties.add_equal_conditions(column("item"), column("brand")).expect("equal columns");
        properties
            .add_constants([ConstExpr::new(column("year"), AcrossPartitions::Uniform(Some(2000i32.into())))])
            .expect("a constant");
        let descending = SortOptions { descending: true, nulls_first: false };
        // An ordering by an expression travels up to that expression.
        let doubled: Arc<dyn PhysicalExpr> = Arc::new(datafusion::physical_expr::expressions::BinaryExpr::new(
            column("sales"),
            datafusion::logical_expr::Operator::Plus,
            column("sales"),
        ));
        properties.add_ordering([
            PhysicalSortExpr::new(column("item"), descending),
            PhysicalSortExpr::new(doubled, SortOptions::default()),
        ]);
        let reader = StageReaderExec::new(
            QueryId::random(),
            StageId(3),
            properties,
            Partitioning::UnknownPartitioning(1),
            vec![Vec::new()],
        );
        let sent = reader_as_sent(&reader).expect("encode and decode");
        let decoded = sent.properties().equivalence_properties();
        let item: Arc<dyn PhysicalExpr> = Arc::new(Column::new("item", 1));
        let year: Arc<dyn PhysicalExpr> = Arc::new(Column::new("year", 0));
        assert_eq!(decoded.is_expr_constant(&year), Some(AcrossPartitions::Uniform(Some(2000i32.into()))));
        assert!(decoded.eq_group().iter().any(|class| class.len() == 2 && class.contains(&item)), "{decoded}");
        let ordering = decoded.oeq_class().iter().next().expect("an ordering");
        assert_eq!(ordering.len(), 1, "{decoded}");
        assert_eq!(ordering[0].options, descending);
    }

    #[test]
    fn a_column_outside_the_schema_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let class = crate::generated::EquivalenceClassNode { columns: vec![5], constant: true, ..Default::default() };
        let error = super::decode(schema, Vec::new(), vec![class]).expect_err("no column 5");
        assert!(error.to_string().contains("no column 5"), "{error}");
    }
}
