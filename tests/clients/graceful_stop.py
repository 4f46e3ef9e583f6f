"""Graceful stops of real `glaux scheduler` and `glaux executor` processes (SIGTERM, as Kubernetes,
systemd and `docker stop` send it) while queries run, read through ADBC (Flight SQL), the
processes' own `/metrics` and `/ready`, their logs, and the query history.

- An executor told to stop takes no new query (a query started after the signal installs no task
  on it), lets the running query finish (its rows are the expected ones), then leaves the cluster
  (the scheduler counts it gone, not lost) and exits 0.
- An executor whose drain timeout passes leaves anyway; the query that needed it is planned again
  on the others (no row had reached the client) and still returns the expected rows.
- A scheduler told to stop refuses new statements (on new and open connections) with a clear
  error, is no longer ready, lets the running statement finish, then exits 0.
- A scheduler whose drain timeout passes cancels the statement still running (its client gets the
  reason) and the restarted scheduler's history records it CANCELLED.

The slow query is a join of N x N rows whose sum has a closed form (the expected answer).

Usage: graceful_stop.py GLAUX_BINARY WORK_DIR
"""
import os
import signal
import socket
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.parquet as pq

from harness import Checks, Glaux, get, scrape, value, wait_until

glaux, work = sys.argv[1], sys.argv[2]
warehouse = os.path.join(work, "warehouse")
catalog = os.path.join(work, "catalog.sqlite")
N, FILES = 10_000, 4
os.makedirs(os.path.join(warehouse, "events"), exist_ok=True)
for f in range(FILES):
    ids = list(range(f * N // FILES, (f + 1) * N // FILES))
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64())}), os.path.join(warehouse, "events", f"part-{f}.parquet"))

SLOW = "SELECT sum(a.id + b.id) AS s FROM events a JOIN events b ON a.id <> b.id"
# Each id pairs with the N - 1 others, on either side: 2 * (N - 1) * (sum of ids).
SLOW_SUM = 2 * (N - 1) * (N * (N - 1) // 2)
QUICK = "SELECT count(*) AS n FROM events WHERE id % 3 = 0"
QUICK_COUNT = len(range(0, N, 3))

check = Checks()
glaux_binary = Glaux(glaux)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCHEDULER = f"127.0.0.1:{free_port()}"


def scheduler(name, *flags):
    """A scheduler on the fixed address (executors find it again after a restart)."""
    # Every query spreads (`--small-query-bytes 0`): the test stops executors under running
    # queries, which must have tasks on both.
    doors, process = glaux_binary.start(
        ["scheduler", "--flight-sql-addr", SCHEDULER, "--http-addr", "127.0.0.1:0", "--warehouse", warehouse,
         "--catalog", catalog, "--small-query-bytes", "0", *flags],
        {"http": "Athena API on http://"}, log=os.path.join(work, f"{name}.log"))
    return doors["http"], process


def executor(name, *flags):
    found, process = glaux_binary.start(
        ["executor", "--scheduler", SCHEDULER, "--warehouse", warehouse, "--task-slots", "1", "--memory-mib", "512",
         "--http-addr", "127.0.0.1:0", *flags],
        {"http": "Metrics and probes: http://"}, log=os.path.join(work, f"{name}.log"))
    return found["http"].removesuffix("/metrics"), process


def connect():
    return flightsql.connect(f"grpc://{SCHEDULER}", autocommit=True)


def rows(sql):
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


class Running(threading.Thread):
    """A statement running on its own connection; `result` is its rows or the error's text."""

    def __init__(self, sql):
        super().__init__(daemon=True)
        self.sql, self.result, self.ended, self.closed = sql, None, None, None
        self.start()

    def run(self):
        conn = cursor = None
        try:
            conn = connect()
            cursor = conn.cursor()
            cursor.execute(self.sql)
            self.result = cursor.fetchall()
        except Exception as error:  # the error a client sees is what is checked
            self.result = str(error)
        self.ended = time.time()
        # Closing sends ClosePreparedStatement; a scheduler stopping once this statement, its last,
        # ended still answers it (`closed`: None, or the close's error).
        self.closed = None
        for closing in (cursor, conn):
            try:
                if closing is not None:
                    closing.close()
            except Exception as error:
                self.closed = self.closed or str(error)


def metric(http, name):
    return value(scrape(http)[0], name)


def log_of(name):
    with open(os.path.join(work, f"{name}.log")) as f:
        return f.read()


def exits(process, timeout):
    try:
        return process.wait(timeout=timeout)
    except Exception:
        return None


def executors_alive(http, n):
    return wait_until(lambda: metric(http, "glaux_executors") == n, timeout=30)


try:
    http, sched = scheduler("scheduler-1")
    a_http, a = executor("executor-a")
    b_http, b = executor("executor-b")
    check("two executors join", executors_alive(http, 2))
    rows(f"CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{os.path.join(warehouse, 'events')}/'")

    # 1. SIGTERM on an executor while a query runs on it.
    slow = Running(SLOW)
    check("the slow query runs on both executors",
          wait_until(lambda: metric(a_http, "glaux_executor_tasks_installed") > 0
                     and metric(b_http, "glaux_executor_tasks_installed") > 0))
    installed_on_a = metric(a_http, "glaux_executor_tasks_installed_total")
    a.send_signal(signal.SIGTERM)
    check("the stopping executor is not ready, saying why",
          wait_until(lambda: get(f"http://{a_http}/ready") == (503, "not ready: draining\n")))
    check("the scheduler counts it draining", wait_until(lambda: metric(http, "glaux_executors_draining") == 1))
    quick = rows(QUICK)
    check("a query started after the signal runs", quick == [(QUICK_COUNT,)], quick)
    check("... with no task on the stopping executor",
          metric(a_http, "glaux_executor_tasks_installed_total") == installed_on_a)
    check("the slow query was still running then (the test's premise)", slow.is_alive())
    check("the stopping executor serves on while its query runs", a.poll() is None)
    slow.join(120)
    check("the query running on the stopping executor finishes with the expected rows",
          slow.result == [(SLOW_SUM,)], slow.result)
    check("the executor then exits 0", exits(a, 20) == 0)
    check("... having left after its tasks ended", "left the cluster after its tasks ended" in log_of("executor-a"))
    check("the scheduler counts one executor, none lost",
          executors_alive(http, 1) and metric(http, "glaux_executors_lost_total") == 0)
    check("the scheduler logged it leaving", "executor left the cluster" in log_of("scheduler-1"))

    # 2. An executor whose drain timeout passes leaves anyway; its query is planned again.
    c_http, c = executor("executor-c", "--drain-timeout", "1")
    check("a third executor joins", executors_alive(http, 2))
    slow = Running(SLOW)
    check("the slow query runs on the new executor",
          wait_until(lambda: metric(c_http, "glaux_executor_tasks_installed") > 0))
    signalled = time.time()
    c.send_signal(signal.SIGTERM)
    code = exits(c, 30)
    check("an executor past its drain timeout exits 0 soon after it", code == 0 and time.time() - signalled < 15,
          f"code {code} after {time.time() - signalled:.1f} s")
    check("... saying it left at the timeout", "left the cluster at the drain timeout" in log_of("executor-c"))
    slow.join(180)
    check("the query it cut off is planned again on the others and returns the expected rows",
          slow.result == [(SLOW_SUM,)], slow.result)

    # 3. SIGTERM on the scheduler while a statement runs.
    idle = connect()
    slow = Running(SLOW)
    check("the slow query runs", wait_until(lambda: metric(b_http, "glaux_executor_tasks_installed") > 0))
    sched.send_signal(signal.SIGTERM)
    check("the stopping scheduler is not ready, saying why",
          wait_until(lambda: get(f"http://{http}/ready") == (503, "not ready: the scheduler is stopping\n")))
    try:
        refused = str(rows(QUICK))
    except Exception as error:
        refused = str(error)
    check("a new connection's statement is refused: the scheduler is stopping", "scheduler is stopping" in refused,
          refused)
    try:
        with idle.cursor() as cursor:
            cursor.execute(QUICK)
            refused = str(cursor.fetchall())
    except Exception as error:
        refused = str(error)
    check("an open connection's new statement is refused too", "scheduler is stopping" in refused, refused)
    check("the slow query was still running then (the test's premise)", slow.is_alive())
    slow.join(120)
    check("the running statement finishes with the expected rows", slow.result == [(SLOW_SUM,)], slow.result)
    check("... and its client's close after the last batch is answered", slow.closed is None, slow.closed)
    code = exits(sched, 20)
    check("the scheduler then exits 0", code == 0, code)
    check("... after the running statements", "stopped after the running statements" in log_of("scheduler-1"))

    # 4. A scheduler whose drain timeout passes cancels what still runs.
    http, sched = scheduler("scheduler-2", "--drain-timeout", "1")
    check("the executor joins the restarted scheduler", executors_alive(http, 1))
    slow = Running(SLOW)
    check("the slow query runs", wait_until(lambda: metric(b_http, "glaux_executor_tasks_installed") > 0))
    signalled = time.time()
    sched.send_signal(signal.SIGTERM)
    slow.join(30)
    check("the client of the statement still running at the timeout is told why",
          isinstance(slow.result, str) and "scheduler stopped before the statement finished" in slow.result,
          slow.result)
    code = exits(sched, 30)
    check("the scheduler exits 0 soon after its drain timeout", code == 0 and time.time() - signalled < 15,
          f"code {code} after {time.time() - signalled:.1f} s")
    check("the executor drops the cancelled query's tasks",
          wait_until(lambda: metric(b_http, "glaux_executor_tasks_installed") == 0, timeout=30))

    http, sched = scheduler("scheduler-3")
    check("the executor joins the scheduler restarted again", executors_alive(http, 1))
    history = rows("SELECT state, error FROM system.runtime.queries "
                   f"WHERE query = '{SLOW}' ORDER BY created")
    check("the history has the four slow statements: three succeeded, the last cancelled with the reason",
          [s for s, _ in history] == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "CANCELLED"]
          and "scheduler stopped before the statement finished" in (history[-1][1] or ""), history)

    # Idle processes stop at once on SIGTERM.
    for name, process in (("scheduler", sched), ("executor", b)):
        signalled = time.time()
        process.send_signal(signal.SIGTERM)
        code = exits(process, 20)
        check(f"an idle {name} stops on SIGTERM within seconds", code == 0 and time.time() - signalled < 5,
              f"code {code} after {time.time() - signalled:.1f} s")
    idle.close()
finally:
    glaux_binary.stop_all()

check.exit()
