"""psqlODBC (Debian's odbc-postgresql) through unixODBC and pyodbc against Glaux's PostgreSQL port.

Usage: pg_odbc.py PORT USER PASSWORD

Prints what an ODBC application sees, one fact per line, for the system test to check:
  table <schema>.<name> <type>                  SQLTables
  column <table>.<name> <type name> <SQL type> <nullable>   SQLColumns
  meta <name> <python type>                     cursor.description
  row <values separated by |>                   query results
  error <message>                               a statement that failed (the connection stays usable)
"""
import sys

import pyodbc

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
conn = pyodbc.connect(
    f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={port};Database=default;Uid={user};Pwd={password};"
    "ConnSettings=;",
    timeout=10,
)
cur = conn.cursor()


def show(rows):
    for column in cur.description:
        print(f"meta {column[0]} {column[1].__name__}")
    for row in rows:
        print("row " + "|".join("NULL" if v is None else str(v) for v in row))


for t in cur.tables(tableType="TABLE").fetchall():
    print(f"table {t.table_schem}.{t.table_name} {t.table_type}")
for table in ("regions", "typed"):
    for c in cur.columns(table=table).fetchall():
        print(f"column {table}.{c.column_name} {c.type_name} {c.data_type} {c.is_nullable}")

show(cur.execute("SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region").fetchall())
show(cur.execute("SELECT * FROM typed ORDER BY id").fetchall())
show(cur.execute("SELECT count(*) AS n, sum(qty) AS q FROM sales WHERE region = ? AND qty > ?", "eu", 40).fetchall())

# Autocommit off: psqlODBC wraps statements in BEGIN and ends them with ROLLBACK.
conn.autocommit = False
show(cur.execute("SELECT count(*) AS n FROM regions").fetchall())
conn.rollback()
conn.autocommit = True

try:
    cur.execute("SELECT * FROM no_such_table").fetchall()
    print("row unexpected success")
except pyodbc.Error as e:
    print("error " + str(e).replace("\n", " "))
show(cur.execute("SELECT 40 + 2 AS answer").fetchall())
conn.close()
