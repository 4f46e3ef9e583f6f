"""Flight SQL clients BI tools and scripts use, against a real `glaux standalone` with users.

Usage: flightsql_clients.py GLAUX_BINARY WORK_DIR

Starts `glaux standalone --users FILE` (a user whose Argon2id hash `glaux hash-password` made)
and checks, each with the right password and a wrong one:
- `flightsql-dbapi` through SQLAlchemy (`datafusion://user:password@host:port?insecure=true`, the
  dialect Superset uses): list schemas, tables and columns, run a query;
- `pyarrow.flight` (`authenticate_basic_token`, then Flight SQL commands by hand);
- ADBC with a user name and password;
- large results read from the executors (`x-glaux-endpoints: executors`): pyarrow.flight reading
  each endpoint at its location in parallel, and ADBC's partitioned execution;
then ADBC and `pyarrow.flight` again over TLS (`--tls-cert`/`--tls-key`, a self-signed certificate
made by openssl), and that neither gets through without it.
Results are compared with pyarrow's own computation over the same files.
"""
import os
import subprocess
import threading
import sys

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import sqlalchemy
from google.protobuf import any_pb2

import flightsql.flightsql_pb2 as flightsql_pb2
import flightsql.sqlalchemy  # noqa: F401  (registers the datafusion:// dialect)
from harness import Checks, Glaux

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
trips_dir = os.path.join(warehouse, "trips")
os.makedirs(trips_dir, exist_ok=True)
trips = pa.table({
    "trip_id": pa.array(range(500), pa.int64()),
    "city": pa.array([["oslo", "lima", "pune"][i % 3] for i in range(500)]),
    "fare": pa.array([round(3.5 + (i * 7 % 40) / 4, 2) for i in range(500)], pa.float64()),
})
# Four files, so that a plain scan has several partitions (and result endpoints) to spread.
for part in range(4):
    pq.write_table(trips.slice(part * 125, 125), os.path.join(trips_dir, f"part-{part}.parquet"), row_group_size=100)

password = "tr0ub4dor&3"
glaux_binary = Glaux(glaux)
# ana administers; bob may do only what he is granted. The file may carry comments.
users_file = glaux_binary.users_file(os.path.join(work, "users"), (("ana", password, True), ("bob", password, False)))
with open(users_file) as f:
    users = f.read()
with open(users_file, "w") as f:
    f.write("# who may query\n" + users)


def start_server(extra):
    """`glaux standalone --users` with `extra` arguments; the process and its Flight SQL address."""
    doors, process = glaux_binary.start(
        ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", warehouse,
         "--users", users_file, *extra], {"flight": "Flight SQL on "})
    return process, doors["flight"]


server, address = start_server([])
host, port = address.rsplit(":", 1)
check = Checks()


def expect_error(name, call, words):
    try:
        call()
        check(name, False, "no error")
    except Exception as e:  # each client raises its own exception types
        check(name, any(w in str(e) for w in words), str(e))


by_city = {}
for row in trips.to_pylist():
    by_city.setdefault(row["city"], []).append(row["fare"])
expected = sorted((city, len(fares), round(sum(fares), 2)) for city, fares in by_city.items())

try:
    # ADBC with credentials: declare the table, query it.
    with adbc.connect(f"grpc://{address}", db_kwargs={"username": "ana", "password": password}) as conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{trips_dir}/'")
            cur.execute("SELECT city, count(*), round(sum(fare), 2) FROM trips GROUP BY city ORDER BY city")
            check("ADBC with a user name and password", cur.fetchall() == expected)
    expect_error("ADBC with a wrong password",
                 lambda: adbc.connect(f"grpc://{address}", db_kwargs={"username": "ana", "password": "nope"}).cursor().execute("SELECT 1"),
                 ["wrong user name or password", "UNAUTHENTICATED", "Unauthenticated"])

    # Grants through ADBC: bob reads nothing until granted, then only the granted column, and
    # the metadata ADBC reads (GetTables with columns) shows him only that.
    with adbc.connect(f"grpc://{address}", db_kwargs={"username": "bob", "password": password}) as bob:
        expect_error("ADBC: reading without a grant is denied",
                     lambda: bob.cursor().execute("SELECT count(*) FROM trips"), ["Access Denied", "PERMISSION_DENIED"])
        objects = bob.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = [t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or []) for t in (s["db_schema_tables"] or [])]
        check("ADBC: no grant, no table in the metadata", "trips" not in tables, f"{tables}")
        with adbc.connect(f"grpc://{address}", db_kwargs={"username": "ana", "password": password}) as ana:
            ana.cursor().execute("GRANT SELECT (city) ON TABLE trips TO USER bob")
        with bob.cursor() as cur:
            cur.execute("SELECT * FROM trips WHERE city = 'lima' LIMIT 2")
            names = [d[0] for d in cur.description]
            check("ADBC: SELECT * returns the granted columns only", names == ["city"], f"{names}")
        expect_error("ADBC: an ungranted column is denied, named",
                     lambda: bob.cursor().execute("SELECT sum(fare) FROM trips"), ["column fare"])
        objects = bob.adbc_get_objects(depth="all").read_all().to_pylist()
        columns = [col["column_name"] for c in objects for s in (c["catalog_db_schemas"] or [])
                   for t in (s["db_schema_tables"] or []) if t["table_name"] == "trips" for col in (t["table_columns"] or [])]
        check("ADBC: the metadata shows the granted columns only", columns == ["city"], f"{columns}")
        expect_error("ADBC: DDL without its grant is denied",
                     lambda: bob.cursor().execute("DROP TABLE trips"), ["Access Denied", "DROP"])

    # SQLAlchemy through flightsql-dbapi, as Superset connects.
    engine = sqlalchemy.create_engine(f"datafusion+flightsql://ana:{password}@{host}:{port}?insecure=true")
    inspector = sqlalchemy.inspect(engine)
    check("SQLAlchemy lists schemas", "default" in inspector.get_schema_names(), f"{inspector.get_schema_names()}")
    tables = inspector.get_table_names(schema="default")
    check("SQLAlchemy lists tables", "trips" in tables, f"{tables}")
    columns = inspector.get_columns("trips", schema="default")
    check("SQLAlchemy lists columns", [c["name"] for c in columns] == ["trip_id", "city", "fare"], f"{columns}")
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT city, count(*) AS n, round(sum(fare), 2) AS total FROM trips GROUP BY city ORDER BY city")).fetchall()
        check("SQLAlchemy runs a query", [tuple(r) for r in rows] == expected, f"{rows}")
        table = sqlalchemy.Table("trips", sqlalchemy.MetaData(), autoload_with=engine, schema="default")
        query = sqlalchemy.select(table.c.trip_id).where(table.c.city == "lima").order_by(table.c.trip_id).limit(3)
        ids = [r[0] for r in connection.execute(query)]
        check("SQLAlchemy expression query", ids == [1, 4, 7], f"{ids}")
    wrong = f"datafusion+flightsql://ana:nope@{host}:{port}?insecure=true"
    expect_error("SQLAlchemy with a wrong password",
                 lambda: sqlalchemy.create_engine(wrong).connect().execute(sqlalchemy.text("SELECT 1")),
                 ["wrong user name or password", "Unauthenticated"])

    # pyarrow.flight: Basic credentials for a bearer token, then Flight SQL commands by hand.
    client = flight.FlightClient(f"grpc://{address}")
    expect_error("pyarrow.flight with a wrong password", lambda: client.authenticate_basic_token("ana", "nope"),
                 ["wrong user name or password", "Unauthenticated"])
    expect_error("pyarrow.flight without a token",
                 lambda: client.get_flight_info(flight.FlightDescriptor.for_command(b"x")),
                 ["authentication required", "Unauthenticated"])
    header = client.authenticate_basic_token("ana", password)
    options = flight.FlightCallOptions(headers=[header])

    def command(message):
        wrapped = any_pb2.Any()
        wrapped.Pack(message)
        return flight.FlightDescriptor.for_command(wrapped.SerializeToString())

    statement = flightsql_pb2.CommandStatementQuery(query="SELECT trip_id, fare FROM trips WHERE trip_id < 5 ORDER BY trip_id")
    info = client.get_flight_info(command(statement), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    check("pyarrow.flight statement", table.column("trip_id").to_pylist() == [0, 1, 2, 3, 4]
          and table.column("fare").to_pylist() == trips.column("fare").to_pylist()[:5], f"{table}")
    info = client.get_flight_info(command(flightsql_pb2.CommandGetTables(include_schema=True)), options)
    listed = client.do_get(info.endpoints[0].ticket, options).read_all()
    check("pyarrow.flight GetTables", "trips" in listed.column("table_name").to_pylist(), f"{listed}")
    info = client.get_flight_info(command(flightsql_pb2.CommandGetSqlInfo(info=[0, 1])), options)
    server_info = client.do_get(info.endpoints[0].ticket, options).read_all()
    check("pyarrow.flight GetSqlInfo", server_info.num_rows == 2, f"{server_info}")
    expect_error("pyarrow.flight malformed command",
                 lambda: client.get_flight_info(flight.FlightDescriptor.for_command(b"\\x0agarbage"), options),
                 ["unsupported", "Unimplemented", "decode", "Invalid", "invalid"])
    # A large result read from the executors: one endpoint per gathered partition, each at an
    # executor's address, read in parallel by clients holding only the ticket.
    endpoints = flight.FlightCallOptions(headers=[header, (b"x-glaux-endpoints", b"executors")])
    statement = flightsql_pb2.CommandStatementQuery(query="SELECT trip_id, city, fare FROM trips")
    info = client.get_flight_info(command(statement), endpoints)
    locations = [str(e.locations[0].uri, "utf-8") if e.locations else "" for e in info.endpoints]
    check("result endpoints on the executors", len(locations) >= 2 and all(l.startswith("grpc+tcp://127.0.0.1:") for l in locations)
          and f"grpc+tcp://{address}" not in locations, f"{locations}")
    parts = [None] * len(info.endpoints)

    def read(i, endpoint):
        parts[i] = flight.FlightClient(endpoint.locations[0]).do_get(endpoint.ticket).read_all()

    readers = [threading.Thread(target=read, args=(i, e)) for i, e in enumerate(info.endpoints)]
    [r.start() for r in readers]
    [r.join() for r in readers]
    got = pa.concat_tables([p for p in parts if p is not None]).sort_by("trip_id") if all(parts) else None
    check("pyarrow.flight reads every endpoint in parallel", got is not None and got.equals(trips.select(["trip_id", "city", "fare"])),
          f"{got}")
    expect_error("an endpoint's ticket on the scheduler",
                 lambda: client.do_get(info.endpoints[0].ticket, options).read_all(),
                 ["unsupported", "Unimplemented", "decode", "Invalid", "invalid"])
    with adbc.connect(f"grpc://{address}", db_kwargs={"username": "ana", "password": password,
                                                      "adbc.flight.sql.rpc.call_header.x-glaux-endpoints": "executors"}) as conn:
        with conn.cursor() as cur:
            partitions, _ = cur.adbc_execute_partitions("SELECT trip_id, fare FROM trips WHERE fare > 5")
            tables = []
            for partition in partitions:
                cur.adbc_read_partition(partition)
                tables.append(cur.fetch_arrow_table())
            got = pa.concat_tables(tables).sort_by("trip_id")
            want = trips.filter(pa.compute.greater(trips["fare"], 5)).select(["trip_id", "fare"])
            check("ADBC partitioned execution reads the executors", len(partitions) >= 2 and got.equals(want),
                  f"{len(partitions)} partitions, {got.num_rows} rows of {want.num_rows}")
            cur.execute("SELECT trip_id, fare FROM trips")
            check("ADBC reads every endpoint of a plain execute", sorted(r[0] for r in cur.fetchall()) == list(range(500)))

    # The server serves on after every refusal above.
    info = client.get_flight_info(command(flightsql_pb2.CommandStatementQuery(query="SELECT count(*) AS n FROM trips")), options)
    check("served after bad requests", client.do_get(info.endpoints[0].ticket, options).read_all().column("n").to_pylist() == [500])
finally:
    server.terminate()
    server.wait(timeout=30)

# The same clients over TLS: a self-signed certificate for localhost, trusted by each client.
cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
with open(cert, "rb") as f:
    root = f.read()
server, address = start_server(["--tls-cert", cert, "--tls-key", key])
port = address.rsplit(":", 1)[1]
try:
    with adbc.connect(f"grpc+tls://localhost:{port}", db_kwargs={
            "username": "ana", "password": password,
            "adbc.flight.sql.client_option.tls_root_certs": root.decode()}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT city, count(*), round(sum(fare), 2) FROM trips GROUP BY city ORDER BY city")
            check("ADBC over TLS", cur.fetchall() == expected)
    expect_error("ADBC in the clear to a TLS port",
                 lambda: adbc.connect(f"grpc://localhost:{port}", db_kwargs={"username": "ana", "password": password}).cursor().execute("SELECT 1"),
                 ["Unavailable", "UNAVAILABLE", "connection", "Connection", "EOF", "handshake"])
    client = flight.FlightClient(f"grpc+tls://localhost:{port}", tls_root_certs=root)
    header = client.authenticate_basic_token("ana", password)
    statement = flightsql_pb2.CommandStatementQuery(query="SELECT count(*) AS n FROM trips")
    wrapped = any_pb2.Any()
    wrapped.Pack(statement)
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(wrapped.SerializeToString()), options)
    check("pyarrow.flight over TLS", client.do_get(info.endpoints[0].ticket, options).read_all().column("n").to_pylist() == [500])
    # Executors serve clients in plain gRPC: over TLS, results come through the scheduler.
    endpoints = flight.FlightCallOptions(headers=[header, (b"x-glaux-endpoints", b"executors")])
    wrapped.Pack(flightsql_pb2.CommandStatementQuery(query="SELECT trip_id FROM trips"))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(wrapped.SerializeToString()), endpoints)
    check("over TLS, results come through the scheduler", [list(e.locations) for e in info.endpoints] == [[]]
          and client.do_get(info.endpoints[0].ticket, options).read_all().num_rows == 500, f"{info.endpoints}")
    expect_error("pyarrow.flight without the certificate's root",
                 lambda: flight.FlightClient(f"grpc+tls://localhost:{port}").authenticate_basic_token("ana", password),
                 ["Unavailable", "certificate", "handshake", "SSL", "ssl", "Could not finish writing"])
finally:
    server.terminate()
    server.wait(timeout=30)

check.exit()
