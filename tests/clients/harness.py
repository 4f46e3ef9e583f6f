"""What the client tests share: named checks and their tally, running `glaux` commands (users
files, access keys), starting its servers as real processes (reading the addresses they print),
reading their HTTP endpoints (`/metrics` through Prometheus' own parser), and talking to them the
way several tests do (psql, an Athena execution awaited, DB-API rows)."""
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


class Checks:
    """Named checks: each prints ok/FAIL as it runs; `exit` prints the tally and exits with it."""

    def __init__(self):
        self.passed, self.failed = 0, 0

    def __call__(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}", flush=True)
        return condition

    def exit(self, hard=False):
        """Prints the tally and exits with it; `hard` leaves without tearing the interpreter down
        (delta-rs's runtime can abort at exit)."""
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        code = 1 if self.failed or not self.passed else 0
        if hard:
            os._exit(code)
        sys.exit(code)


class Glaux:
    """The `glaux` binary, and the server processes started from it (stopped by `stop_all`)."""

    def __init__(self, binary):
        self.binary = binary
        self.processes = []

    def output(self, *args, stdin=None):
        """What `glaux ARGS` prints; the test exits if it fails."""
        out = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            sys.exit(f"glaux {args[0]} failed: {out.stderr}")
        return out.stdout

    def start(self, args, markers, log=None, env=None):
        """Starts `glaux ARGS` and waits for the lines naming its addresses (`markers`: name ->
        text before the address). Returns ({name: address}, process). Its log (stderr) goes to the
        file `log` if given (GLAUX_LOG=info then), else to the test's own (warnings only)."""
        environment = {**os.environ, "GLAUX_LOG": "info" if log else "warn", **(env or {})}
        stderr = open(log, "w") if log else None
        process = subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env=environment)
        self.processes.append(process)
        found = {}
        for line in process.stdout:
            for name, marker in markers.items():
                if marker in line:
                    found[name] = line.split(marker)[1].split()[0].rstrip(".,")
            if len(found) == len(markers):
                break
        if len(found) != len(markers):
            sys.exit(f"glaux {args[0]} did not print {markers}: {found}")
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        return found, process

    def users_file(self, path, users):
        """Writes a `--users` file at `path` for `users`: (name, password, administrator?, any
        more fields such as `workgroup=bi`)."""
        with open(path, "w") as f:
            for user, password, admin, *more in users:
                hashed = self.output("hash-password", stdin=password + "\n").strip()
                fields = [user, hashed, *(["admin"] if admin else []), *more]
                f.write(":".join(fields) + "\n")
        os.chmod(path, 0o600)
        return path

    def access_key(self, user, catalog, warehouse):
        """A new access key of `user` for Athena's API: (key id, secret)."""
        printed = self.output("access-key", "create", user, "--catalog", catalog, "--warehouse", warehouse)
        fields = dict(line.split(" = ") for line in printed.splitlines() if " = " in line)
        return fields["aws_access_key_id"], fields["aws_secret_access_key"]

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(timeout=20)


def get(url):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError) as error:
        return None, str(error)


def scrape(http):
    """({(name, sorted label items): value} of every sample at http://HTTP/metrics, the text)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = get(f"http://{http}/metrics")
    if status != 200:
        sys.exit(f"/metrics answered {status}: {text}")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def wait_until(condition, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_s3():
    """The S3-compatible server `.ci/run` starts: {endpoint, key, secret}."""
    return {"endpoint": os.environ["GLAUX_TEST_S3_ENDPOINT"], "key": os.environ["GLAUX_TEST_S3_ACCESS_KEY_ID"],
            "secret": os.environ["GLAUX_TEST_S3_SECRET_ACCESS_KEY"]}


def rows_of(connection, sql):
    """The rows of `sql` through a DB-API connection (ADBC)."""
    cursor = connection.cursor()
    cursor.execute(sql)
    return cursor.fetchall()


def psql(address, user, password, sql, options=None):
    """Runs `sql` through psql at `address` as `user`: (succeeded, its rows as text, stderr)."""
    host, port = address.rsplit(":", 1)
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    if options:
        env["PGOPTIONS"] = options
    out = subprocess.run(["psql", "-h", host, "-p", port, "-U", user, "-d", "default", "-X", "-qAt", "-c", sql],
                         capture_output=True, text=True, timeout=60, env=env)
    return out.returncode == 0, out.stdout.strip(), out.stderr


def athena_error(call):
    """(code, message) of the Athena API error `call()` raises, (None, None) if it succeeds."""
    import botocore.exceptions

    try:
        call()
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"], error.response["Error"]["Message"]
    return None, None


def wait_for_execution(client, qid, states=("SUCCEEDED", "FAILED", "CANCELLED"), timeout=60):
    """Athena's `GetQueryExecution` of `qid` once its state is one of `states`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        execution = client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
        if execution["Status"]["State"] in states:
            return execution
        time.sleep(0.05)
    raise TimeoutError(f"{qid} never reached {states}")
