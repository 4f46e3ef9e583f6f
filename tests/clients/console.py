"""The web console (`/ui`) in a real headless browser: Debian's Chromium driven by Selenium
(chromium-driver) against real `glaux scheduler` and `glaux executor` processes.

A wrong password is refused; a user logs in, runs a query and sees its rows (the expected ones,
counted here), its data scanned, time and stages; a query beyond the user's grants fails with the
grant's error; a slow query is cancelled; the history lists the user's statements with filters
and opens a query's page with its stages; the executors page lists both executors; the catalog
browser shows only the tables the user may read, with columns and partitions. A statement sent
through another door (Flight SQL, by ADBC) has a page too: its stages live while it runs, what
they last reported once it is cancelled; another user cannot open it, an administrator can. The
session cookie is HttpOnly and SameSite=Strict, and the API refuses a request with the cookie but
without the CSRF token.

Usage: console.py GLAUX_BINARY WORK_DIR [SCREENSHOT_DIR]
"""
import http.client
import json
import os
import re
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.parquet as pq
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness import Checks, Glaux

glaux, work = sys.argv[1], sys.argv[2]
shots = sys.argv[3] if len(sys.argv) > 3 else None
warehouse = os.path.join(work, "warehouse")
catalog = os.path.join(work, "catalog.sqlite")
ROWS = 3000
KINDS = ["click", "purchase", "view"]
for day in ("2026-11-01", "2026-11-02"):
    os.makedirs(os.path.join(warehouse, "events", f"day={day}"), exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(range(ROWS), pa.int64()), "kind": [KINDS[i % 3] for i in range(ROWS)]}),
                   os.path.join(warehouse, "events", f"day={day}", "part-0.parquet"))
os.makedirs(os.path.join(warehouse, "salaries"), exist_ok=True)
pq.write_table(pa.table({"name": ["ana"], "salary": [1]}), os.path.join(warehouse, "salaries", "part-0.parquet"))

check = Checks()
glaux_binary = Glaux(glaux)
users_file = glaux_binary.users_file(os.path.join(work, "users"),
                                    (("root", "root-password", True), ("ana", "ana-password", False),
                                     ("bob", "bob-password", False)))

browser = None
try:
    doors, _ = glaux_binary.start(
        ["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--warehouse", warehouse,
         "--catalog", catalog, "--users", users_file],
        {"http": "Athena API on http://", "flight": "Flight SQL on "})
    http_addr = doors["http"]
    for _ in range(2):
        glaux_binary.start(["executor", "--scheduler", doors["flight"], "--warehouse", warehouse, "--task-slots", "1",
                            "--memory-mib", "512"], {"flight": "serving on "})
    base = f"http://{http_addr}/ui"

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={os.path.join(work, 'chromium')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    wait = WebDriverWait(browser, 60)
    by_id = lambda name: browser.find_element(By.ID, name)  # noqa: E731

    def shot(name):
        if shots:
            os.makedirs(shots, exist_ok=True)
            browser.save_screenshot(os.path.join(shots, f"console-{name}.png"))

    def log_in(user, password):
        browser.get(base)
        wait.until(seen.visibility_of_element_located((By.ID, "login-user")))
        by_id("login-user").clear()
        by_id("login-user").send_keys(user)
        by_id("login-password").clear()
        by_id("login-password").send_keys(password)
        by_id("login-button").click()

    def run(sql):
        """Runs `sql` in the editor; (status line, error text, table rows as lists of cells)."""
        editor = by_id("sql")
        editor.clear()
        editor.send_keys(sql)
        by_id("run").click()
        wait.until(lambda _: by_id("run").is_enabled() and "RUNNING" not in by_id("status").text
                   and by_id("status").text)
        rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in by_id("results").find_elements(By.CSS_SELECTOR, "tbody tr")]
        return by_id("status").text, by_id("error").text, rows

    def stage_table(name):
        """The table `name`'s rows, each {column: cell}, read at once (a running query's table is
        redrawn as its numbers change)."""
        return browser.execute_script(
            "const table = document.getElementById(arguments[0]);"
            "const header = [...table.querySelectorAll('th')].map((th) => th.textContent);"
            "return [...table.querySelectorAll('tbody tr')].map((tr) =>"
            "  Object.fromEntries([...tr.cells].map((td, i) => [header[i], td.textContent])));", name)

    def cpu_ms(stages):
        return sum(int(stage["CPU"].split()[0]) for stage in stages)

    def nav(page):
        by_id(f"nav-{page}").click()
        wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, f"section#{page}").is_displayed())

    # The administrator declares the tables and lets ana read one of them.
    log_in("root", "root-password")
    wait.until(lambda _: by_id("editor").is_displayed())
    for ddl in (f"CREATE EXTERNAL TABLE events (id BIGINT, kind VARCHAR) PARTITIONED BY (day VARCHAR) "
                f"STORED AS PARQUET LOCATION '{warehouse}/events/'",
                "MSCK REPAIR TABLE events",
                f"CREATE EXTERNAL TABLE salaries STORED AS PARQUET LOCATION '{warehouse}/salaries/'",
                "GRANT SELECT ON TABLE events TO USER ana"):
        status, error, _ = run(ddl)
        check(f"the administrator runs: {ddl[:40]}...", status.startswith("SUCCEEDED"), f"{status} {error}")
    by_id("logout").click()
    wait.until(lambda _: by_id("login").is_displayed())

    # A wrong password is refused.
    log_in("ana", "not-her-password")
    wait.until(lambda _: by_id("login-error").text)
    check("a wrong password is refused", "wrong user name or password" in by_id("login-error").text
          and not by_id("editor").is_displayed(), by_id("login-error").text)
    check("... and sets no session cookie", browser.get_cookie("glaux_console") is None)
    shot("login")

    # ana logs in and runs a query.
    log_in("ana", "ana-password")
    wait.until(lambda _: by_id("editor").is_displayed())
    cookie = browser.get_cookie("glaux_console")
    check("the session cookie is HttpOnly and SameSite=Strict, scoped to /ui",
          cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui", cookie)
    status, error, rows = run("SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind")
    expected = [[kind, str(2 * ROWS // 3)] for kind in KINDS]
    check("a query's rows appear in the results table", rows == expected, f"{rows} {error}")
    check("... with its state, run time and data scanned",
          status.startswith("SUCCEEDED") and "Run time:" in status and "Data scanned:" in status
          and "3 rows" in status, status)
    browser.find_element(By.CSS_SELECTOR, "#editor details summary").click()
    check("... and the stages it ran as", "Stage" in by_id("stages").text and "executors" in by_id("stages").text,
          by_id("stages").text[:200])
    stages = stage_table("stage-table")
    planned_tasks = len(re.findall(r"task \d+ on ", by_id("stages").text))
    check("... each stage with its tasks done, their executors, rows, bytes and time",
          stages and all(s["tasks done"].split("/")[0] == s["tasks done"].split("/")[1] for s in stages)
          and sum(int(s["tasks done"].split("/")[1]) for s in stages) == planned_tasks
          and all(re.search(r"127\.0\.0\.1:\d+ ×\d", s["executors (tasks)"]) for s in stages)
          and sum(int(s["rows out"]) for s in stages) > 0
          and any(s["scanned"] != "0 B" for s in stages) and all(s["errors"] == "" for s in stages),
          f"{stages} vs {planned_tasks} tasks planned")
    shot("editor")
    status, error, _ = run("SELECT * FROM salaries")
    check("a table beyond the user's grants is refused in the console too",
          status.startswith("FAILED") and "no SELECT privilege on table default.salaries" in error, f"{status} {error}")

    # Cancel a slow query.
    editor = by_id("sql")
    editor.clear()
    editor.send_keys("SELECT sum(length(repeat(a.kind, 50)) + b.id) FROM events a, events b")
    by_id("run").click()
    wait.until(lambda _: "RUNNING" in by_id("status").text)
    wait.until(lambda _: "RUNNING" in by_id("status").text and cpu_ms(stage_table("stage-table")) > 0)
    before = cpu_ms(stage_table("stage-table"))
    time.sleep(2)
    live = stage_table("stage-table")
    check("while a query runs, its stages' numbers change live",
          "RUNNING" in by_id("status").text and cpu_ms(live) > before
          and any(s["tasks done"].split("/")[0] != s["tasks done"].split("/")[1] for s in live), f"{before} {live}")
    by_id("cancel").click()
    wait.until(lambda _: by_id("run").is_enabled() and "RUNNING" not in by_id("status").text)
    check("a running query is cancelled", by_id("status").text.startswith("CANCELLED"), by_id("status").text)
    check("... and its stages keep what they last reported", len(stage_table("stage-table")) == len(live))

    # The history, filtered; a query's page.
    nav("history")
    wait.until(lambda _: len(by_id("history-table").find_elements(By.CSS_SELECTOR, "tbody tr")) >= 3)
    table = by_id("history-table")
    header = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
    history = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
               for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    column = {name: header.index(name) for name in header}
    check("the history lists ana's statements, from the console door, and no one else's",
          len(history) == 3 and all(r[column["user"]] == "ana" and r[column["door"]] == "console" for r in history),
          history)
    check("... with their final states", sorted(r[column["state"]] for r in history)
          == ["CANCELLED", "FAILED", "SUCCEEDED"], history)
    Select(by_id("filter-state")).select_by_visible_text("FAILED")
    by_id("history-refresh").click()
    wait.until(lambda _: len(by_id("history-table").find_elements(By.CSS_SELECTOR, "tbody tr")) == 1)
    failed_rows = by_id("history-table").find_elements(By.CSS_SELECTOR, "tbody tr")
    check("the state filter shows only failed statements",
          len(failed_rows) == 1 and "salaries" in failed_rows[0].text, [r.text for r in failed_rows])
    Select(by_id("filter-state")).select_by_visible_text("SUCCEEDED")
    by_id("history-refresh").click()
    wait.until(lambda _: "GROUP BY" in by_id("history-table").text)
    shot("history")
    by_id("history-table").find_element(By.CSS_SELECTOR, "tbody tr td a").click()
    wait.until(lambda _: by_id("query").is_displayed() and by_id("query-state").text)
    check("a query's page shows its state and SQL", by_id("query-state").text == "SUCCEEDED"
          and "GROUP BY kind" in by_id("query-sql").text, by_id("query-state").text)
    check("... and its stage tree (stages, tasks per executor)",
          "Stage 1" in by_id("query-stages").text and "task 0 on" in by_id("query-stages").text,
          by_id("query-stages").text[:300])
    check("... with each stage's numbers", stage_table("query-stage-table") == stages, stage_table("query-stage-table"))
    shot("query")

    # Executors and catalog.
    nav("executors")
    wait.until(lambda _: len(by_id("executors-table").find_elements(By.CSS_SELECTOR, "tbody tr")) == 2)
    check("the executors page lists both executors with their slots",
          all(" 1 " in f" {r.text} " for r in by_id("executors-table").find_elements(By.CSS_SELECTOR, "tbody tr")))
    executors = stage_table("executors-table")
    check("... and the memory their tasks hold, of their limit", len(executors) == 2 and all(
        re.fullmatch(r"\d+(\.\d+)? [KMG]?B", e["memory used"]) and e["memory limit"] == "536.87 MB"
        for e in executors), executors)
    shot("executors")
    nav("catalog")
    wait.until(lambda _: "default" in by_id("catalog-databases").text)
    by_id("catalog-databases").find_element(By.XPATH, "li[text()='default']").click()
    wait.until(lambda _: "events" in by_id("catalog-tables").text)
    check("the catalog shows only the tables the user may read",
          "salaries" not in by_id("catalog-tables").text, by_id("catalog-tables").text)
    by_id("catalog-tables").find_element(By.XPATH, "li[text()='events']").click()
    wait.until(lambda _: "kind" in by_id("catalog-columns").text)
    wait.until(lambda _: "day=" in by_id("catalog-partitions").text)
    check("... with a table's columns and partitions",
          "id" in by_id("catalog-columns").text and "day=2026-11-02" in by_id("catalog-partitions").text,
          by_id("catalog-partitions").text)
    shot("catalog")

    # The API wants the CSRF token besides the cookie.
    def call(path, cookie_value=None, csrf=None, method="GET"):
        connection = http.client.HTTPConnection(http_addr, timeout=10)
        headers = {"content-type": "application/json"}
        if cookie_value:
            headers["cookie"] = f"glaux_console={cookie_value}"
        if csrf:
            headers["x-glaux-csrf"] = csrf
        connection.request(method, "/ui/api/" + path, body="{}" if method == "POST" else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()

    session_cookie = browser.get_cookie("glaux_console")["value"]
    check("the API refuses a call without a session", call("history")[0] == 401)
    check("the API refuses a call with the cookie but without the CSRF token",
          call("history", session_cookie)[0] == 403)
    check("... or with another token", call("history", session_cookie, "0" * 64)[0] == 403)
    status, body = call("session", session_cookie)
    token = json.loads(body)["csrf"] if status == 200 else None
    check("with both, the call is answered", call("history", session_cookie, token)[0] == 200)

    # A statement from another door: ana's slow query through Flight SQL (ADBC) has a live page.
    SLOW = "SELECT sum(length(repeat(a.kind, 50)) + b.id) AS s FROM events a, events b WHERE a.id >= 0"
    flight = adbc.connect(f"grpc://{doors['flight']}", db_kwargs={"username": "ana", "password": "ana-password"})
    flight_cursor = flight.cursor()
    outcome = {}

    def slow():
        try:
            flight_cursor.execute(SLOW)
            outcome["rows"] = flight_cursor.fetchall()
        except Exception as error:  # noqa: BLE001 (the cancel's error is the expected outcome)
            outcome["error"] = str(error)

    runner = threading.Thread(target=slow, daemon=True)
    runner.start()
    nav("history")
    Select(by_id("filter-state")).select_by_visible_text("RUNNING")
    Select(by_id("filter-door")).select_by_visible_text("flight_sql")

    def listed(_):
        by_id("history-refresh").click()
        time.sleep(0.3)
        return "a.id >= 0" in by_id("history-table").text
    wait.until(listed)
    by_id("history-table").find_element(By.CSS_SELECTOR, "tbody tr td a").click()
    wait.until(lambda _: by_id("query-state").text == "RUNNING" and cpu_ms(stage_table("query-stage-table")) > 0)
    flight_id = by_id("query-id").text
    before = cpu_ms(stage_table("query-stage-table"))
    time.sleep(2)
    live = stage_table("query-stage-table")
    check("a Flight SQL statement's page shows its stages live while it runs",
          by_id("query-state").text == "RUNNING" and cpu_ms(live) > before and "Stage 1" in by_id("query-stages").text
          and "via flight_sql" in by_id("query-summary").text and "tasks " in by_id("query-progress").text,
          f"{before} {live} {by_id('query-summary').text}")
    shot("query-live")
    status, body = call("queries/" + flight_id, session_cookie, token)
    check("... the same through the API, for its user", status == 200 and json.loads(body)["door"] == "flight_sql",
          body[:300])

    def session_of(user, password):
        connection = http.client.HTTPConnection(http_addr, timeout=10)
        connection.request("POST", "/ui/api/login", body=json.dumps({"user": user, "password": password}),
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        cookie = re.search(r"glaux_console=([^;]+)", response.getheader("set-cookie") or "").group(1)
        return cookie, json.loads(response.read())["csrf"]

    status, body = call("queries/" + flight_id, *session_of("bob", "bob-password"))
    check("another user cannot open it", status == 404, f"{status} {body[:200]}")
    status, body = call("queries/" + flight_id, *session_of("root", "root-password"))
    check("an administrator can", status == 200 and json.loads(body)["user"] == "ana", f"{status} {body[:200]}")

    flight_cursor.adbc_cancel()
    runner.join(60)
    check("the Flight SQL client cancels it", "cancel" in outcome.get("error", "").lower(), outcome)
    wait.until(lambda _: by_id("query-state").text == "CANCELLED")
    ended = stage_table("query-stage-table")
    check("... and its page then shows what its stages last reported",
          len(ended) == len(live) and cpu_ms(ended) >= cpu_ms(live) and "last seen" in by_id("query-progress").text,
          f"{ended} {by_id('query-progress').text}")
    flight_cursor.close()
    flight.close()
    page = http.client.HTTPConnection(http_addr, timeout=10)
    page.request("GET", "/ui")
    policy = page.getresponse().getheader("content-security-policy") or ""
    check("the page comes from the binary with a policy that loads nothing from elsewhere",
          "default-src 'self'" in policy, policy)

    by_id("logout").click()
    wait.until(lambda _: by_id("login").is_displayed())
    check("logging out ends the session", call("history", session_cookie, token)[0] == 401)
finally:
    if browser:
        browser.quit()
    glaux_binary.stop_all()

check.exit()
