//! The Flight SQL front door as drivers use it, through arrow-flight's own Flight SQL client:
//! prepared statements with bound parameters, the metadata calls JDBC/ODBC drivers make, and
//! malformed requests answered with errors while the server serves on.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, ProstMessageExt, SqlInfo,
};
use arrow_flight::{FlightInfo, Ticket};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::Channel;

use crate::harness::*;

async fn flight_sql_client(cluster: &TestCluster) -> FlightSqlServiceClient<Channel> {
    let channel =
        Channel::from_shared(format!("http://{}", cluster.url())).expect("url").connect().await.expect("connect");
    FlightSqlServiceClient::new(channel)
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("endpoint without ticket")?;
        batches.extend(client.do_get(ticket).await?.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_bind_parameters() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut glaux) = cluster.with_lake().await?;
    let mut client = flight_sql_client(&cluster).await;
    // The answers, with the values written into the SQL, from single-node DataFusion.
    let reference = reference_context(&lake).await;
    let answer = |sql: String| {
        let reference = reference.clone();
        async move { Ok::<_, datafusion::error::DataFusionError>(rows_of(&reference.sql(&sql).await?.collect().await?)) }
    };

    let sql = "SELECT id, qty FROM sales WHERE region = $1 AND qty > $2 ORDER BY id LIMIT 5";
    let mut prepared = client.prepare(sql.to_string(), None).await?;
    let parameters = prepared.parameter_schema()?.clone();
    let described: Vec<(&str, &DataType)> =
        parameters.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    assert_eq!(described, vec![("$1", &DataType::Utf8), ("$2", &DataType::Int32)]);
    assert_eq!(prepared.dataset_schema()?.fields().len(), 2);

    for (region, qty) in [("eu", 40), ("apac", 47)] {
        // Bound as a client binds a Python or Java int: Int64, for an INT column.
        let row = RecordBatch::try_from_iter([
            ("$1", Arc::new(StringArray::from(vec![region])) as _),
            ("$2", Arc::new(Int64Array::from(vec![qty])) as _),
        ])?;
        prepared.set_parameters(row)?;
        let info = prepared.execute().await?;
        let got = rows_of(&fetch(&mut client, info).await?);
        let literal =
            format!("SELECT id, qty FROM sales WHERE region = '{region}' AND qty > {qty} ORDER BY id LIMIT 5");
        let expected = answer(literal).await?;
        assert_eq!(got, expected, "{region} {qty}");
        assert_eq!(got.len(), 5);
    }

    // A driver that keeps the handle from creation (ignoring the one DoPut returned) runs with
    // the values it bound; a statement with nothing bound fails clearly.
    let handle = prepared_handle(&mut client, sql).await?;
    let unbound =
        flight_info_for(&mut client, CommandPreparedStatementQuery { prepared_statement_handle: handle.clone() })
            .await?;
    let error = fetch(&mut client, unbound).await.expect_err("placeholders without values");
    assert!(error.to_string().contains("$1"), "{error}");
    let row = RecordBatch::try_from_iter([
        ("$1", Arc::new(StringArray::from(vec!["us"])) as _),
        ("$2", Arc::new(Int64Array::from(vec![48])) as _),
    ])?;
    let command = CommandPreparedStatementQuery { prepared_statement_handle: handle.clone() };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let data: Vec<arrow_flight::FlightData> = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(row)]))
        .try_collect()
        .await?;
    client.do_put(futures::stream::iter(data)).await?.try_collect::<Vec<_>>().await?;
    let info = flight_info_for(&mut client, command).await?;
    let got = rows_of(&fetch(&mut client, info).await?);
    let expected =
        answer("SELECT id, qty FROM sales WHERE region = 'us' AND qty > 48 ORDER BY id LIMIT 5".into()).await?;
    assert_eq!(got, expected);
    assert_eq!(got.len(), 5);

    // Two rows of parameters for one query, and a handle that is not Glaux's, are refused.
    let two_rows = RecordBatch::try_from_iter([
        ("$1", Arc::new(StringArray::from(vec!["eu", "us"])) as _),
        ("$2", Arc::new(Int64Array::from(vec![1, 2])) as _),
    ])?;
    prepared.set_parameters(two_rows)?;
    let error = prepared.execute().await.expect_err("two rows");
    assert!(error.to_string().contains("one row of parameters"), "{error}");
    let command = CommandPreparedStatementQuery { prepared_statement_handle: b"garbage".to_vec().into() };
    let error = flight_info_for(&mut client, command).await.expect_err("garbage handle");
    assert!(error.to_string().contains("not a Glaux statement"), "{error}");
    prepared.close().await?;

    // The server serves on.
    assert_eq!(rows_of(&glaux.query("SELECT count(*) FROM sales").await?.batches), vec!["18000"]);
    Ok(())
}

async fn flight_info_for(
    client: &mut FlightSqlServiceClient<Channel>,
    command: impl ProstMessageExt,
) -> Result<FlightInfo, Box<dyn std::error::Error>> {
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    Ok(client.inner_mut().get_flight_info(descriptor).await?.into_inner())
}

/// A prepared statement's handle as created, before any binding.
async fn prepared_handle(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<bytes::Bytes, Box<dyn std::error::Error>> {
    let request =
        arrow_flight::sql::ActionCreatePreparedStatementRequest { query: sql.to_string(), transaction_id: None };
    let action = arrow_flight::Action::new("CreatePreparedStatement", request.as_any().encode_to_vec());
    let mut results = client.do_action(action).await?;
    let result = results.try_next().await?.ok_or("no result")?;
    let any = arrow_flight::sql::Any::decode(result.body)?;
    let created: arrow_flight::sql::ActionCreatePreparedStatementResult = any.unpack()?.ok_or("not a result")?;
    Ok(created.prepared_statement_handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_calls_drivers_make_are_answered() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let mut client = flight_sql_client(&cluster).await;

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerCancel, SqlInfo::SqlKeywords])
        .await?;
    let batches = fetch(&mut client, info).await?;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);

    // The read-only flag says what the server does: it is not read-only, and takes DDL.
    let info = client.get_sql_info(vec![SqlInfo::FlightSqlServerReadOnly]).await?;
    let said = rows_of(&fetch(&mut client, info).await?);
    assert!(said.len() == 1 && said[0].contains("false"), "{said:?}");
    client.execute_update("CREATE DATABASE read_only_check".to_string(), None).await?;

    let info = client.get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None }).await?;
    let types = fetch(&mut client, info).await?;
    let names: Vec<String> = types
        .iter()
        .flat_map(|b| {
            arrow::array::AsArray::as_string::<i32>(b.column(0).as_ref())
                .iter()
                .flatten()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    for expected in ["bigint", "varchar", "double", "decimal", "date", "timestamp", "boolean"] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    // Filtered by type: BIGINT is -5.
    let info = client.get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: Some(-5) }).await?;
    assert_eq!(rows_of(&fetch(&mut client, info).await?).len(), 1);

    // Lake tables have no keys; the answers are empty and well-formed.
    let table = |t: &str| (Some("glaux".to_string()), Some("default".to_string()), t.to_string());
    let (catalog, db_schema, name) = table("sales");
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: catalog.clone(),
            db_schema: db_schema.clone(),
            table: name.clone(),
        })
        .await?;
    let keys = fetch(&mut client, info.clone()).await?;
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    assert_eq!(info.try_decode_schema()?.field(2).name(), "table_name");
    let info = client
        .get_exported_keys(CommandGetExportedKeys {
            catalog: catalog.clone(),
            db_schema: db_schema.clone(),
            table: name.clone(),
        })
        .await?;
    assert_eq!(info.clone().try_decode_schema()?.fields().len(), 13);
    assert!(fetch(&mut client, info).await?.iter().all(|b| b.num_rows() == 0));
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: catalog.clone(),
            db_schema: db_schema.clone(),
            table: name.clone(),
        })
        .await?;
    assert!(fetch(&mut client, info).await?.iter().all(|b| b.num_rows() == 0));
    let cross = CommandGetCrossReference {
        pk_catalog: catalog.clone(),
        pk_db_schema: db_schema.clone(),
        pk_table: name.clone(),
        fk_catalog: catalog,
        fk_db_schema: db_schema,
        fk_table: "regions".into(),
    };
    let info = client.get_cross_reference(cross).await?;
    assert!(fetch(&mut client, info).await?.iter().all(|b| b.num_rows() == 0));

    // Unknown tickets and actions are errors, not crashes.
    let error = client.do_get(Ticket { ticket: b"\x01\x02not a command".to_vec().into() }).await.err();
    assert!(error.is_some());
    let error = client.do_action(arrow_flight::Action::new("Reboot", Vec::new())).await.err();
    assert!(error.is_some_and(|e| e.to_string().contains("unsupported action")));
    let info = client.execute("SELECT 41 + 1 AS answer".to_string(), None).await?;
    assert_eq!(rows_of(&fetch(&mut client, info).await?), vec!["42"]);
    Ok(())
}

/// The schema a `FlightInfo` announces is the schema its stream carries, field for field
/// (nullability too: ADBC refuses a stream that differs), also where the plan that runs knows more
/// than the plan that was described (`grouping(a) + grouping(b)` is never null; TPC-DS q70, q86).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_carry_the_schema_their_flight_info_announced() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let _lake = cluster.with_lake().await?;
    let mut client = flight_sql_client(&cluster).await;
    for sql in [
        "SELECT sum(qty) AS total, region, day, grouping(region) + grouping(day) AS lochierarchy, \
         rank() OVER (PARTITION BY grouping(region) + grouping(day), CASE WHEN grouping(day) = 0 THEN region END \
         ORDER BY sum(qty) DESC) AS rank_within_parent FROM sales GROUP BY ROLLUP(region, day) \
         ORDER BY lochierarchy DESC, rank_within_parent LIMIT 100",
        "SELECT count(DISTINCT id) AS orders, sum(amount) AS total FROM sales s WHERE EXISTS \
         (SELECT 1 FROM sales s2 WHERE s.id = s2.id AND s.region <> s2.region) AND NOT EXISTS \
         (SELECT 1 FROM regions r WHERE r.name = s.region AND NOT r.active)",
        "SELECT region, count(*) FROM sales GROUP BY region",
    ] {
        let info = client.execute(sql.to_string(), None).await?;
        let announced = info.clone().try_decode_schema()?;
        let ticket = info.endpoint.first().and_then(|e| e.ticket.clone()).ok_or("no ticket")?;
        let batches: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
        let carried = batches.first().map(RecordBatch::schema).ok_or("no batch")?;
        assert_eq!(carried.as_ref(), &announced, "{sql}");
    }
    Ok(())
}
