"""Operating Glaux: metrics and probes of real `glaux scheduler` and `glaux executor` processes,
read by the clients operators use. `/metrics` is parsed by Prometheus' own Python parser
(prometheus_client), `/health` and `/ready` are fetched over HTTP, the gRPC health service is asked
by grpcio's health-checking client; statements and failed logins go through ADBC (Flight SQL), psql
(PostgreSQL) and boto3 (Athena's API). Every count is checked against what the test did or
against another process's own count (tasks the scheduler launched = tasks the executors installed).

Usage: operations.py GLAUX_BINARY WORK_DIR
"""
import os
import subprocess
import sys
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import boto3
import botocore
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import Checks, Glaux, get, scrape, total, value, wait_until

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
catalog = os.path.join(work, "catalog.sqlite")
os.makedirs(os.path.join(warehouse, "events"), exist_ok=True)
ROWS = 5000
events_file = os.path.join(warehouse, "events", "part-0.parquet")
pq.write_table(pa.table({"id": pa.array(range(ROWS), pa.int64()), "kind": [["a", "b", "c"][i % 3] for i in range(ROWS)]}),
               events_file)

check = Checks()
glaux_binary = Glaux(glaux)
glaux_output = glaux_binary.output


# "root:" and this are 19 bytes: ADBC (Go) sends them as unpadded base64, which must be understood.
password = "correct horse!"
hashed = glaux_output("hash-password", stdin=password + "\n").strip()
users_file = os.path.join(work, "users")
with open(users_file, "w") as f:
    f.write(f"root:{hashed}:admin\n")
os.chmod(users_file, 0o600)
printed = glaux_output("access-key", "create", "root", "--catalog", catalog, "--warehouse", warehouse)
key = dict(line.split(" = ") for line in printed.splitlines() if " = " in line)



def start(args, markers):
    """Starts `glaux ARGS` and waits for the lines naming its addresses (`markers`: name -> text)."""
    return glaux_binary.start(args, markers)[0]


def grpc_health(address):
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return response.status


try:
    doors = start(["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--postgres-addr",
                   "127.0.0.1:0", "--warehouse", warehouse, "--catalog", catalog, "--users", users_file],
                  {"athena": "Athena API on ", "postgres": "PostgreSQL on ", "flight": "Flight SQL on "})
    http = doors["athena"].removeprefix("http://")

    # Probes before any executor joined: alive, not ready.
    status, body = get(f"http://{http}/health")
    check("scheduler /health answers 200 at once", status == 200, f"{status} {body}")
    status, body = get(f"http://{http}/ready")
    check("scheduler /ready is 503 without executors, saying why", status == 503 and "no executor" in body,
          f"{status} {body}")
    probe = subprocess.run([glaux, "probe", f"http://{http}/ready"], capture_output=True, text=True, timeout=30)
    check("`glaux probe` of /ready fails without executors", probe.returncode != 0 and "503" in probe.stdout,
          probe.stdout + probe.stderr)
    check("scheduler gRPC health (Flight SQL port) is SERVING without credentials",
          grpc_health(doors["flight"]) == health_pb2.HealthCheckResponse.SERVING)

    executors = [start(["executor", "--scheduler", doors["flight"], "--warehouse", warehouse, "--task-slots", "2",
                        "--memory-mib", "256", "--http-addr", "127.0.0.1:0"],
                       {"flight": "serving on ", "http": "Metrics and probes: http://"}) for _ in range(2)]
    for executor in executors:
        executor["http"] = executor["http"].removesuffix("/metrics")
    check("each executor's /ready turns 200 once registered",
          wait_until(lambda: all(get(f"http://{e['http']}/ready")[0] == 200 for e in executors)))
    check("scheduler /ready turns 200 with executors",
          wait_until(lambda: get(f"http://{http}/ready")[0] == 200))
    probe = subprocess.run([glaux, "probe", f"http://{http}/ready"], capture_output=True, text=True, timeout=30)
    check("`glaux probe` of /ready succeeds with executors", probe.returncode == 0, probe.stdout + probe.stderr)
    check("executor gRPC health (its Flight port) is SERVING",
          all(grpc_health(e["flight"]) == health_pb2.HealthCheckResponse.SERVING for e in executors))
    check("executor /health answers 200", all(get(f"http://{e['http']}/health")[0] == 200 for e in executors))

    before, _ = scrape(http)
    executors_before = [scrape(e["http"])[0] for e in executors]

    # Three statements through Flight SQL (two succeed, one fails), one through PostgreSQL.
    conn = flightsql.connect(f"grpc://{doors['flight']}", db_kwargs={"username": "root", "password": password})
    cursor = conn.cursor()
    cursor.execute(f"CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{os.path.join(warehouse, 'events')}/'")
    cursor.fetchall()
    cursor.execute("SELECT id, kind FROM events WHERE id % 2 = 0")
    returned = len(cursor.fetchall())
    check("the query returns its rows", returned == ROWS // 2, returned)
    try:
        cursor.execute("SELECT * FROM no_such_table")
        cursor.fetchall()
        check("an unknown table fails", False)
    except Exception:
        check("an unknown table fails", True)
    during, _ = scrape(http)
    check("connections_open counts the open Flight SQL connection",
          value(during, "glaux_connections_open", door="flight_sql") >= 1)
    host, port = doors["postgres"].rsplit(":", 1)
    psql = ["psql", "-h", host, "-p", port, "-U", "root", "-d", "default", "-X", "-qAt", "-c"]
    ok = subprocess.run([*psql, "SELECT count(*) FROM events"], capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"})
    check("psql counts the rows", ok.returncode == 0 and ok.stdout.strip() == str(ROWS), ok.stdout + ok.stderr)

    # One failed login at each door.
    try:
        flightsql.connect(f"grpc://{doors['flight']}",
                          db_kwargs={"username": "root", "password": "wrong"}).cursor().execute("SELECT 1")
        check("a wrong Flight SQL password is refused", False)
    except Exception as error:
        check("a wrong Flight SQL password is refused as wrong", "wrong user name or password" in str(error), error)
    bad = subprocess.run([*psql, "SELECT 1"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGPASSWORD": "wrong", "PGCONNECT_TIMEOUT": "10"})
    check("a wrong PostgreSQL password is refused", bad.returncode != 0)
    athena = boto3.client("athena", endpoint_url=f"http://{http}", region_name="us-east-1",
                          aws_access_key_id=key["aws_access_key_id"], aws_secret_access_key="not-the-secret")
    try:
        athena.list_work_groups()
        check("a bad Athena signature is refused", False)
    except botocore.exceptions.ClientError:
        check("a bad Athena signature is refused", True)

    def settled():
        now, _ = scrape(http)

        def grew(door, state):
            labels = {"door": door, "workgroup": "primary", "state": state}
            return value(now, "glaux_statements_total", **labels) - value(before, "glaux_statements_total", **labels)
        return grew("flight_sql", "SUCCEEDED") >= 2 and grew("flight_sql", "FAILED") >= 1 and \
            grew("postgres", "SUCCEEDED") >= 1

    check("every statement is counted once its record ends", wait_until(settled))
    after, text = scrape(http)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    check("two Flight SQL statements succeeded",
          delta("glaux_statements_total", door="flight_sql", workgroup="primary", state="SUCCEEDED") == 2,
          delta("glaux_statements_total", door="flight_sql", workgroup="primary", state="SUCCEEDED"))
    check("one Flight SQL statement failed",
          delta("glaux_statements_total", door="flight_sql", workgroup="primary", state="FAILED") == 1)
    check("one PostgreSQL statement succeeded",
          delta("glaux_statements_total", door="postgres", workgroup="primary", state="SUCCEEDED") == 1)
    check("the latency histogram counts the three Flight SQL statements",
          delta("glaux_statement_duration_seconds_count", door="flight_sql") == 3)
    check("rows returned through Flight SQL are the query's rows (the DDL's one row too)",
          delta("glaux_rows_returned_total", door="flight_sql") in (returned, returned + 1),
          delta("glaux_rows_returned_total", door="flight_sql"))
    scanned = delta("glaux_data_scanned_bytes_total", workgroup="primary")
    check("data scanned is counted, at most the file twice (two scans of it)",
          0 < scanned <= 2 * os.path.getsize(events_file), scanned)
    for door in ("flight_sql", "postgres", "athena"):
        check(f"one failed login counted at {door}", delta("glaux_failed_logins_total", door=door) == 1,
              delta("glaux_failed_logins_total", door=door))
    check("two executors alive", value(after, "glaux_executors") == 2)
    check("their task slots", value(after, "glaux_executor_task_slots") == 4)
    launched = delta("glaux_tasks_launched_total")
    check("tasks were launched", launched > 0, launched)
    check("the scheduler read Arrow data from executors", delta("glaux_member_bytes_received_total") > 0)
    check("the listing cache was asked",
          delta("glaux_listing_cache_hits_total") + delta("glaux_listing_cache_misses_total") > 0)
    check("no user name, statement or key in the metrics",
          "root" not in text and "events" not in text and key["aws_access_key_id"] not in text)

    executors_after = [scrape(e["http"])[0] for e in executors]
    installed = sum(value(a, "glaux_executor_tasks_installed_total") - value(b, "glaux_executor_tasks_installed_total")
                    for a, b in zip(executors_after, executors_before))
    check("the executors installed exactly the tasks the scheduler launched", installed == launched,
          f"{installed} vs {launched}")
    executor_scanned = sum(value(a, "glaux_executor_data_scanned_bytes_total")
                           - value(b, "glaux_executor_data_scanned_bytes_total")
                           for a, b in zip(executors_after, executors_before))
    check("the executors scanned what the scheduler counts", executor_scanned == scanned,
          f"{executor_scanned} vs {scanned}")
    check("executors sent Arrow data to a member",
          sum(total(a, "glaux_executor_member_bytes_sent_total") for a in executors_after) > 0)
    for executor in executors_after:
        check("an executor reports its pool and slots",
              value(executor, "glaux_executor_memory_limit_bytes") == 256 << 20
              and value(executor, "glaux_executor_task_slots") == 2
              and value(executor, "glaux_executor_registered") == 1)

    # Bad requests harm nothing.
    check("an unknown path is 404", get(f"http://{http}/nowhere")[0] == 404)
    request = urllib.request.Request(f"http://{http}/metrics", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        check("POST /metrics is refused", False)
    except urllib.error.HTTPError as error:
        check("POST /metrics is refused", error.code == 405, error.code)
    check("the executors' port serves nothing else", get(f"http://{executors[0]['http']}/ui")[0] == 404)
    check("the scheduler still serves", get(f"http://{http}/health")[0] == 200)
    conn.close()
finally:
    glaux_binary.stop_all()

check.exit()
