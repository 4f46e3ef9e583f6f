"""The lake workflows of the ACID-table articles (../shared/reference/acid-tables-articles.txt) on
Delta tables, through the clients their users have: the ADBC Flight SQL driver (notebooks, BI
tools) and psql (the PostgreSQL door JDBC and ODBC use), against a real `glaux standalone`, once
with the tables in its local warehouse and once in S3 (SeaweedFS).

Usage: delta_flows.py GLAUX_BINARY WORK_DIR

Needs GLAUX_TEST_S3_ENDPOINT, GLAUX_TEST_S3_ACCESS_KEY_ID and GLAUX_TEST_S3_SECRET_ACCESS_KEY
(`.ci/run` starts SeaweedFS and sets them). The flows: a partitioned reviews table made by CTAS
from Parquet; a bad UPDATE undone by a MERGE from the version before it (time travel); a GDPR
erasure by MERGE ... DELETE of a list of customers (and Trino's error when a target row matches
two source rows); an SCD type 2 load by MERGE keyed on sha2(concat(...), 512) closing old rows and
inserting new ones; columns added, renamed and dropped; 200 small appends compacted by OPTIMIZE
and their old files removed by VACUUM. Every answer is compared with rows computed here
from the data the test wrote, and the tables Glaux wrote are read back with the `deltalake`
package (rows and history).
"""
import datetime
import hashlib
import os
import secrets
import subprocess
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.fs
import pyarrow.parquet as pq
from deltalake import DeltaTable, QueryBuilder

from harness import Checks, Glaux

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
raw = os.path.join(work, "raw")
s3 = {
    "AWS_ENDPOINT_URL": os.environ["GLAUX_TEST_S3_ENDPOINT"],
    "AWS_ACCESS_KEY_ID": os.environ["GLAUX_TEST_S3_ACCESS_KEY_ID"],
    "AWS_SECRET_ACCESS_KEY": os.environ["GLAUX_TEST_S3_SECRET_ACCESS_KEY"],
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}

# The source data, written with pyarrow: 600 reviews by 60 customers in three marketplaces, and
# a customer master in two loads (v2: two customers moved, two new ones).
MARKETS = ["US", "UK", "DE"]
reviews = pa.table({
    "review_id": [f"R{i:04d}" for i in range(600)],
    "customer_id": pa.array([1 + i % 60 for i in range(600)], pa.int64()),
    "product": [["kettle", "lamp", "desk", "chair"][i % 4] for i in range(600)],
    "star_rating": pa.array([1 + (i * 7) % 5 for i in range(600)], pa.int64()),
    "marketplace": [MARKETS[i % 3] for i in range(600)],
    "review_date": pa.array([datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 90) for i in range(600)]),
})
CITIES = ["Lyon", "Oslo", "Kyiv", "Lima", "Pune"]
v1 = {c: (f"name{c}", CITIES[c % 5]) for c in range(1, 21)}
v2 = dict(v1)
v2[3] = ("name3", "Quito")
v2[8] = ("name8", "Accra")
v2[21] = ("name21", "Hanoi")
v2[22] = ("name22", "Perth")
os.makedirs(os.path.join(raw, "reviews"), exist_ok=True)
pq.write_table(reviews, os.path.join(raw, "reviews", "part-0.parquet"))
for name, customers in (("customers_v1", v1), ("customers_v2", v2)):
    os.makedirs(os.path.join(raw, name), exist_ok=True)
    ids = sorted(customers)
    pq.write_table(pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "name": [customers[c][0] for c in ids],
        "city": [customers[c][1] for c in ids],
    }), os.path.join(raw, name, "part-0.parquet"))

glaux_binary = Glaux(glaux)
doors, _ = glaux_binary.start(
    ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--postgres-addr", "127.0.0.1:0",
     "--warehouse", warehouse, "--warehouse", raw, "--s3-endpoint", s3["AWS_ENDPOINT_URL"], "--s3-region",
     "us-east-1"],
    {"postgres": "PostgreSQL on ", "flight": "Flight SQL on "},
    env={"AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
         "AWS_ALLOW_HTTP": "true"})
flight, postgres = doors["flight"], doors["postgres"]
check = Checks()


def psql(sql):
    """Runs `sql` through psql: (succeeded, rows as lists of text fields, stderr)."""
    host, port = postgres.rsplit(":", 1)
    out = subprocess.run(
        ["psql", "-h", host, "-p", port, "-U", "analyst", "-d", "default", "-X", "-qAt", "-F", "\t",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "10"}, timeout=300,
    )
    return out.returncode == 0, [line.split("\t") for line in out.stdout.splitlines()], out.stderr


def adbc(cur, sql):
    """Runs `sql` through ADBC and fetches its rows (writes run as their result is fetched)."""
    cur.execute(sql)
    return cur.fetchall()


def history(uri, options):
    return [entry["operation"] for entry in sorted(DeltaTable(uri, storage_options=options).history(),
                                                    key=lambda e: e["version"])]


def stars_by_market(table):
    out = {}
    for row in table.to_pylist():
        n, s = out.get(row["marketplace"], (0, 0))
        out[row["marketplace"]] = (n + 1, s + row["star_rating"])
    return out


def flow(cur, tag, root, options):
    """Every flow on tables under `root` (a local path or s3:// URI); names end in `tag`."""
    t = f"reviews_{tag}"
    uri = f"{root}/{t}"
    # 1. CTAS: a partitioned Delta table from Parquet, read back as the source computes.
    written = adbc(cur, f"CREATE TABLE {t} WITH (table_type = 'DELTA', location = '{uri}/', "
                        f"partitioning = ARRAY['marketplace']) AS SELECT * FROM reviews_raw")
    check(f"{tag}: CTAS wrote every review", written == [(600,)], f"{written}")
    got = {m: (n, s) for m, n, s in adbc(cur, f"SELECT marketplace, count(*), sum(star_rating) FROM {t} "
                                              f"GROUP BY marketplace")}
    check(f"{tag}: CTAS answers as the source", got == stars_by_market(reviews), f"{got}")
    partitions = [r[0] for r in adbc(cur, f"SHOW PARTITIONS {t}")]
    check(f"{tag}: partitioned by marketplace", partitions == [f"marketplace={m}" for m in sorted(MARKETS)],
          f"{partitions}")

    # 2. A bad UPDATE through psql, found by time travel and undone by MERGE from the version
    #    before it.
    uk = sum(1 for m in reviews.column("marketplace").to_pylist() if m == "UK")
    ok, rows, err = psql(f"UPDATE {t} SET star_rating = 1 WHERE marketplace = 'UK'")
    check(f"{tag}: bad UPDATE through psql", ok and rows == [[str(uk)]], f"{rows} {err}")
    ok, rows, err = psql(f"SELECT sum(star_rating) FROM {t} FOR VERSION AS OF 0 WHERE marketplace = 'UK'")
    original_uk = stars_by_market(reviews)["UK"][1]
    check(f"{tag}: version 0 still holds the good ratings", ok and rows == [[str(original_uk)]], f"{rows} {err}")
    changed = sum(1 for m, s in zip(reviews.column("marketplace").to_pylist(),
                                    reviews.column("star_rating").to_pylist()) if m == "UK" and s != 1)
    ok, rows, err = psql(f"MERGE INTO {t} t USING (SELECT review_id, star_rating FROM {t} FOR VERSION AS OF 0) s "
                         f"ON t.review_id = s.review_id WHEN MATCHED AND t.star_rating <> s.star_rating "
                         f"THEN UPDATE SET star_rating = s.star_rating")
    check(f"{tag}: MERGE from version 0 restores the changed rows", ok and rows == [[str(changed)]],
          f"{rows} {err}")
    got = {m: (n, s) for m, n, s in adbc(cur, f"SELECT marketplace, count(*), sum(star_rating) FROM {t} "
                                              f"GROUP BY marketplace")}
    check(f"{tag}: ratings are back", got == stars_by_market(reviews), f"{got}")

    # 3. GDPR erasure: a list of customers' reviews deleted by MERGE.
    erased = [7, 19, 42]
    adbc(cur, f"CREATE TABLE gdpr_{tag} AS SELECT * FROM (VALUES {', '.join(f'({c})' for c in erased)}) "
              f"AS r(customer_id)")
    theirs = sum(1 for c in reviews.column("customer_id").to_pylist() if c in erased)
    deleted = adbc(cur, f"MERGE INTO {t} trg USING (SELECT customer_id FROM gdpr_{tag}) src "
                        f"ON trg.customer_id = src.customer_id WHEN MATCHED THEN DELETE")
    check(f"{tag}: GDPR MERGE deleted their reviews", deleted == [(theirs,)], f"{deleted} != {theirs}")
    left = adbc(cur, f"SELECT count(*) FROM {t} WHERE customer_id IN (7, 19, 42)")
    check(f"{tag}: none of their reviews is left", left == [(0,)], f"{left}")
    # The article's shape with a customer who wrote ten reviews: each target row matches ten
    # source rows, which Trino refuses; nothing changes.
    ok, rows, err = psql(f"MERGE INTO {t} trg USING (SELECT customer_id FROM {t} WHERE customer_id = 5) src "
                         f"ON trg.customer_id = src.customer_id WHEN MATCHED THEN DELETE")
    check(f"{tag}: a target row matched twice is Trino's error", not ok and "more than one source row" in err,
          f"{rows} {err}")
    ok, rows, err = psql(f"MERGE INTO {t} trg USING (SELECT DISTINCT customer_id FROM {t} WHERE customer_id = 5) "
                         f"src ON trg.customer_id = src.customer_id WHEN MATCHED THEN UPDATE SET product = 'redacted'")
    fives = sum(1 for c in reviews.column("customer_id").to_pylist() if c == 5)
    check(f"{tag}: the article's update by customer id", ok and rows == [[str(fives)]], f"{rows} {err}")

    # 4. Schema evolution: a column added, NULL in old rows, filled by UPDATE, read by name.
    adbc(cur, f"ALTER TABLE {t} ADD COLUMNS (helpful_votes int)")
    filled = adbc(cur, f"UPDATE {t} SET helpful_votes = 3 WHERE customer_id = 1")
    ones = sum(1 for c in reviews.column("customer_id").to_pylist() if c == 1)
    check(f"{tag}: new column filled", filled == [(ones,)], f"{filled}")
    got = adbc(cur, f"SELECT count(helpful_votes), sum(helpful_votes), count(*) FROM {t}")
    check(f"{tag}: new column reads NULL in old rows", got == [(ones, 3 * ones, 600 - theirs)], f"{got}")

    # 5. Another reader (delta-rs) reads what Glaux wrote, with the same history.
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    expected_ids = sorted(r for r, c in zip(reviews.column("review_id").to_pylist(),
                                            reviews.column("customer_id").to_pylist()) if c not in erased)
    check(f"{tag}: delta-rs reads the reviews left", sorted(table.column("review_id").to_pylist()) == expected_ids)
    products = {r["review_id"]: r["product"] for r in table.to_pylist()}
    check(f"{tag}: delta-rs reads the redaction",
          all((products[r] == "redacted") == (c == 5) for r, c in zip(reviews.column("review_id").to_pylist(),
                                                                       reviews.column("customer_id").to_pylist())
              if c not in erased))
    check(f"{tag}: delta-rs reads the restored ratings", stars_by_market(table.drop_columns(["helpful_votes"])) == {
        m: (n, s) for m, (n, s) in stars_by_market(reviews.filter(
            pa.compute.invert(pa.compute.is_in(reviews.column("customer_id"), pa.array(erased))))).items()})
    ops = history(uri, options)
    check(f"{tag}: history as delta-rs reads it",
          ops == ["CREATE TABLE", "UPDATE", "MERGE", "MERGE", "MERGE", "ADD COLUMN", "UPDATE"], f"{ops}")

    # 6. Renaming and dropping columns (Delta's column mapping, turned on by the first): old
    #    files keep their names, readers see the new ones; writes go on; delta-rs agrees.
    ok, rows, err = psql(f"ALTER TABLE {t} CHANGE COLUMN product item string")
    check(f"{tag}: CHANGE COLUMN renames", ok, err)
    ok, rows, err = psql(f"ALTER TABLE {t} DROP COLUMN review_date")
    check(f"{tag}: DROP COLUMN drops", ok, err)
    names = [r[0] for r in adbc(cur, f"DESCRIBE {t}")]
    check(f"{tag}: columns after the changes",
          names == ["review_id", "customer_id", "item", "star_rating", "helpful_votes", "marketplace"], f"{names}")
    lamps = sum(1 for p, c in zip(reviews.column("product").to_pylist(), reviews.column("customer_id").to_pylist())
                if p == "lamp" and c not in erased + [5])
    moved = adbc(cur, f"UPDATE {t} SET item = 'lamp2' WHERE item = 'lamp'")
    check(f"{tag}: UPDATE through a renamed column", moved == [(lamps,)], f"{moved} != {lamps}")
    expected_items = {}
    for r, p, c in zip(reviews.column("review_id").to_pylist(), reviews.column("product").to_pylist(),
                       reviews.column("customer_id").to_pylist()):
        if c not in erased:
            expected_items[r] = "redacted" if c == 5 else ("lamp2" if p == "lamp" else p)
    got = dict(adbc(cur, f"SELECT review_id, item FROM {t}"))
    check(f"{tag}: renamed column reads old and new files", got == expected_items)
    # delta-rs's own (DataFusion) reader honours column mapping; its pyarrow path does not.
    mapped = pa.table(QueryBuilder().register("t", DeltaTable(uri, storage_options=options))
                      .execute("SELECT review_id, item FROM t").read_all())
    check(f"{tag}: delta-rs reads the renamed column", dict(zip(mapped.column("review_id").to_pylist(),
                                                                mapped.column("item").to_pylist())) == expected_items)
    check(f"{tag}: delta-rs sees the column dropped", "review_date" not in DeltaTable(
        uri, storage_options=options).schema().to_arrow().names)
    # A column added to the mapped table gets a physical name of its own.
    adbc(cur, f"ALTER TABLE {t} ADD COLUMN review_date string")
    got = adbc(cur, f"SELECT count(review_date), count(*) FROM {t}")
    check(f"{tag}: a re-added column does not read the dropped one's data", got == [(0, len(expected_items))],
          f"{got}")
    ops = history(uri, options)[7:]
    check(f"{tag}: history of the column changes",
          ops == ["UPDATE FIELD METADATA", "UPDATE FIELD METADATA", "UPDATE", "ADD COLUMN"], f"{ops}")

    # 7. SCD type 2: the customer dimension, loaded from v1, then v2 merged in on a row hash.
    d = f"dim_customer_{tag}"
    duri = f"{root}/{d}"
    hashed = "sha2(concat(name, '|', city), 512)"
    ok, rows, err = psql(f"CREATE TABLE {d} WITH (table_type = 'DELTA', location = '{duri}/') AS "
                         f"SELECT customer_id, name, city, {hashed} AS row_hash, DATE '2024-01-01' AS rec_eff_dt, "
                         f"DATE '9999-12-31' AS rec_exp_dt FROM customers_v1")
    check(f"{tag}: SCD2 initial load", ok and rows == [["20"]], f"{rows} {err}")
    merge = (
        f"MERGE INTO {d} t USING ("
        f" SELECT s.customer_id AS merge_key, s.customer_id, s.name, s.city, sha2(concat(s.name, '|', s.city), 512)"
        f"   AS row_hash FROM customers_v2 s"
        f" UNION ALL"
        f" SELECT NULL AS merge_key, s.customer_id, s.name, s.city, sha2(concat(s.name, '|', s.city), 512)"
        f"   FROM customers_v2 s JOIN {d} c ON s.customer_id = c.customer_id"
        f"   WHERE c.rec_exp_dt = DATE '9999-12-31' AND c.row_hash <> sha2(concat(s.name, '|', s.city), 512)"
        f") src ON t.customer_id = src.merge_key AND t.rec_exp_dt = DATE '9999-12-31'"
        f" WHEN MATCHED AND t.row_hash <> src.row_hash THEN UPDATE SET rec_exp_dt = DATE '2024-06-30'"
        f" WHEN NOT MATCHED THEN INSERT (customer_id, name, city, row_hash, rec_eff_dt, rec_exp_dt)"
        f"   VALUES (src.customer_id, src.name, src.city, src.row_hash, DATE '2024-07-01', DATE '9999-12-31')"
    )
    ok, rows, err = psql(merge)
    # Two rows closed, two new versions of them and two new customers inserted.
    check(f"{tag}: SCD2 MERGE closed and inserted", ok and rows == [["6"]], f"{rows} {err}")
    expected = []
    for c in sorted(v2):
        if c in v1 and v1[c] != v2[c]:
            expected.append([str(c), v1[c][1], "2024-01-01", "2024-06-30"])
            expected.append([str(c), v2[c][1], "2024-07-01", "9999-12-31"])
        elif c in v1:
            expected.append([str(c), v1[c][1], "2024-01-01", "9999-12-31"])
        else:
            expected.append([str(c), v2[c][1], "2024-07-01", "9999-12-31"])
    ok, rows, err = psql(f"SELECT customer_id, city, rec_eff_dt, rec_exp_dt FROM {d} ORDER BY customer_id, rec_eff_dt")
    check(f"{tag}: SCD2 dimension as expected", ok and rows == expected, f"{rows} {err}")
    ok, rows, err = psql(f"SELECT customer_id, row_hash FROM {d} WHERE rec_exp_dt = DATE '9999-12-31' "
                         f"ORDER BY customer_id")
    hashes = [[str(c), hashlib.sha512(f"{v2[c][0]}|{v2[c][1]}".encode()).hexdigest()] for c in sorted(v2)]
    check(f"{tag}: current rows carry sha2-512 of their attributes", ok and rows == hashes, f"{rows[:2]} {err}")
    ok, rows, err = psql(merge)
    check(f"{tag}: the same load again changes nothing", ok and rows == [["0"]], f"{rows} {err}")
    dim = DeltaTable(duri, storage_options=options).to_pyarrow_table().sort_by([("customer_id", "ascending"),
                                                                               ("rec_eff_dt", "ascending")])
    read = [[str(r["customer_id"]), r["city"], str(r["rec_eff_dt"]), str(r["rec_exp_dt"])] for r in dim.to_pylist()]
    check(f"{tag}: delta-rs reads the dimension", read == expected, f"{read}")
    check(f"{tag}: dimension history", history(duri, options) == ["CREATE TABLE", "MERGE"], history(duri, options))



def storage(root, options):
    if options is None:
        return pyarrow.fs.LocalFileSystem()
    return pyarrow.fs.S3FileSystem(access_key=options["AWS_ACCESS_KEY_ID"], secret_key=options["AWS_SECRET_ACCESS_KEY"],
                                   endpoint_override=options["AWS_ENDPOINT_URL"], region="us-east-1")


def strip_scheme(uri):
    return uri.removeprefix("s3://")


def compaction(cur, tag, root, options):
    """200 small appends (a stream's files) compacted by OPTIMIZE, the old files removed by VACUUM."""
    c = f"clicks_{tag}"
    uri = f"{root}/{c}"
    ok, _, err = psql(f"CREATE TABLE {c} (id bigint, qty bigint, day string) PARTITIONED BY (day) "
                      f"LOCATION '{uri}/' TBLPROPERTIES ('table_type' = 'DELTA')")
    check(f"{tag}: clicks table created", ok, err)
    for i in range(200):
        adbc(cur, f"INSERT INTO {c} VALUES ({i}, {i * 7 % 13}, 'd{i % 2}'), ({i + 1000}, 1, 'd{i % 2}')")
    expected = [(f"d{d}", 200, sum(i * 7 % 13 + 1 for i in range(d, 200, 2))) for d in (0, 1)]
    by_day = f"SELECT day, count(*), sum(qty) FROM {c} GROUP BY day ORDER BY day"
    check(f"{tag}: 200 small appends", len(DeltaTable(uri, storage_options=options).file_uris()) == 200)
    # Versions 99 and 199 are checkpoints (every 100 versions), so readers replay few commits.
    logs = [f.base_name for f in storage(root, options).get_file_info(
        pyarrow.fs.FileSelector(f"{strip_scheme(uri)}/_delta_log"))]
    checkpoints = sorted(f for f in logs if f.endswith(".checkpoint.parquet"))
    check(f"{tag}: checkpoints every 100 versions", checkpoints == [f"{v:020d}.checkpoint.parquet" for v in (99, 199)],
          f"{checkpoints}")
    ok, rows, err = psql(f"OPTIMIZE {c} REWRITE DATA USING BIN_PACK")
    check(f"{tag}: OPTIMIZE rewrote the 200 files' rows", ok and rows == [["400"]], f"{rows} {err}")
    table = DeltaTable(uri, storage_options=options)
    check(f"{tag}: one file per partition left", len(table.file_uris()) == 2, f"{table.file_uris()}")
    check(f"{tag}: compacted rows as written", adbc(cur, by_day) == expected, f"{adbc(cur, by_day)}")
    read = table.to_pyarrow_table().group_by("day").aggregate([("qty", "count"), ("qty", "sum")])
    read = sorted(zip(read.column("day").to_pylist(), read.column("qty_count").to_pylist(),
                      read.column("qty_sum").to_pylist()))
    check(f"{tag}: delta-rs reads the compacted rows", read == expected, f"{read}")
    # The data files on storage, listed with pyarrow's filesystems.
    def data_files():
        listed = storage(root, options).get_file_info(pyarrow.fs.FileSelector(strip_scheme(uri), recursive=True))
        return sum(1 for f in listed if f.base_name.endswith(".parquet") and "_delta_log" not in f.path)
    check(f"{tag}: the 200 old files are still on storage", data_files() == 202, f"{data_files()}")
    ok, rows, err = psql(f"VACUUM {c}")
    check(f"{tag}: VACUUM within Delta's 7-day safety deletes nothing", ok and rows == [["0"]], f"{rows} {err}")
    adbc(cur, f"ALTER TABLE {c} SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds' = '0', "
              f"'delta.deletedFileRetentionDuration' = 'interval 0 seconds')")
    got = adbc(cur, f"VACUUM {c}")
    check(f"{tag}: VACUUM deleted the 200 old files", got == [(200,)], f"{got}")
    check(f"{tag}: only the 2 compacted files are left", data_files() == 2, f"{data_files()}")
    check(f"{tag}: rows after VACUUM", adbc(cur, by_day) == expected, f"{adbc(cur, by_day)}")
    ops = history(uri, options)
    check(f"{tag}: clicks history", ops[0] == "CREATE TABLE" and ops[1:201] == ["WRITE"] * 200 and ops[201:] == [
        "OPTIMIZE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END"], f"{ops[201:]}")


try:
    with flightsql.connect(f"grpc://{flight}") as conn:
        with conn.cursor() as cur:
            for name in ("reviews", "customers_v1", "customers_v2"):
                adbc(cur, f"CREATE EXTERNAL TABLE {name}{'_raw' if name == 'reviews' else ''} "
                          f"STORED AS PARQUET LOCATION '{os.path.join(raw, name)}/'")
            for tag, root, options in (("local", os.path.join(warehouse, "lake"), None),
                                       ("s3", f"s3://glaux-test/flows-{secrets.token_hex(6)}", s3)):
                flow(cur, tag, root, options)
                compaction(cur, tag, root, options)
finally:
    glaux_binary.stop_all()

# delta-rs's runtime can abort at interpreter exit: leave without tearing it down.
check.exit(hard=True)
