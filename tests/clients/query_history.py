"""The query history through real clients: statements sent through Flight SQL (ADBC), PostgreSQL
(psql) and Athena's API (boto3) by two users of `glaux standalone` each get one record, read back
as `system.runtime.queries` (a user sees their own, an admin everyone's) and through Athena's
`ListQueryExecutions`/`BatchGetQueryExecution`; the history survives a restart, a statement killed
by it shows FAILED, and retention prunes.

Usage: query_history.py GLAUX_BINARY WORK_DIR
"""
import os
import signal
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import boto3
import botocore
import pyarrow as pa
import pyarrow.parquet as pq

import harness
from harness import Checks, Glaux, rows_of
from harness import wait_for_execution as wait

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
results = os.path.join(warehouse, "results")
catalog = os.path.join(work, "catalog.sqlite")
os.makedirs(os.path.join(warehouse, "events"), exist_ok=True)
os.makedirs(results, exist_ok=True)
pq.write_table(pa.table({"id": pa.array(range(300), pa.int64()), "kind": [["a", "b", "c"][i % 3] for i in range(300)]}),
               os.path.join(warehouse, "events", "part-0.parquet"))

check = Checks()
glaux_binary = Glaux(glaux)
password = "correct horse"
users_file = glaux_binary.users_file(os.path.join(work, "users"),
                                    (("root", password, True), ("analyst", password, False)))
keys = {user: glaux_binary.access_key(user, catalog, warehouse) for user in ("root", "analyst")}


def standalone(*flags):
    """`glaux standalone` on the catalog file with every door: the process and its addresses."""
    doors, process = glaux_binary.start(
        ["standalone", "--executors", "1", "--flight-sql-addr", "127.0.0.1:0", "--postgres-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", "--warehouse", warehouse, "--catalog", catalog, "--users", users_file,
         *flags], {"athena": "Athena API on ", "postgres": "PostgreSQL on ", "flight": "Flight SQL on "})
    return process, doors


def adbc(doors, user):
    return flightsql.connect(f"grpc://{doors['flight']}", db_kwargs={"username": user, "password": password})


def psql(doors, user, sql):
    return harness.psql(doors["postgres"], user, password, sql)


def athena(doors, user):
    key, secret = keys[user]
    return boto3.client("athena", endpoint_url=doors["athena"], region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)


HISTORY = ("SELECT query_id, \"user\", door, state, statement_type, query, error, rows, data_scanned_bytes, "
           "output_location, workgroup FROM system.runtime.queries ORDER BY created")

server, doors = standalone()
try:
    with adbc(doors, "root") as root:
        rows_of(root, f"CREATE EXTERNAL TABLE events (id bigint, kind string) STORED AS PARQUET "
                      f"LOCATION '{warehouse}/events/'")
        rows_of(root, "GRANT SELECT ON TABLE events TO USER analyst")
        rows_of(root, f"GRANT LOCATION '{results}/' TO USER analyst")
    with adbc(doors, "analyst") as analyst:
        counted = rows_of(analyst, "SELECT count(*) AS n FROM events WHERE kind = 'a'")
        try:
            rows_of(analyst, "SELECT * FROM no_such_table")
            refused = None
        except Exception as error:  # the driver's error type varies by version
            refused = str(error)
    shell = subprocess.run([glaux, "shell", "--host", doors["flight"], "-u", "root", "-c", "SELECT 11 AS eleven"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "GLAUX_PASSWORD": password})
    check("the shell runs a statement", shell.returncode == 0 and "11" in shell.stdout, shell.stderr)
    ok, out, err = psql(doors, "root", "SELECT 42")
    check("psql runs a statement", ok and out == "42", f"{out} {err}")
    api = athena(doors, "root")
    api_id = api.start_query_execution(QueryString="SELECT kind, count(*) AS n FROM events GROUP BY kind",
                                       ResultConfiguration={"OutputLocation": results + "/"})["QueryExecutionId"]
    check("the API query succeeds", wait(api, api_id)["Status"]["State"] == "SUCCEEDED")

    with adbc(doors, "root") as root:
        history = rows_of(root, HISTORY)
    by_query = {}
    for record in history:
        by_query.setdefault(record[5], record)
    count = by_query.get("SELECT count(*) AS n FROM events WHERE kind = 'a'")
    check("a Flight SQL statement is recorded with its user, door, state, rows and data scanned",
          count is not None and count[1:5] == ("analyst", "flight_sql", "SUCCEEDED", "query") and count[7] == 1
          and count[8] > 0 and count[10] == "primary", f"{count}")
    bad = by_query.get("SELECT * FROM no_such_table")
    check("a failed statement is recorded with its reason", refused is not None and bad is not None and
          bad[3] == "FAILED" and "no_such_table" in (bad[6] or ""), f"{bad}")
    # PostgreSQL's door records each statement as it ran it: split, unnamed columns named.
    pg = by_query.get('SELECT 42 AS "?column?"')
    check("a PostgreSQL statement is recorded", pg is not None and pg[1:4] == ("root", "postgres", "SUCCEEDED"),
          f"{pg}")
    from_shell = by_query.get("SELECT 11 AS eleven")
    check("a shell statement is recorded as the shell's", from_shell is not None and
          from_shell[1:4] == ("root", "shell", "SUCCEEDED"), f"{from_shell}")
    api_record = [r for r in history if r[0] == api_id]
    check("an API statement is recorded under its execution id, with its output location",
          len(api_record) == 1 and api_record[0][2:4] == ("athena", "SUCCEEDED") and
          api_record[0][9] == f"{results}/{api_id}.csv", f"{api_record}")
    check("the reading statement itself is RUNNING", history[-1][5] == HISTORY and history[-1][3] == "RUNNING",
          f"{history[-1]}")
    kinds = {r[5].split()[0] + " " + r[5].split()[1]: (r[3], r[4]) for r in history if r[1] == "root"}
    check("DDL and grants are recorded", kinds.get("CREATE EXTERNAL") == ("SUCCEEDED", "create_table")
          and kinds.get("GRANT SELECT") == ("SUCCEEDED", "authorization"), f"{kinds}")
    with adbc(doors, "analyst") as analyst:
        own = rows_of(analyst, 'SELECT DISTINCT "user" FROM system.runtime.queries')
    check("a user sees only their own statements", own == [("analyst",)], f"{own}")

    # Athena's API lists and describes statements of every door.
    listed = [i for page in api.get_paginator("list_query_executions").paginate(WorkGroup="primary")
              for i in page["QueryExecutionIds"]]
    check("ListQueryExecutions lists every door's statements, newest first",
          count[0] in listed and pg[0] in listed and listed.index(api_id) < listed.index(pg[0]), f"{listed}")
    described = api.batch_get_query_execution(QueryExecutionIds=[count[0]])["QueryExecutions"]
    check("BatchGetQueryExecution describes a Flight SQL statement", described and
          described[0]["Query"] == count[5] and described[0]["Status"]["State"] == "SUCCEEDED", f"{described}")
    try:
        athena(doors, "analyst").get_query_execution(QueryExecutionId=api_id)
        hidden = None
    except botocore.exceptions.ClientError as error:
        hidden = error.response["Error"]["Code"]
    check("another user's execution is not found", hidden == "InvalidRequestException", f"{hidden}")

    # A statement running when the scheduler is killed.
    slow = api.start_query_execution(
        QueryString="SELECT sum(a.id * b.id + c.id - d.id) FROM events a CROSS JOIN events b CROSS JOIN events c "
                    "CROSS JOIN events d", ResultConfiguration={"OutputLocation": results + "/"})["QueryExecutionId"]
    running = wait(api, slow, states=("RUNNING",))
    time.sleep(0.5)
finally:
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)

server, doors = standalone()
try:
    api = athena(doors, "root")
    killed = api.get_query_execution(QueryExecutionId=slow)["QueryExecution"]
    check("a statement killed by the restart shows FAILED", killed["Status"]["State"] == "FAILED" and
          killed["Status"].get("StateChangeReason") == "scheduler restarted", f"{killed['Status']}")
    paged = api.get_query_results(QueryExecutionId=api_id)["ResultSet"]
    rows = sorted([d.get("VarCharValue") for d in r["Data"]] for r in paged["Rows"][1:])
    check("an earlier run's result still pages, its columns from .csv.metadata",
          rows == [["a", "100"], ["b", "100"], ["c", "100"]] and
          [c["Type"] for c in paged["ResultSetMetadata"]["ColumnInfo"]] == ["varchar", "bigint"], f"{paged}")
    try:
        api.get_query_results(QueryExecutionId=count[0])
        refused = None
    except botocore.exceptions.ClientError as error:
        refused = error.response["Error"]["Message"]
    check("a Flight SQL statement has no result file to page", refused is not None and "another door" in refused,
          f"{refused}")
    with adbc(doors, "root") as root:
        after = rows_of(root, HISTORY)
    check("the history survives a restart", [r[0] for r in history] == [r[0] for r in after][:len(history)] and
          after[len(history) - 1][3] == "SUCCEEDED", f"{len(history)} {len(after)}")
finally:
    server.terminate()
    server.wait(timeout=30)

server, doors = standalone("--history-max", "2")
try:
    with adbc(doors, "root") as root:
        kept = rows_of(root, HISTORY)
    check("retention keeps the newest finished records", len(kept) == 3 and kept[1][0] == after[-1][0] and
          kept[-1][3] == "RUNNING", f"{[(r[0], r[3]) for r in kept]}")
finally:
    server.terminate()
    server.wait(timeout=30)

check.exit()
