"""Throughput of a large result read through the scheduler vs from the executors.

Usage: result_endpoints.py GLAUX_BINARY LINEITEM_DIR [RUNS]

Starts `glaux standalone --executors 2` over a TPC-H lineitem directory (`glaux bench` writes one,
e.g. ~/.glaux/warehouse/tpch/sf10/lineitem), declares it, and reads the same query's result with
pyarrow.flight both ways, alternating, RUNS times each (3 by default):
- scheduler: the one endpoint `GetFlightInfo` gives without `x-glaux-endpoints`;
- executors: `x-glaux-endpoints: executors`, every endpoint read at its location in a thread of
  its own.
Prints each run and the medians (seconds, rows/s, MB/s of Arrow data) as JSON on the last line.
Measures, never asserts: the rows of both ways are only checked to be as many.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow.flight as flight
from google.protobuf import any_pb2

import flightsql.flightsql_pb2 as flightsql_pb2

glaux, lineitem = sys.argv[1], os.path.abspath(sys.argv[2])
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
SQL = ("SELECT l_orderkey, l_partkey, l_suppkey, l_quantity, l_extendedprice, l_discount, l_shipdate, l_comment "
       "FROM lineitem WHERE l_linenumber = 1")

work = tempfile.mkdtemp(prefix="glaux-endpoints-")
process = subprocess.Popen(
    [glaux, "standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0",
     "--warehouse", os.path.dirname(lineitem), "--catalog", os.path.join(work, "catalog.sqlite")],
    stdout=subprocess.PIPE, text=True, env={**os.environ, "GLAUX_LOG": "warn"},
)
address = None
for line in process.stdout:
    if "Flight SQL on " in line:
        address = line.split("Flight SQL on ")[1].split()[0]
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        break
if address is None:
    sys.exit("glaux standalone did not start")


def command(sql):
    wrapped = any_pb2.Any()
    wrapped.Pack(flightsql_pb2.CommandStatementQuery(query=sql))
    return flight.FlightDescriptor.for_command(wrapped.SerializeToString())


def read_through_scheduler(client):
    info = client.get_flight_info(command(SQL))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    return table.num_rows, table.nbytes, len(info.endpoints)


def read_from_executors(client):
    options = flight.FlightCallOptions(headers=[(b"x-glaux-endpoints", b"executors")])
    info = client.get_flight_info(command(SQL), options)
    sizes = [None] * len(info.endpoints)

    def read(i, endpoint):
        table = flight.FlightClient(endpoint.locations[0]).do_get(endpoint.ticket).read_all()
        sizes[i] = (table.num_rows, table.nbytes)

    threads = [threading.Thread(target=read, args=(i, e)) for i, e in enumerate(info.endpoints)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if any(s is None for s in sizes):
        raise RuntimeError("an endpoint failed")
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes), len(info.endpoints)


try:
    client = flight.FlightClient(f"grpc://{address}")
    ddl = f"CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{lineitem}/'"
    client.do_get(client.get_flight_info(command(ddl)).endpoints[0].ticket).read_all()
    ways = {"scheduler": read_through_scheduler, "executors": read_from_executors}
    times = {way: [] for way in ways}
    rows = {}
    read_from_executors(client)  # warm the executors' file caches once, for both ways alike
    for run in range(runs):
        for way, read in ways.items():
            started = time.perf_counter()
            n, nbytes, endpoints = read(client)
            elapsed = time.perf_counter() - started
            times[way].append(elapsed)
            rows[way] = (n, nbytes, endpoints)
            print(f"run {run + 1} {way:9} {elapsed:6.2f} s  {n} rows  {endpoints} endpoint(s)", flush=True)
    if rows["scheduler"][0] != rows["executors"][0]:
        sys.exit(f"the two ways returned different row counts: {rows}")
    report = {}
    for way in ways:
        median = statistics.median(times[way])
        n, nbytes, endpoints = rows[way]
        report[way] = {"median_s": round(median, 3), "rows": n, "endpoints": endpoints,
                       "rows_per_s": round(n / median), "mb_per_s": round(nbytes / median / 1e6, 1)}
    report["speedup"] = round(report["scheduler"]["median_s"] / report["executors"]["median_s"], 2)
    print(json.dumps(report))
finally:
    process.terminate()
    process.wait(timeout=30)
