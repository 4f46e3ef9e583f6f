"""The Python ADBC Flight SQL driver against a real `glaux standalone`.

Usage: adbc_flightsql.py GLAUX_BINARY WORK_DIR

Writes a small Hive-partitioned Parquet table with pyarrow, starts `glaux standalone` on a free
port, and checks what a BI tool or notebook does through ADBC: DDL, queries fetched as Arrow
tables and DB-API rows, catalog listing and table schemas, and a clear error for a bad query.
Results are compared with pyarrow's own computation over the same files.
"""
import os
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq

from harness import Checks, Glaux

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
sales_dir = os.path.join(warehouse, "sales")
regions = ["eu", "us", "apac"]
tables = []
for r, region in enumerate(regions):
    ids = list(range(r * 1000, r * 1000 + 1000))
    table = pa.table({
        "id": pa.array(ids, pa.int64()),
        "qty": pa.array([i * 13 % 50 for i in ids], pa.int32()),
        "item": pa.array(["apple", "pear", "fig"][i % 3] for i in ids),
    })
    os.makedirs(os.path.join(sales_dir, f"region={region}"), exist_ok=True)
    pq.write_table(table, os.path.join(sales_dir, f"region={region}", "part-0.parquet"), row_group_size=100)
    tables.append(table.append_column("region", pa.array([region] * len(ids))))
everything = pa.concat_tables(tables)

glaux_binary = Glaux(glaux)
doors, _ = glaux_binary.start(
    ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", warehouse],
    {"flight": "Flight SQL on "})
address = doors["flight"]
check = Checks()

try:
    with flightsql.connect(f"grpc://{address}") as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE EXTERNAL TABLE sales (id BIGINT, qty INT, item VARCHAR, region VARCHAR) "
                f"STORED AS PARQUET PARTITIONED BY (region) LOCATION '{sales_dir}/'"
            )
            cur.execute("SELECT region, count(*) AS n, sum(qty) AS q FROM sales GROUP BY region ORDER BY region")
            got = cur.fetch_arrow_table()
            expected = everything.group_by("region").aggregate([("id", "count"), ("qty", "sum")])
            expected = {row["region"]: (row["id_count"], row["qty_sum"]) for row in expected.to_pylist()}
            actual = {row["region"]: (row["n"], row["q"]) for row in got.to_pylist()}
            check("aggregate query as an Arrow table", actual == expected, f"{actual} != {expected}")
            check("ORDER BY is kept", got.column("region").to_pylist() == sorted(regions))

            cur.execute("SELECT id, item FROM sales WHERE region = 'us' AND id % 100 = 7 ORDER BY id")
            rows = cur.fetchall()
            expected_rows = [(i, ["apple", "pear", "fig"][i % 3]) for i in range(1000, 2000) if i % 100 == 7]
            check("DB-API rows with a partition filter", rows == expected_rows, f"{rows}")

            cur.execute("SELECT 1 AS one")
            check("SELECT 1", cur.fetchall() == [(1,)])

            # Parameters: ADBC prepares the statement and binds the values with DoPut.
            cur.execute("SELECT id, item FROM sales WHERE region = ? AND qty > ? ORDER BY id LIMIT 3",
                        parameters=("us", 45))
            expected_rows = [(i, ["apple", "pear", "fig"][i % 3]) for i in range(1000, 2000) if i * 13 % 50 > 45][:3]
            check("query with bound parameters", cur.fetchall() == expected_rows)
            cur.execute("SELECT count(*) FROM sales WHERE region = $1", parameters=("eu",))
            check("$1 placeholders", cur.fetchall() == [(1000,)])
            cur.adbc_prepare("SELECT count(*) AS n FROM sales WHERE qty < ?")
            counts = []
            for limit in (10, 25):
                cur.execute("SELECT count(*) AS n FROM sales WHERE qty < ?", parameters=(limit,))
                counts.append(cur.fetchall()[0][0])
            expected_counts = [sum(1 for i in range(3000) if i * 13 % 50 < limit) for limit in (10, 25)]
            check("one prepared statement, re-bound", counts == expected_counts, f"{counts} != {expected_counts}")

            try:
                cur.execute("SELECT * FROM no_such_table")
                cur.fetchall()
                check("unknown table is an error", False)
            except Exception as e:  # the driver raises its own ProgrammingError subclasses
                check("unknown table is an error naming it", "no_such_table" in str(e), str(e))

            # MSCK runs when submitted (the driver may never fetch) and reports what it added.
            cur.execute("CREATE DATABASE web")
            cur.execute(
                f"CREATE EXTERNAL TABLE web.sales_hive (id bigint, qty int, item string) "
                f"PARTITIONED BY (region string) STORED AS PARQUET LOCATION '{sales_dir}/'"
            )
            os.makedirs(os.path.join(sales_dir, "region=mars"))
            pq.write_table(tables[0].drop_columns(["region"]), os.path.join(sales_dir, "region=mars", "part-0.parquet"))
            cur.execute("MSCK REPAIR TABLE web.sales_hive")
            repaired = [row[0] for row in cur.fetchall()]
            check("MSCK REPAIR TABLE reports the partitions it added",
                  repaired == ["Repair: Added partition to metastore sales_hive:region=mars"], f"{repaired}")
            cur.execute("SELECT count(*) FROM web.sales_hive")
            check("the repaired partition is read", cur.fetchall() == [(4000,)])

        # CREATE TABLE AS and INSERT INTO through ADBC; pyarrow reads the files Glaux wrote.
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE by_item WITH (write_compression = 'ZSTD', partitioned_by = ARRAY['item']) "
                        "AS SELECT id, qty, item FROM sales WHERE region <> 'eu'")
            check("CTAS reports the rows it wrote", cur.fetchall() == [(2000,)])
            cur.execute("INSERT INTO by_item VALUES (1, 2, 'kiwi')")
            check("INSERT reports the rows it wrote", cur.fetchall() == [(1,)])
            written = pq.read_table(os.path.join(warehouse, "default", "by_item"), partitioning="hive")
            source = everything.filter(pa.compute.not_equal(everything["region"], "eu"))
            expected = sorted((r["id"], r["qty"], r["item"]) for r in source.to_pylist()) + [(1, 2, "kiwi")]
            actual = sorted((r["id"], r["qty"], str(r["item"])) for r in written.to_pylist())
            check("pyarrow reads the rows Glaux wrote", actual == sorted(expected), f"{len(actual)} rows")
            cur.execute("SELECT count(*), sum(qty) FROM by_item")
            check("Glaux reads them too", cur.fetchall() == [(2001, sum(r[1] for r in expected))])

        # Bulk ingest: Arrow batches appended to the partitioned table (a new partition among
        # them), and a new table created from them.
        with conn.cursor() as cur:
            batch = pa.table({"id": [5001, 5002, 5003], "qty": [1, 2, 3], "item": ["plum", "kiwi", "plum"]})
            appended = cur.adbc_ingest("by_item", batch, mode="append")
            check("adbc_ingest append reports its rows", appended == 3, f"{appended}")
            cur.execute("SELECT item, count(*) FROM by_item WHERE item IN ('plum', 'kiwi') GROUP BY item ORDER BY item")
            check("appended rows are read, in a new partition too", cur.fetchall() == [("kiwi", 2), ("plum", 2)])
            created = cur.adbc_ingest("ingested", everything, mode="create")
            check("adbc_ingest create reports its rows", created == everything.num_rows, f"{created}")
            cur.execute("SELECT count(*), sum(qty) FROM ingested")
            check("the created table holds the batches",
                  cur.fetchall() == [(everything.num_rows, pa.compute.sum(everything["qty"]).as_py())])
            written = pq.read_table(os.path.join(warehouse, "default", "ingested"))
            check("pyarrow reads the ingested files", written.num_rows == everything.num_rows, f"{written.num_rows}")
            try:
                cur.adbc_ingest("ingested", everything, mode="replace")
                check("ingest replace is refused for Hive tables", False)
            except Exception as e:
                check("ingest replace is refused for Hive tables", "replace" in str(e), str(e))
            try:
                cur.adbc_ingest("ingested", pa.table({"nope": [1]}), mode="append")
                check("a column the table lacks is refused", False)
            except Exception as e:
                check("a column the table lacks is refused", "nope" in str(e), str(e))

        # The session's database travels in a header any Flight SQL client can set.
        header = {"adbc.flight.sql.rpc.call_header.x-glaux-database": "web"}
        with flightsql.connect(f"grpc://{address}", db_kwargs=header) as web, web.cursor() as cur:
            cur.execute("SELECT count(*) FROM sales_hive WHERE region = 'us'")
            check("x-glaux-database header resolves unqualified names", cur.fetchall() == [(1000,)])

        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        names = [t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or [])
                 for t in (s["db_schema_tables"] or [])]
        check("adbc_get_objects lists the table", "sales" in names, f"{names}")
        schema = conn.adbc_get_table_schema("sales")
        check("adbc_get_table_schema", schema.names == ["id", "qty", "item", "region"], f"{schema}")
finally:
    glaux_binary.stop_all()

check.exit()
