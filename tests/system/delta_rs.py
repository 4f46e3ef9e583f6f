"""The `deltalake` package (delta-rs, PyPI) writing and reading Delta tables, independently of
Glaux: what the Glaux tests compare with.

    python3 delta_rs.py write <table uri> [<storage options as JSON>]
    python3 delta_rs.py read <table uri> [<storage options as JSON>]
    python3 delta_rs.py small <table uri>
    python3 delta_rs.py latest <table uri>
    python3 delta_rs.py dv <table uri>
    python3 delta_rs.py append <table uri>

`write` creates the table: version 0 (partitioned by day, one row in a null partition), 1
appends, 2 deletes id 2, 3 replaces the 2024-01-01 partition, 4 updates qty where id = 4.
`small` makes 200 one-row files over two partitions. `dv` writes a table whose version 1 has a deletion
vector (see there) and prints only the ids delta-rs reads. `append` appends id 100 to an existing
table. `small`, `latest` and `append` print only the latest version's rows; all print what the package reads back as JSON: each version's rows and the history. Rows are
printed as the Glaux tests render `SELECT id, name, qty, day ... ORDER BY id`:
`id | name | qty | day`, NULL for a null.
"""

import json
import os
import sys

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

mode, uri = sys.argv[1], sys.argv[2]
options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("qty", pa.int64()), ("day", pa.string())])


def rows(ids, names, qtys, days):
    return pa.table({"id": ids, "name": names, "qty": qtys, "day": days}, schema=schema)


if mode == "small":
    # 200 one-row appends over two partitions: 200 small files (only the latest version printed).
    for i in range(200):
        day = "2024-05-01" if i % 2 else "2024-05-02"
        write_deltalake(uri, rows([i], [f"n{i}"], [i], [day]), mode="append", partition_by=["day"],
                        storage_options=options)
if mode == "write":
    write_deltalake(
        uri,
        rows([1, 2, 3, 4, 5, 6], ["ann", "bob", None, "dan", "eve", "fay"], [10, 20, 30, 40, 50, 60],
             ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03", None]),
        partition_by=["day"],
        storage_options=options,
    )
    write_deltalake(uri, rows([7, 8], ["gus", "hal"], [70, 80], ["2024-01-03", "2024-01-04"]), mode="append",
                    storage_options=options)
    DeltaTable(uri, storage_options=options).delete("id = 2")
    write_deltalake(uri, rows([9], ["ivy"], [90], ["2024-01-01"]), mode="overwrite",
                    predicate="day = '2024-01-01'", storage_options=options)
    DeltaTable(uri, storage_options=options).update(predicate="id = 4", updates={"qty": "41"})

if mode == "append":
    write_deltalake(uri, rows([100], ["ext"], [1], ["2024-01-01"]), mode="append", storage_options=options)


if mode == "dv":
    # delta-rs writes no deletion vectors: version 1 is written here as Spark writes one, an
    # inline vector (Delta protocol: z85 of magic + portable RoaringTreemap) deleting rows 2 and
    # 5 of the one file of version 0 (ids 0..9). Prints the ids delta-rs's own reader reads.
    import struct
    import time

    write_deltalake(uri, rows(list(range(10)), [f"n{i}" for i in range(10)], list(range(0, 100, 10)),
                              ["2024-06-01"] * 10), storage_options=options)
    log = os.path.join(uri, "_delta_log")
    actions = [json.loads(line) for line in open(os.path.join(log, f"{0:020}.json"))]
    add = next(a["add"] for a in actions if "add" in a)
    metadata = next(a["metaData"] for a in actions if "metaData" in a)
    deleted = [2, 5]
    bitmap = struct.pack("<IIHHI", 12346, 1, 0, len(deleted) - 1, 16) + b"".join(struct.pack("<H", d) for d in deleted)
    data = struct.pack("<I", 1681511377) + struct.pack("<Q", 1) + struct.pack("<I", 0) + bitmap
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
    z85 = ""
    for i in range(0, len(data), 4):
        value = struct.unpack(">I", data[i:i + 4])[0]
        z85 += "".join(alphabet[value // 85 ** p % 85] for p in range(4, -1, -1))
    now = int(time.time() * 1000)
    metadata["configuration"] = {**metadata.get("configuration", {}), "delta.enableDeletionVectors": "true"}
    commit = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "operationParameters": {"predicate": "id IN (2, 5)"}}},
        {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["deletionVectors"],
                      "writerFeatures": ["deletionVectors"]}},
        {"metaData": metadata},
        {"remove": {"path": add["path"], "deletionTimestamp": now, "dataChange": True, "size": add["size"],
                    "partitionValues": add["partitionValues"]}},
        {"add": {**add, "modificationTime": now, "deletionVector": {
            "storageType": "i", "pathOrInlineDv": z85, "sizeInBytes": len(data), "cardinality": len(deleted)}}},
    ]
    with open(os.path.join(log, f"{1:020}.json"), "w") as out:
        out.write("\n".join(json.dumps(a) for a in commit) + "\n")
    from deltalake import QueryBuilder
    read = QueryBuilder().register("t", DeltaTable(uri)).execute("SELECT id FROM t ORDER BY id").read_all()
    print(json.dumps({"ids": pa.table(read).column("id").to_pylist()}), flush=True)
    os._exit(0)


def render(value):
    return "NULL" if value is None else str(value)


table = DeltaTable(uri, storage_options=options)
versions = {}
first = table.version() if mode in ("small", "latest", "append") else 0
for version in range(first, table.version() + 1):
    at = DeltaTable(uri, version=version, storage_options=options).to_pyarrow_table().sort_by("id")
    versions[version] = [" | ".join(render(row[c]) for c in ["id", "name", "qty", "day"]) for row in at.to_pylist()]
history = sorted([entry["version"], entry["operation"]] for entry in table.history())
print(json.dumps({"versions": versions, "history": history}), flush=True)
# delta-rs's runtime can abort at interpreter exit ("terminate called without an active
# exception"): leave without tearing it down.
os._exit(0)
