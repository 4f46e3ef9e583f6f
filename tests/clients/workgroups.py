"""Workgroups through real clients: boto3's workgroup calls (create, get, update, delete, list,
tags) on `glaux standalone`, and what a workgroup does to the statements run in it, whichever door
sent them: its enforced output location, a concurrency limit of 1 that queues a second query, a
statement timeout that fires, a data scanned cutoff that stops a query; Flight SQL (ADBC, with
the `x-glaux-workgroup` header) and PostgreSQL (psql, a user's default workgroup and
`PGOPTIONS=-c workgroup=...`) clients run in the workgroup they name.

Usage: workgroups.py GLAUX_BINARY WORK_DIR
"""
import os
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import boto3
import pyarrow as pa
import pyarrow.parquet as pq

import harness
from harness import Checks, Glaux, rows_of
from harness import athena_error as error_of
from harness import wait_for_execution as wait

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
results = os.path.join(warehouse, "results")
bi_results = os.path.join(warehouse, "bi-results")
catalog = os.path.join(work, "catalog.sqlite")
for directory in ("events", "blobs", "results", "bi-results"):
    os.makedirs(os.path.join(warehouse, directory), exist_ok=True)
pq.write_table(pa.table({"id": pa.array(range(300), pa.int64())}), os.path.join(warehouse, "events", "part-0.parquet"))
# 60 MB that do not compress: a scan of it passes a 10 MB cutoff.
blobs = [os.urandom(3000).hex() for _ in range(10_000)]
pq.write_table(pa.table({"s": blobs}), os.path.join(warehouse, "blobs", "part-0.parquet"), compression="none",
               row_group_size=500)

check = Checks()
glaux_binary = Glaux(glaux)
password = "correct horse"
users_file = glaux_binary.users_file(os.path.join(work, "users"),
                                    (("root", password, True), ("analyst", password, False, "workgroup=bi")))
keys = {user: glaux_binary.access_key(user, catalog, warehouse) for user in ("root", "analyst")}
doors, server = glaux_binary.start(
    ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--postgres-addr", "127.0.0.1:0",
     "--http-addr", "127.0.0.1:0", "--warehouse", warehouse, "--catalog", catalog, "--users", users_file],
    {"athena": "Athena API on ", "postgres": "PostgreSQL on ", "flight": "Flight SQL on "})


def athena(user):
    key, secret = keys[user]
    return boto3.client("athena", endpoint_url=doors["athena"], region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret)


def start(client, sql, workgroup="primary", out=results):
    return client.start_query_execution(QueryString=sql, WorkGroup=workgroup,
                                        ResultConfiguration={"OutputLocation": out + "/"})["QueryExecutionId"]


def adbc(user, workgroup=None):
    kwargs = {"username": user, "password": password}
    if workgroup:
        kwargs["adbc.flight.sql.rpc.call_header.x-glaux-workgroup"] = workgroup
    return flightsql.connect(f"grpc://{doors['flight']}", db_kwargs=kwargs)


def psql(user, sql, options=None):
    return harness.psql(doors["postgres"], user, password, sql, options)


SLOW = ("SELECT sum(a.id * b.id + c.id - d.id) FROM events a CROSS JOIN events b CROSS JOIN events c "
        "CROSS JOIN events d")

try:
    root = athena("root")
    with adbc("root") as conn:
        for table, columns in (("events", "id bigint"), ("blobs", "s string")):
            rows_of(conn, f"CREATE EXTERNAL TABLE {table} ({columns}) STORED AS PARQUET "
                          f"LOCATION '{warehouse}/{table}/'")
            rows_of(conn, f"GRANT SELECT ON TABLE {table} TO USER analyst")
        rows_of(conn, f"GRANT LOCATION '{warehouse}/' TO USER analyst")

    # The workgroup calls.
    names = [w["Name"] for w in root.list_work_groups()["WorkGroups"]]
    check("primary exists", names == ["primary"], f"{names}")
    root.create_work_group(
        Name="bi", Description="dashboards",
        Configuration={"ResultConfiguration": {"OutputLocation": bi_results + "/"},
                       "EnforceWorkGroupConfiguration": True, "BytesScannedCutoffPerQuery": 10_000_000},
        Tags=[{"Key": "glaux:max-concurrent-queries", "Value": "1"}, {"Key": "team", "Value": "bi"}])
    bi = root.get_work_group(WorkGroup="bi")["WorkGroup"]
    check("GetWorkGroup shows its configuration", bi["State"] == "ENABLED" and bi["Description"] == "dashboards" and
          bi["Configuration"]["ResultConfiguration"]["OutputLocation"] == bi_results + "/" and
          bi["Configuration"]["BytesScannedCutoffPerQuery"] == 10_000_000 and
          bi["Configuration"]["EnforceWorkGroupConfiguration"] is True, f"{bi}")
    check("ListWorkGroups lists both", [w["Name"] for w in root.list_work_groups()["WorkGroups"]] == ["bi", "primary"])
    tags = root.list_tags_for_resource(ResourceARN="arn:aws:athena:us-east-1:000000000000:workgroup/bi")["Tags"]
    check("its tags", {t["Key"]: t["Value"] for t in tags} == {"glaux:max-concurrent-queries": "1", "team": "bi"},
          f"{tags}")
    code, message = error_of(lambda: athena("analyst").create_work_group(Name="mine"))
    check("only an administrator creates workgroups", code == "InvalidRequestException" and "administrator" in message,
          f"{code} {message}")
    code, message = error_of(lambda: root.create_work_group(Name="x", Tags=[{"Key": "glaux:nope", "Value": "1"}]))
    check("an unknown glaux: tag is refused", code == "InvalidRequestException" and "glaux:nope" in message, message)
    code, message = error_of(lambda: root.create_work_group(
        Name="x", Tags=[{"Key": "glaux:retry-policy", "Value": "sometimes"}]))
    check("a retry policy other than query or task is refused", code == "InvalidRequestException" and
          "'query' or 'task'" in message, message)
    root.create_work_group(Name="resilient", Tags=[{"Key": "glaux:retry-policy", "Value": "TASK"}])
    execution = wait(root, start(root, "SELECT count(*) FROM events", "resilient"))
    check("a workgroup with retry policy task runs its statements", execution["Status"]["State"] == "SUCCEEDED",
          execution["Status"])
    code, message = error_of(lambda: root.create_work_group(
        Name="x", Configuration={"PublishCloudWatchMetricsEnabled": True}))
    check("CloudWatch metrics are refused, not ignored", code == "InvalidRequestException" and
          "PublishCloudWatchMetricsEnabled" in message, message)
    code, message = error_of(lambda: root.create_work_group(Name="bi"))
    check("a workgroup is created once", code == "InvalidRequestException" and "already" in message, message)
    code, message = error_of(lambda: root.delete_work_group(WorkGroup="primary"))
    check("primary cannot be deleted", code == "InvalidRequestException", message)

    # Its enforced output location beats the request's.
    enforced = wait(root, start(root, "SELECT count(*) FROM events", "bi", out=results))
    check("an enforced output location is where the result goes", enforced["Status"]["State"] == "SUCCEEDED" and
          enforced["ResultConfiguration"]["OutputLocation"] == f"{bi_results}/{enforced['QueryExecutionId']}.csv" and
          os.path.exists(f"{bi_results}/{enforced['QueryExecutionId']}.csv"), f"{enforced}")

    # A concurrency limit of 1: a second statement waits, first in first out.
    slow = start(root, SLOW, "bi")
    wait(root, slow, states=("RUNNING",))
    second = start(root, "SELECT count(*) AS n FROM events", "bi")
    time.sleep(1.0)
    queued = root.get_query_execution(QueryExecutionId=second)["QueryExecution"]["Status"]["State"]
    primary = wait(root, start(root, "SELECT 1"))["Status"]["State"]
    root.stop_query_execution(QueryExecutionId=slow)
    done = wait(root, second)
    check("a second statement waits QUEUED behind the first", queued == "QUEUED", queued)
    check("another workgroup's statement does not wait", primary == "SUCCEEDED", primary)
    check("the queued statement runs once the first ends, its queue time recorded",
          done["Status"]["State"] == "SUCCEEDED" and done["Statistics"]["QueryQueueTimeInMillis"] >= 900,
          f"{done['Status']} {done['Statistics']}")

    # The data scanned cutoff stops a query that would read more.
    cut = wait(root, start(root, "SELECT sum(length(s)) FROM blobs", "bi"))
    check("a cutoff stops a query with Athena's reason", cut["Status"]["State"] == "FAILED" and
          "Bytes scanned limit was exceeded" in cut["Status"].get("StateChangeReason", ""), f"{cut['Status']}")
    whole = wait(root, start(root, "SELECT sum(length(s)) AS n FROM blobs"))
    check("the same query runs whole in primary", whole["Status"]["State"] == "SUCCEEDED" and
          whole["Statistics"]["DataScannedInBytes"] > 50_000_000, f"{whole['Statistics']}")

    # A statement timeout.
    root.create_work_group(Name="quick", Tags=[{"Key": "glaux:query-timeout-seconds", "Value": "2"}])
    began = time.time()
    timed = wait(root, start(root, SLOW, "quick"))
    check("a timeout stops a statement", timed["Status"]["State"] == "FAILED" and
          "timeout" in timed["Status"].get("StateChangeReason", "").lower() and time.time() - began < 30,
          f"{timed['Status']}")

    # Disabled, updated, deleted.
    root.update_work_group(WorkGroup="quick", State="DISABLED")
    code, message = error_of(lambda: start(root, "SELECT 1", "quick"))
    check("a disabled workgroup runs nothing", code == "InvalidRequestException" and "disabled" in message, message)
    root.update_work_group(WorkGroup="bi", ConfigurationUpdates={"RemoveBytesScannedCutoffPerQuery": True})
    check("an update removes the cutoff",
          "BytesScannedCutoffPerQuery" not in root.get_work_group(WorkGroup="bi")["WorkGroup"]["Configuration"])
    root.delete_work_group(WorkGroup="quick")
    code, _ = error_of(lambda: root.get_work_group(WorkGroup="quick"))
    check("a deleted workgroup is gone", code == "InvalidRequestException", code)

    # Result reuse: the same query returns the stored result without a scan, until a write
    # through Glaux changes a table it reads.
    reuse = {"ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": 60}}
    count_sql = "SELECT count(*) AS n, sum(id) AS total FROM events"

    def counted(**extra):
        execution = wait(root, root.start_query_execution(
            QueryString=count_sql, ResultConfiguration={"OutputLocation": results + "/"}, **extra)["QueryExecutionId"])
        rows = root.get_query_results(QueryExecutionId=execution["QueryExecutionId"])["ResultSet"]["Rows"]
        values = [[d.get("VarCharValue") for d in r["Data"]] for r in rows]
        return execution, values

    first, first_rows = counted(ResultReuseConfiguration=reuse)
    again, again_rows = counted(ResultReuseConfiguration=reuse)
    check("a query runs the first time", first["Statistics"]["ResultReuseInformation"]["ReusedPreviousResult"] is False
          and first["Statistics"]["DataScannedInBytes"] > 0 and first_rows == [["n", "total"], ["300", "44850"]],
          f"{first['Statistics']} {first_rows}")
    check("the same query reuses its result without a scan",
          again["Statistics"]["ResultReuseInformation"]["ReusedPreviousResult"] is True and
          again["Statistics"]["DataScannedInBytes"] == 0 and again_rows == first_rows and
          again["ResultConfiguration"]["OutputLocation"] == first["ResultConfiguration"]["OutputLocation"],
          f"{again['Statistics']} {again_rows}")
    unused, _ = counted(ResultReuseConfiguration={"ResultReuseByAgeConfiguration": {"Enabled": False}})
    check("reuse off runs it", unused["Statistics"]["ResultReuseInformation"]["ReusedPreviousResult"] is False)
    wait(root, start(root, "INSERT INTO events VALUES (1000)"))
    after, after_rows = counted(ResultReuseConfiguration=reuse)
    check("a write through Glaux makes the stored result stale",
          after["Statistics"]["ResultReuseInformation"]["ReusedPreviousResult"] is False and
          after_rows == [["n", "total"], ["301", "45850"]], f"{after['Statistics']} {after_rows}")
    root.create_work_group(Name="cached", Tags=[{"Key": "glaux:result-reuse-max-age-minutes", "Value": "5"}])
    by_default = [counted(WorkGroup="cached")[0] for _ in range(2)]
    check("a workgroup's default reuse", [e["Statistics"]["ResultReuseInformation"]["ReusedPreviousResult"]
                                          for e in by_default] == [False, True], f"{by_default}")
    with adbc("root") as conn:
        recorded = rows_of(conn, "SELECT query_id, reused_previous_result, data_scanned_bytes FROM "
                                 f"system.runtime.queries WHERE query_id IN ('{first['QueryExecutionId']}', "
                                 f"'{again['QueryExecutionId']}') ORDER BY created")
    check("the history marks the reused result", [(r[1], r[2] > 0) for r in recorded] == [(False, True), (True, False)],
          f"{recorded}")

    # Prepared statements and named queries.
    root.create_prepared_statement(StatementName="by_id", WorkGroup="primary", Description="one id",
                                   QueryStatement="SELECT id FROM events WHERE id = ?")
    got = root.get_prepared_statement(StatementName="by_id", WorkGroup="primary")["PreparedStatement"]
    check("GetPreparedStatement", (got["QueryStatement"], got["Description"], got["WorkGroupName"]) ==
          ("SELECT id FROM events WHERE id = ?", "one id", "primary"), f"{got}")

    def rows_of_execution(**request):
        execution = wait(root, root.start_query_execution(ResultConfiguration={"OutputLocation": results + "/"},
                                                          **request)["QueryExecutionId"])
        rows = root.get_query_results(QueryExecutionId=execution["QueryExecutionId"])["ResultSet"]["Rows"]
        return [[d.get("VarCharValue") for d in r["Data"]] for r in rows]

    check("EXECUTE ... USING runs it", rows_of_execution(QueryString="EXECUTE by_id USING 5") == [["id"], ["5"]])
    check("EXECUTE with ExecutionParameters runs it",
          rows_of_execution(QueryString="EXECUTE by_id", ExecutionParameters=["6"]) == [["id"], ["6"]])
    listed = [p["StatementName"] for p in root.list_prepared_statements(WorkGroup="primary")["PreparedStatements"]]
    elsewhere = root.list_prepared_statements(WorkGroup="bi")["PreparedStatements"]
    check("ListPreparedStatements lists the workgroup's", listed == ["by_id"] and elsewhere == [], f"{listed}")
    code, message = error_of(lambda: root.create_prepared_statement(StatementName="by_id", WorkGroup="primary",
                                                                    QueryStatement="SELECT 1"))
    check("a prepared statement is created once", code == "InvalidRequestException" and "exists" in message, message)
    root.update_prepared_statement(StatementName="by_id", WorkGroup="primary",
                                   QueryStatement="SELECT id * 10 AS id FROM events WHERE id = ?")
    check("UpdatePreparedStatement replaces it",
          rows_of_execution(QueryString="EXECUTE by_id USING 7") == [["id"], ["70"]])
    code, _ = error_of(lambda: athena("analyst").get_prepared_statement(StatementName="by_id", WorkGroup="primary"))
    check("another user's prepared statement is not shown", code == "ResourceNotFoundException", code)
    root.delete_prepared_statement(StatementName="by_id", WorkGroup="primary")
    code, _ = error_of(lambda: root.get_prepared_statement(StatementName="by_id", WorkGroup="primary"))
    check("DeletePreparedStatement", code == "ResourceNotFoundException", code)
    named = root.create_named_query(Name="daily", Database="default", QueryString="SELECT count(*) FROM events",
                                    Description="count", WorkGroup="primary")["NamedQueryId"]
    got = root.get_named_query(NamedQueryId=named)["NamedQuery"]
    check("GetNamedQuery", (got["Name"], got["Database"], got["QueryString"], got["Description"]) ==
          ("daily", "default", "SELECT count(*) FROM events", "count"), f"{got}")
    check("ListNamedQueries", root.list_named_queries(WorkGroup="primary")["NamedQueryIds"] == [named] and
          athena("analyst").list_named_queries(WorkGroup="primary")["NamedQueryIds"] == [])
    root.update_named_query(NamedQueryId=named, Name="daily", QueryString="SELECT 1")
    batch = root.batch_get_named_query(NamedQueryIds=[named, "nope"])
    check("UpdateNamedQuery and BatchGetNamedQuery", [q["QueryString"] for q in batch["NamedQueries"]] == ["SELECT 1"]
          and batch["UnprocessedNamedQueryIds"][0]["NamedQueryId"] == "nope", f"{batch}")
    root.delete_named_query(NamedQueryId=named)
    code, _ = error_of(lambda: root.get_named_query(NamedQueryId=named))
    check("DeleteNamedQuery", code == "InvalidRequestException", code)

    # Other doors: a user's default workgroup, a named one, and an unknown one.
    ok, out, err = psql("analyst", "SELECT 7 AS seven")
    ok2, out2, err2 = psql("analyst", "SELECT 8 AS eight", options="-c workgroup=primary")
    ok3, out3, err3 = psql("analyst", "SELECT 9 AS nine", options="-c workgroup=nope")
    check("psql runs in the user's default workgroup or the one it names", ok and ok2, f"{err} {err2}")
    check("an unknown workgroup is refused", not ok3 and "nope" in err3, err3)
    with adbc("root", workgroup="bi") as conn:
        rows_of(conn, "SELECT 10")
    with adbc("root") as conn:
        history = rows_of(conn, "SELECT query, workgroup, queued_time_ms FROM system.runtime.queries "
                                "WHERE query IN ('SELECT 7 AS seven', 'SELECT 8 AS eight', 'SELECT 10', "
                                "'SELECT count(*) AS n FROM events')")
    where = {q: w for q, w, _ in history}
    check("each door's statements run in their workgroup", where == {
        "SELECT 7 AS seven": "bi", "SELECT 8 AS eight": "primary", "SELECT 10": "bi", "SELECT count(*) AS n FROM events": "bi"},
          f"{history}")
    check("the history records the queue time", any(q.startswith("SELECT count") and t >= 900 for q, _, t in history),
          f"{history}")
    check("the server still serves", wait(root, start(root, "SELECT 1"))["Status"]["State"] == "SUCCEEDED")
finally:
    server.terminate()
    server.wait(timeout=30)

check.exit()
