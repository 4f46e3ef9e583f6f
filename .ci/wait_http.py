"""Waits until URL answers HTTP at all (any status), for at most SECONDS."""
import sys
import time
import urllib.error
import urllib.request

url, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.time() + seconds
while time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=2)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answered: 403 without credentials is an answer
    except (urllib.error.URLError, OSError):
        time.sleep(0.25)
print(f"{url} did not answer within {seconds} s", file=sys.stderr)
sys.exit(1)
