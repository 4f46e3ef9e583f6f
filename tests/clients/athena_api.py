"""Athena's API on Glaux through boto3's `athena` client and PyAthena's DB-API cursor
(endpoint_url pointed at `glaux standalone --http-addr`), as scripts and notebooks call Athena: start, poll, page results, DDL and
writes, a failing query, a stopped query, listing, idempotency, refusals; results written as CSV
to a local output location and to S3 (SeaweedFS), read back here with Python's csv module.

Usage: athena_api.py GLAUX_BINARY WORK_DIR   (S3 from GLAUX_TEST_S3_* as in delta_flows.py)
"""
import csv
import http.client
import io
import os
import subprocess
import sys
import time

import boto3
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from harness import Checks, Glaux, athena_error as error_of, test_s3, wait_for_execution

glaux, work = sys.argv[1], sys.argv[2]
glaux_binary = Glaux(glaux)
warehouse = os.path.join(work, "warehouse")
results = os.path.join(warehouse, "athena-results")
os.makedirs(os.path.join(warehouse, "events"), exist_ok=True)
os.makedirs(results, exist_ok=True)
s3 = test_s3()

KINDS = ["click", "view", "buy"]
events = pa.table({
    "id": pa.array(range(300), pa.int64()),
    "kind": [KINDS[i % 3] for i in range(300)],
    "amount": [float(i % 7) * 1.5 for i in range(300)],
    "note": [None if i % 10 == 0 else f'n"{i}",x' for i in range(300)],
})
pq.write_table(events, os.path.join(warehouse, "events", "part-0.parquet"))


def standalone(*flags, env=None):
    """Starts `glaux standalone` with Athena's API on a free port: the process and its endpoint."""
    doors, process = glaux_binary.start(
        ["standalone", "--flight-sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--warehouse", warehouse,
         *flags], {"athena": "Athena API on ", "flight": "Flight SQL on "}, env=env)
    return process, doors["athena"]


server, endpoint = standalone("--executors", "2", "--s3-endpoint", s3["endpoint"], "--s3-region", "us-east-1",
                              env={"AWS_ACCESS_KEY_ID": s3["key"], "AWS_SECRET_ACCESS_KEY": s3["secret"],
                                   "AWS_ALLOW_HTTP": "true"})

check = Checks()

athena = boto3.client("athena", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDGLAUXTEST",
                      aws_secret_access_key="not-checked-without-users")
OUT = {"OutputLocation": results + "/"}


def start(sql, out=None, **extra):
    return athena.start_query_execution(QueryString=sql, ResultConfiguration=out or OUT, **extra)["QueryExecutionId"]


def wait(qid, timeout=60):
    return wait_for_execution(athena, qid, timeout=timeout)


def all_rows(qid, page=None):
    wait(qid)
    pages = athena.get_paginator("get_query_results").paginate(
        QueryExecutionId=qid, PaginationConfig={"PageSize": page} if page else {})
    rows, meta, count = [], None, 0
    for result in pages:
        count += 1
        meta = meta or result["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        rows += [[d.get("VarCharValue") for d in r["Data"]] for r in result["ResultSet"]["Rows"]]
    return rows, meta, count


def metadata_columns(data):
    """(name, type) of each column in Athena's `.csv.metadata` (Protocol Buffers: field 4 holds a
    column, whose field 4 is its name and 6 its type), decoded here by hand."""
    def fields(data):
        at = 0
        while at < len(data):
            key, at = varint(data, at)
            if key & 7 == 2:
                size, at = varint(data, at)
                yield key >> 3, data[at:at + size]
                at += size
            else:
                value, at = varint(data, at)
                yield key >> 3, value

    def varint(data, at):
        value, shift = 0, 0
        while True:
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    columns = []
    for number, column in fields(data):
        if number == 4:
            parts = dict(fields(column))
            columns.append((parts[4].decode(), parts[6].decode()))
    return columns


try:
    # DDL through the API.
    ddl = wait(start(f"CREATE EXTERNAL TABLE events (id bigint, kind string, amount double, note string) "
                     f"STORED AS PARQUET LOCATION '{warehouse}/events/'"))
    check("DDL succeeds as DDL", ddl["Status"]["State"] == "SUCCEEDED" and ddl["StatementType"] == "DDL",
          f"{ddl['Status']} {ddl.get('StatementType')}")

    # A query: state, statistics, paged results with the header row first, Athena's types.
    sql = "SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind ORDER BY kind"
    qid = start(sql, QueryExecutionContext={"Database": "default", "Catalog": "AwsDataCatalog"})
    execution = wait(qid)
    check("query succeeds", execution["Status"]["State"] == "SUCCEEDED", f"{execution['Status']}")
    check("query is DML/SELECT", (execution["StatementType"], execution["SubstatementType"]) == ("DML", "SELECT"))
    check("data scanned is reported", execution["Statistics"]["DataScannedInBytes"] > 0, f"{execution['Statistics']}")
    check("output location names the result file", execution["ResultConfiguration"]["OutputLocation"]
          == f"{results}/{qid}.csv", execution["ResultConfiguration"])
    expected = [["kind", "n", "total"]]
    for kind in sorted(KINDS):
        amounts = [a for k, a in zip(events.column("kind").to_pylist(), events.column("amount").to_pylist()) if k == kind]
        expected.append([kind, str(len(amounts)), str(sum(amounts))])
    runtime = athena.get_query_runtime_statistics(QueryExecutionId=qid)["QueryRuntimeStatistics"]
    check("runtime statistics: output rows and bytes read", runtime["Rows"]["OutputRows"] == 3 and
          runtime["Rows"]["InputBytes"] == execution["Statistics"]["DataScannedInBytes"], f"{runtime}")
    rows, meta, pages = all_rows(qid, page=2)
    check("results paged two rows at a time, header first", rows == expected and pages == 2, f"{rows} {pages}")
    check("column types as Athena names them", [c["Type"] for c in meta] == ["varchar", "bigint", "double"],
          f"{meta}")
    with open(f"{results}/{qid}.csv", newline="") as f:
        on_disk = list(csv.reader(f))
    check("the output location holds the same rows as CSV", on_disk == expected, f"{on_disk}")
    with open(f"{results}/{qid}.csv.metadata", "rb") as f:
        described = metadata_columns(f.read())
    check("beside it, .csv.metadata as Athena writes it (its columns)", described == [
        (c["Name"], c["Type"]) for c in meta], f"{described}")

    # NULLs, quotes and commas survive; 2,500 rows come in pages of 1,000.
    rows, _, _ = all_rows(start("SELECT id, note FROM events ORDER BY id"))
    notes = events.column("note").to_pylist()
    check("NULL is no value, quotes and commas kept",
          rows[1:] == [[str(i), notes[i]] for i in range(300)], f"{rows[:3]}")
    big = start("SELECT value AS v FROM generate_series(1, 2500) ORDER BY value")
    wait(big)
    rows, _, pages = all_rows(big)
    check("2,500 rows in three pages", rows == [["v"]] + [[str(v)] for v in range(1, 2501)] and pages == 3,
          f"{len(rows)} {pages}")

    # A write reports its update count.
    ctas = wait(start("CREATE TABLE big_kinds AS SELECT * FROM events WHERE amount > 3"))
    count = athena.get_query_results(QueryExecutionId=ctas["QueryExecutionId"])["UpdateCount"]
    check("CTAS is DML with its update count", ctas["SubstatementType"] == "CREATE_TABLE_AS_SELECT" and
          count == sum(1 for a in events.column("amount").to_pylist() if a > 3), f"{count} {ctas['Status']}")

    # A failing query.
    bad = wait(start("SELECT * FROM no_such_table"))
    check("a bad query fails with its reason", bad["Status"]["State"] == "FAILED" and
          "no_such_table" in bad["Status"].get("StateChangeReason", ""), f"{bad['Status']}")
    code, message = error_of(lambda: athena.get_query_results(QueryExecutionId=bad["QueryExecutionId"]))
    check("its results are refused as Athena refuses them", code == "InvalidRequestException" and
          "FAILED" in message, f"{code} {message}")

    # Stopping a long query: CANCELLED, and no result file.
    slow = start("SELECT sum(a.id * b.id + c.id - d.id) FROM events a CROSS JOIN events b CROSS JOIN events c "
                 "CROSS JOIN events d")
    time.sleep(1.0)
    athena.stop_query_execution(QueryExecutionId=slow)
    stopped = wait(slow, timeout=20)
    check("a stopped query is CANCELLED", stopped["Status"]["State"] == "CANCELLED", f"{stopped['Status']}")
    check("a stopped query leaves no result file", not os.path.exists(f"{results}/{slow}.csv"))

    # Listing, batch get, idempotency.
    listed = [i for page in athena.get_paginator("list_query_executions").paginate(WorkGroup="primary")
              for i in page["QueryExecutionIds"]]
    check("every execution is listed, newest first", listed[0] == slow and qid in listed and len(listed) == 7,
          f"{len(listed)}")
    batch = athena.batch_get_query_execution(QueryExecutionIds=[qid, "no-such-id"])
    check("batch get finds one and names the other", [e["QueryExecutionId"] for e in batch["QueryExecutions"]]
          == [qid] and batch["UnprocessedQueryExecutionIds"][0]["QueryExecutionId"] == "no-such-id")
    token = "request-token-0123456789-0123456789"
    first = start("SELECT 1", ClientRequestToken=token)
    check("the same ClientRequestToken starts one execution", start("SELECT 1", ClientRequestToken=token) == first)

    # PyAthena's DB-API cursor (what Superset and many BI tools use): typed rows and descriptions.
    import pyathena
    cursor = pyathena.connect(s3_staging_dir=results + "/", region_name="us-east-1", endpoint_url=endpoint,
                              aws_access_key_id="AKIDGLAUXTEST", aws_secret_access_key="x").cursor()
    cursor.execute("SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind ORDER BY kind")
    typed = [(kind, int(n), float(total)) for kind, n, total in expected[1:]]
    check("PyAthena reads typed rows", cursor.fetchall() == typed and [d[1] for d in cursor.description] == [
        "varchar", "bigint", "double"], f"{cursor.description}")
    cursor.execute("SELECT id, note FROM events WHERE id < %(n)s ORDER BY id", {"n": 3})
    check("PyAthena: parameters, NULL and quotes", cursor.fetchall() == [(i, notes[i]) for i in range(3)])

    # The catalog's metadata, as Athena's API shows it.
    catalogs = athena.list_data_catalogs()["DataCatalogsSummary"]
    check("one data catalog, AwsDataCatalog", catalogs == [{"CatalogName": "AwsDataCatalog", "Type": "GLUE"}],
          f"{catalogs}")
    databases = [d["Name"] for d in athena.list_databases(CatalogName="AwsDataCatalog")["DatabaseList"]]
    check("ListDatabases", "default" in databases, f"{databases}")
    check("GetDatabase", athena.get_database(CatalogName="AwsDataCatalog", DatabaseName="default")["Database"]["Name"]
          == "default")
    code, _ = error_of(lambda: athena.get_database(CatalogName="AwsDataCatalog", DatabaseName="nope"))
    check("an unknown database is a MetadataException", code == "MetadataException", code)
    tables = athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default")["TableMetadataList"]
    check("ListTableMetadata lists the tables", {"events", "big_kinds"} <= {t["Name"] for t in tables},
          f"{[t['Name'] for t in tables]}")
    only = athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default", Expression="ev*")
    check("an Expression filters tables", [t["Name"] for t in only["TableMetadataList"]] == ["events"])
    events_meta = athena.get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default",
                                            TableName="events")["TableMetadata"]
    check("GetTableMetadata's columns and types", [(c["Name"], c["Type"]) for c in events_meta["Columns"]] == [
        ("id", "bigint"), ("kind", "string"), ("amount", "double"), ("note", "string")], f"{events_meta}")
    code, _ = error_of(lambda: athena.get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default",
                                                          TableName="nope"))
    check("an unknown table is a MetadataException", code == "MetadataException", code)

    # Refusals, by name.
    code, message = error_of(lambda: athena.start_query_execution(QueryString="SELECT 1"))
    check("no output location is Athena's error", code == "InvalidRequestException" and
          "No output location provided" in message, f"{code} {message}")
    code, message = error_of(lambda: start("SELECT 1", WorkGroup="analysts"))
    check("an unknown workgroup is refused", code == "InvalidRequestException" and "analysts" in message, message)
    rows, _, _ = all_rows(start("SELECT id, kind FROM events WHERE id < ? AND kind = ? ORDER BY id",
                                ExecutionParameters=["7", "'view'"]))
    check("execution parameters fill the placeholders", rows == [["id", "kind"], ["1", "view"], ["4", "view"]],
          f"{rows}")
    code, message = error_of(lambda: start("SELECT ?", ExecutionParameters=["now()"]))
    check("a parameter that is not a literal is refused", code == "InvalidRequestException" and "now()" in message,
          message)
    code, message = error_of(lambda: start("SELECT 1", out={"OutputLocation": "/etc/"}))
    check("an output location outside the roots is refused", code == "InvalidRequestException", f"{code} {message}")
    code, message = error_of(lambda: athena.list_engine_versions())
    check("an action not served yet says so", code == "InvalidRequestException" and "ListEngineVersions" in message,
          message)
    code, _ = error_of(lambda: athena.get_query_execution(QueryExecutionId="nope"))
    check("an unknown execution id is refused", code == "InvalidRequestException")
    host = endpoint.removeprefix("http://")
    for headers, body, status, kind in [
        ({"X-Amz-Target": "AmazonAthena.NoSuchAction", "Authorization":
          "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/athena/aws4_request, SignedHeaders=host, Signature=00"},
         "{}", 400, "UnknownOperationException"),
        ({"X-Amz-Target": "AmazonAthena.ListQueryExecutions"}, "{}", 403, "MissingAuthenticationTokenException"),
        ({"X-Amz-Target": "AmazonAthena.ListQueryExecutions", "Authorization":
          "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/athena/aws4_request, SignedHeaders=host, Signature=00"},
         "{not json", 400, "SerializationException"),
    ]:
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("POST", "/", body=body, headers={**headers, "Content-Type": "application/x-amz-json-1.1"})
        response = connection.getresponse()
        answer = response.read().decode()
        check(f"a raw request gets {kind}", response.status == status and kind in answer, f"{response.status} {answer}")

    # Results written to S3.
    bucket_out = f"s3://glaux-test/athena-{os.getpid()}/"
    s3_query = start("SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
                     out={"OutputLocation": bucket_out})
    done = wait(s3_query)
    fs = pyarrow.fs.S3FileSystem(access_key=s3["key"], secret_key=s3["secret"], endpoint_override=s3["endpoint"],
                                 region="us-east-1")
    with fs.open_input_stream(f"glaux-test/athena-{os.getpid()}/{s3_query}.csv") as f:
        in_s3 = list(csv.reader(io.StringIO(f.read().decode())))
    check("results written to S3", done["Status"]["State"] == "SUCCEEDED" and in_s3 == [["kind", "n"]] + [
        [k, "100"] for k in sorted(KINDS)], f"{in_s3} {done['Status']}")
    check("the server still serves", wait(start("SELECT 1"))["Status"]["State"] == "SUCCEEDED")
finally:
    server.terminate()
    server.wait(timeout=30)


def sigv4_headers(host, body, key, secret, when):
    """A request signed by hand (Signature Version 4), at time `when`."""
    import hashlib
    import hmac
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": stamp,
               "x-amz-target": "AmazonAthena.ListQueryExecutions"}
    names = sorted(headers)
    canonical = "\n".join(["POST", "/", "", *[f"{n}:{headers[n]}" for n in names], "", ";".join(names),
                           hashlib.sha256(body.encode()).hexdigest()])
    scope = f"{day}/us-east-1/athena/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing = f"AWS4{secret}".encode()
    for part in (day, "us-east-1", "athena", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={signature}")
    return headers


# With users: every request is signed by an access key Glaux issued, checked against its secret,
# and runs as its user under their grants.
catalog = os.path.join(work, "users-catalog.sqlite")
users_file = glaux_binary.users_file(os.path.join(work, "users"),
                                    (("root", "correct horse", True), ("analyst", "correct horse", False)))
(root_key, root_secret), (analyst_key, analyst_secret) = (glaux_binary.access_key(user, catalog, warehouse)
                                                          for user in ("root", "analyst"))
check("an issued secret is printed once, never the same", root_secret != analyst_secret and len(root_secret) == 40)
server, endpoint = standalone("--executors", "1", "--catalog", catalog, "--users", users_file)
try:
    def client(key, secret):
        return boto3.client("athena", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id=key,
                            aws_secret_access_key=secret)

    athena = client(root_key, root_secret)
    wait(start(f"CREATE EXTERNAL TABLE events (id bigint, kind string, amount double, note string) "
               f"STORED AS PARQUET LOCATION '{warehouse}/events/'"))
    rows, _, _ = all_rows(start("SELECT count(*) AS n FROM events"))
    check("a signed request runs as its key's user", rows == [["n"], ["300"]], f"{rows}")
    athena = client(analyst_key, analyst_secret)
    code, message = error_of(lambda: start("SELECT 1"))
    check("the output location needs the user's LOCATION grant", code == "InvalidRequestException" and
          "LOCATION" in message, f"{code} {message}")
    athena = client(root_key, root_secret)
    wait(start(f"GRANT LOCATION '{results}/' TO USER analyst"))
    athena = client(analyst_key, analyst_secret)
    denied = wait(start("SELECT count(*) FROM events"))
    check("grants apply to the key's user", denied["Status"]["State"] == "FAILED" and
          "denied" in denied["Status"].get("StateChangeReason", "").lower(), f"{denied['Status']}")
    code, _ = error_of(lambda: athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default"))
    databases = athena.list_databases(CatalogName="AwsDataCatalog")["DatabaseList"]
    check("metadata shows only what grants let the user see", code == "MetadataException" and databases == [],
          f"{code} {databases}")
    athena = client(root_key, root_secret)
    listed = athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="default")["TableMetadataList"]
    check("an admin's metadata shows the table", [t["Name"] for t in listed] == ["events"], f"{listed}")
    athena = client(analyst_key, root_secret)
    code, message = error_of(lambda: athena.list_query_executions())
    check("a wrong secret is refused", code == "InvalidSignatureException", f"{code} {message}")
    athena = client("GLAKNOSUCHKEY0000000", root_secret)
    code, message = error_of(lambda: athena.list_query_executions())
    check("an unknown key is refused", code == "UnrecognizedClientException", f"{code} {message}")
    import datetime
    host = endpoint.removeprefix("http://")
    for label, when, status in [("now", datetime.datetime.now(datetime.timezone.utc), 200),
                                ("20 minutes ago", datetime.datetime.now(datetime.timezone.utc)
                                 - datetime.timedelta(minutes=20), 400)]:
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("POST", "/", body="{}", headers=sigv4_headers(host, "{}", root_key, root_secret, when))
        response = connection.getresponse()
        answer = response.read().decode()
        check(f"a request signed by hand {label}: {status}", response.status == status and
              (status == 200 or "InvalidSignatureException" in answer), f"{response.status} {answer}")
    glaux_binary.output("access-key", "delete", analyst_key, "--catalog", catalog, "--warehouse", warehouse)
    athena = client(analyst_key, analyst_secret)
    code, _ = error_of(lambda: athena.list_query_executions())
    check("a revoked key is refused", code == "UnrecognizedClientException", code)
finally:
    server.terminate()
    server.wait(timeout=30)

# Over TLS: the same certificate as the other doors; boto3 trusts it and runs a query.
cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
os.chmod(key, 0o600)
server, endpoint = standalone("--executors", "1", "--tls-cert", cert, "--tls-key", key)
try:
    check("the door says https with a certificate", endpoint.startswith("https://"), endpoint)
    athena = boto3.client("athena", endpoint_url=endpoint, region_name="us-east-1", verify=cert,
                          aws_access_key_id="AKIDGLAUXTEST", aws_secret_access_key="x")
    rows, _, _ = all_rows(start("SELECT 40 + 2 AS answer"))
    check("boto3 over TLS", rows == [["answer"], ["42"]], f"{rows}")
finally:
    server.terminate()
    server.wait(timeout=30)

check.exit()
