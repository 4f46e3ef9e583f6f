"""Prints N free loopback TCP ports p (space separated) whose p + 10000 is free too (SeaweedFS's gRPC)."""
import random
import socket
import sys


def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


count = int(sys.argv[1])
ports = []
while len(ports) < count:
    p = random.randint(20000, 29999)
    if p not in ports and free(p) and free(p + 10000):
        ports.append(p)
print(" ".join(map(str, ports)))
