"""Apache Superset (from PyPI, in a virtualenv of its own) as a BI tool on Glaux: its own web
server, driven through its REST API as its pages drive it, connected to a real `glaux scheduler`
and executor through Glaux's PostgreSQL door (psycopg2, Superset's PostgreSQL engine spec) as a
user who may read one table of two.

Superset tests the connection, lists the schemas and the one table the user may read, builds a
dataset from it (reading its columns and types), and saves a bar chart whose query (SUM by
product over two regions, a filter Glaux prunes partitions with) returns the sums counted here
from the rows the test wrote; SQL Lab runs a statement; a statement beyond the user's grants
fails with Glaux's error; the chart's queries are in Glaux's query history as the user's, door
postgres.

Usage (with the virtualenv's python): superset.py GLAUX_BINARY WORK_DIR
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from harness import Checks, Glaux

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
catalog = os.path.join(work, "catalog.sqlite")
PRODUCTS = ["anvil", "bolt", "crate", "drill"]
REGIONS = ["eu", "us", "ap"]

# The lake: sales partitioned by region, and a table the analyst may not read.
expected = {}
for r, region in enumerate(REGIONS):
    rows = [(i, PRODUCTS[(i * 7 + r) % 4], round(((i * 37 + r * 11) % 1000) / 4, 2)) for i in range(500)]
    os.makedirs(os.path.join(warehouse, "sales", f"region={region}"), exist_ok=True)
    pq.write_table(pa.table({"order_id": pa.array([o for o, _, _ in rows], pa.int64()),
                             "product": [p for _, p, _ in rows],
                             "amount": pa.array([a for _, _, a in rows], pa.float64())}),
                   os.path.join(warehouse, "sales", f"region={region}", "part-0.parquet"))
    if region in ("eu", "us"):
        for _, product, amount in rows:
            expected[product] = expected.get(product, 0.0) + amount
os.makedirs(os.path.join(warehouse, "salaries"), exist_ok=True)
pq.write_table(pa.table({"name": ["ana"], "salary": [1]}), os.path.join(warehouse, "salaries", "part-0.parquet"))

check = Checks()
glaux_binary = Glaux(glaux)
users_file = glaux_binary.users_file(os.path.join(work, "users"),
                                    (("root", "root-password", True), ("analyst", "analyst-password", False)))

superset_home = os.path.join(work, "superset")
os.makedirs(superset_home, exist_ok=True)
with open(os.path.join(superset_home, "superset_config.py"), "w") as f:
    f.write(f"SECRET_KEY = 'a key for this test only, {os.urandom(16).hex()}'\n"
            f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{superset_home}/superset.db'\n"
            # The API is called with a bearer token, as a script would; no browser form to protect.
            "WTF_CSRF_ENABLED = False\n")
superset_env = {**os.environ, "SUPERSET_CONFIG_PATH": os.path.join(superset_home, "superset_config.py"),
                "SUPERSET_HOME": superset_home, "FLASK_APP": "superset"}
superset_cli = os.path.join(os.path.dirname(sys.executable), "superset")
server = None


def superset(*args):
    out = subprocess.run([superset_cli, *args], env=superset_env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"superset {' '.join(args)} failed: {out.stdout[-2000:]} {out.stderr[-4000:]}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:
    doors, _ = glaux_binary.start(
        ["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--postgres-addr", "127.0.0.1:0", "--warehouse", warehouse,
         "--catalog", catalog, "--users", users_file],
        {"flight": "Flight SQL on ", "postgres": "PostgreSQL on "})
    glaux_binary.start(["executor", "--scheduler", doors["flight"], "--warehouse", warehouse, "--task-slots", "2",
                        "--memory-mib", "512"], {"flight": "serving on "})
    pg_host, pg_port = doors["postgres"].rsplit(":", 1)

    # The administrator declares the tables and lets the analyst read one.
    admin = psycopg2.connect(host=pg_host, port=pg_port, user="root", password="root-password", dbname="default")
    admin.autocommit = True
    with admin.cursor() as cursor:
        for ddl in ("CREATE EXTERNAL TABLE sales (order_id BIGINT, product VARCHAR, amount DOUBLE) "
                    f"PARTITIONED BY (region VARCHAR) STORED AS PARQUET LOCATION '{warehouse}/sales/'",
                    "MSCK REPAIR TABLE sales",
                    f"CREATE EXTERNAL TABLE salaries STORED AS PARQUET LOCATION '{warehouse}/salaries/'",
                    "GRANT SELECT ON TABLE sales TO USER analyst"):
            cursor.execute(ddl)

    # Superset: its metadata database, an administrator of its own, its roles; then its server.
    started = time.time()
    superset("db", "upgrade")
    superset("fab", "create-admin", "--username", "admin", "--firstname", "Ada", "--lastname", "Admin",
             "--email", "admin@example.com", "--password", "superset-admin-password")
    superset("init")
    port = free_port()
    server = subprocess.Popen([superset_cli, "run", "-h", "127.0.0.1", "-p", str(port), "--with-threads"],
                              env=superset_env, stdout=open(os.path.join(work, "superset.log"), "w"),
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    token = None

    def call(method, path, body=None):
        """(status, JSON answer) of a Superset API call."""
        request = urllib.request.Request(base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        if body is not None:
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        def parsed(text):
            try:
                return json.loads(text or b"{}")
            except ValueError:
                return {"text": text.decode(errors="replace")}

        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, parsed(response.read())
        except urllib.error.HTTPError as e:
            return e.code, parsed(e.read())
        except (urllib.error.URLError, ConnectionError):
            return None, {}

    deadline = time.time() + 120
    while time.time() < deadline and call("GET", "/health")[0] != 200:
        if server.poll() is not None:
            sys.exit(f"superset run exited with {server.returncode}")
        time.sleep(0.5)
    check("Superset's server is up", call("GET", "/health")[0] == 200)
    print(f"Superset set up and serving in {time.time() - started:.0f} s")
    status, answer = call("POST", "/api/v1/security/login",
                          {"username": "admin", "password": "superset-admin-password", "provider": "db"})
    check("logged in to Superset's API", status == 200, answer)
    token = answer.get("access_token")

    # Glaux as a database of Superset's, through the PostgreSQL door as the analyst.
    uri = f"postgresql+psycopg2://analyst:analyst-password@{pg_host}:{pg_port}/default"
    status, answer = call("POST", "/api/v1/database/test_connection/",
                          {"database_name": "glaux", "sqlalchemy_uri": uri, "configuration_method": "sqlalchemy_form"})
    check("Superset's connection test passes", status == 200, answer)
    bad = uri.replace("analyst-password", "a-wrong-password")
    status, answer = call("POST", "/api/v1/database/test_connection/",
                          {"database_name": "glaux", "sqlalchemy_uri": bad, "configuration_method": "sqlalchemy_form"})
    check("... and fails with a wrong password", status not in (None, 200)
          and "password" in json.dumps(answer).lower(), answer)
    status, answer = call("POST", "/api/v1/database/",
                          {"database_name": "glaux", "sqlalchemy_uri": uri, "expose_in_sqllab": True,
                           "configuration_method": "sqlalchemy_form"})
    check("the database is added", status == 201, answer)
    database = answer.get("id")

    status, answer = call("GET", f"/api/v1/database/{database}/schemas/?q=(force:!t)")
    schemas = answer.get("result", [])
    check("Superset lists Glaux's database as a schema", status == 200 and "default" in schemas, answer)
    rison = urllib.parse.quote("(force:!t,schema_name:default)")
    status, answer = call("GET", f"/api/v1/database/{database}/tables/?q={rison}")
    tables = sorted(t.get("value") for t in answer.get("result", []))
    check("Superset lists the lake's table the analyst may read, and not the other", status == 200
          and "sales" in tables and "salaries" not in tables, answer)

    status, answer = call("POST", "/api/v1/dataset/", {"database": database, "schema": "default", "table_name": "sales"})
    check("a dataset is made of the table", status == 201, answer)
    dataset = answer.get("id")
    # Superset reads the table's columns when asked to sync them (its "Sync columns from source").
    status, answer = call("PUT", f"/api/v1/dataset/{dataset}/refresh", {})
    check("... and its columns read from Glaux", status == 200, answer)
    status, answer = call("GET", f"/api/v1/dataset/{dataset}")
    columns = {c["column_name"]: (c.get("type") or "").upper() for c in answer.get("result", {}).get("columns", [])}
    check("... with the table's columns and types", status == 200 and set(columns) == {"order_id", "product", "amount", "region"}
          and "BIGINT" in columns.get("order_id", "") and "DOUBLE" in columns.get("amount", "")
          and ("VARCHAR" in columns.get("product", "") or "TEXT" in columns.get("product", "")), f"{status} {columns} {answer}")

    # A bar chart: revenue by product in two regions.
    metric = {"expressionType": "SIMPLE", "column": {"column_name": "amount"}, "aggregate": "SUM", "label": "revenue"}
    query = {"columns": ["product"], "metrics": [metric], "orderby": [[metric, False]], "row_limit": 100,
             "filters": [{"col": "region", "op": "IN", "val": ["eu", "us"]}]}
    form = {"viz_type": "echarts_timeseries_bar", "x_axis": "product", "metrics": [metric], "groupby": [],
            "adhoc_filters": [{"expressionType": "SIMPLE", "subject": "region", "operator": "IN",
                               "comparator": ["eu", "us"], "clause": "WHERE"}],
            "row_limit": 100, "datasource": f"{dataset}__table"}
    context = {"datasource": {"id": dataset, "type": "table"}, "force": True, "queries": [query],
               "form_data": form, "result_format": "json", "result_type": "full"}
    status, answer = call("POST", "/api/v1/chart/",
                          {"slice_name": "Revenue by product", "viz_type": "echarts_timeseries_bar",
                           "datasource_id": dataset, "datasource_type": "table", "params": json.dumps(form),
                           "query_context": json.dumps(context)})
    check("a bar chart is saved", status == 201, answer)
    chart = answer.get("id")
    status, answer = call("GET", f"/api/v1/chart/{chart}/data/?force=true")
    result = (answer.get("result") or [{}])[0]
    got = {row["product"]: row["revenue"] for row in result.get("data", [])}
    check("the chart's query returns the revenue per product counted here",
          status == 200 and set(got) == set(expected)
          and all(abs(got[p] - expected[p]) < 1e-6 for p in expected), f"{status} {got} vs {expected} {answer}")
    order = [row["product"] for row in result.get("data", [])]
    check("... largest first, as the chart orders it", order == sorted(expected, key=expected.get, reverse=True),
          order)
    sent = result.get("query", "")
    check("... and Superset sent Glaux a GROUP BY with the region filter", "GROUP BY" in sent.upper()
          and "region" in sent, sent)

    # SQL Lab, as the analyst's connection.
    status, answer = call("POST", "/api/v1/sqllab/execute/",
                          {"database_id": database, "schema": "default", "runAsync": False,
                           "sql": "SELECT region, count(*) AS orders FROM sales GROUP BY region ORDER BY region"})
    rows = [(r.get("region"), r.get("orders")) for r in answer.get("data", [])]
    check("SQL Lab runs a statement", status == 200 and rows == [("ap", 500), ("eu", 500), ("us", 500)],
          f"{status} {rows} {answer}")
    status, answer = call("POST", "/api/v1/sqllab/execute/",
                          {"database_id": database, "schema": "default", "runAsync": False,
                           "sql": "SELECT * FROM salaries"})
    check("... and one beyond the analyst's grants fails with Glaux's error",
          status not in (None, 200) and "salaries" in json.dumps(answer), f"{status} {answer}")

    # Glaux recorded Superset's statements as the analyst's, through the PostgreSQL door.
    with admin.cursor() as cursor:
        cursor.execute("SELECT query, state, error FROM system.runtime.queries "
                       "WHERE \"user\" = 'analyst' AND door = 'postgres' ORDER BY created")
        history = cursor.fetchall()
    check("the chart's query is in Glaux's history, the analyst's through the PostgreSQL door",
          any("SUM(amount)" in q.replace('"', "") and s == "SUCCEEDED" for q, s, _ in history),
          [q[:80] for q, _, _ in history])
    failed = [(q, e) for q, s, e in history if s != "SUCCEEDED"]
    check("Superset's statements all succeeded but the one beyond the grants",
          len(failed) == 1 and "salaries" in failed[0][0], failed)
    admin.close()
finally:
    if server is not None and server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    glaux_binary.stop_all()
check.exit()
