"""Tools built on Athena's API, unchanged, against `glaux standalone`: PyAthena's SQLAlchemy
dialect (`awsathena+rest://`, what Superset uses) reading a table and its metadata, and
awswrangler's `athena.read_sql_query(..., ctas_approach=False)` with its endpoints pointed at
Glaux and at SeaweedFS (where the result is written and read back).

Runs in its own virtualenv (PyAthena's dialect needs SQLAlchemy 2; flightsql-dbapi pins 1.4).
Usage: athena_tools.py GLAUX_BINARY WORK_DIR   (S3 from GLAUX_TEST_S3_*)
"""
import os
import sys
import time

import awswrangler as wr
import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy
from sqlalchemy import create_engine, inspect, text

from harness import Checks, Glaux, test_s3

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
results = os.path.join(warehouse, "results")
os.makedirs(os.path.join(warehouse, "events"), exist_ok=True)
os.makedirs(results, exist_ok=True)
s3 = test_s3()
KINDS = ["click", "view", "buy"]
pq.write_table(pa.table({"id": pa.array(range(90), pa.int64()), "kind": [KINDS[i % 3] for i in range(90)],
                         "amount": [i * 0.5 for i in range(90)]}),
               os.path.join(warehouse, "events", "part-0.parquet"))

glaux_binary = Glaux(glaux)
doors, _ = glaux_binary.start(
    ["standalone", "--executors", "1", "--flight-sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
     "--warehouse", warehouse, "--s3-endpoint", s3["endpoint"], "--s3-region", "us-east-1"],
    {"athena": "Athena API on ", "flight": "Flight SQL on "},
    env={"AWS_ACCESS_KEY_ID": s3["key"], "AWS_SECRET_ACCESS_KEY": s3["secret"], "AWS_ALLOW_HTTP": "true"})
endpoint = doors["athena"]
check = Checks()

try:
    athena = boto3.client("athena", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDTOOLS",
                          aws_secret_access_key="x")
    qid = athena.start_query_execution(
        QueryString=f"CREATE EXTERNAL TABLE events (id bigint, kind string, amount double) STORED AS PARQUET "
                    f"LOCATION '{warehouse}/events/'",
        ResultConfiguration={"OutputLocation": results + "/"})["QueryExecutionId"]
    while athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"] in ("QUEUED", "RUNNING"):
        time.sleep(0.05)

    # PyAthena's SQLAlchemy dialect, as Superset configures it.
    engine = create_engine(
        f"awsathena+rest://AKIDTOOLS:x@athena.us-east-1.amazonaws.com:443/default?"
        f"s3_staging_dir={results}/&endpoint_url={endpoint}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind "
                                 "ORDER BY kind")).fetchall()
    expected = sorted((k, 30, sum(i * 0.5 for i in range(90) if KINDS[i % 3] == k)) for k in KINDS)
    check("SQLAlchemy reads typed rows", [tuple(r) for r in rows] == expected, f"{rows}")
    inspector = inspect(engine)
    check("SQLAlchemy lists schemas and tables", "default" in inspector.get_schema_names() and
          "events" in inspector.get_table_names(schema="default"), f"{inspector.get_table_names(schema='default')}")
    columns = {c["name"]: type(c["type"]).__name__ for c in inspector.get_columns("events", schema="default")}
    check("SQLAlchemy reads a table's columns and types", columns == {"id": "BIGINT", "kind": "String",
                                                                       "amount": "DOUBLE"}, f"{columns}")
    print(f"     (SQLAlchemy {sqlalchemy.__version__})")

    # awswrangler, with results written to S3 and read back from there.
    wr.config.athena_endpoint_url = endpoint
    wr.config.s3_endpoint_url = s3["endpoint"]
    session = boto3.Session(aws_access_key_id=s3["key"], aws_secret_access_key=s3["secret"],
                            region_name="us-east-1")
    frame = wr.athena.read_sql_query(
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind", database="default",
        ctas_approach=False, s3_output=f"s3://glaux-test/wrangler-{os.getpid()}/", boto3_session=session)
    check("awswrangler reads a query's result from S3",
          [tuple(r) for r in frame.itertuples(index=False)] == [(k, 30) for k in sorted(KINDS)] and
          str(frame["n"].dtype) in ("Int64", "int64"), f"{frame} {frame.dtypes}")
finally:
    glaux_binary.stop_all()

check.exit()
