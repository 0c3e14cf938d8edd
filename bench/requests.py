"""Sends one GraphQL request COUNT times over one keep-alive connection and checks
every answer. usage: python3 bench/requests.py PORT BODY_FILE EXPECTED COUNT"""
import http.client
import sys

port, body_file, expected, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(body_file, "rb") as f:
    body = f.read()
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
headers = {"content-type": "application/json"}
for _ in range(count):
    conn.request("POST", "/graphql", body, headers)
    answer = conn.getresponse().read().decode()
    if expected not in answer or '"errors"' in answer:
        sys.exit(f"unexpected answer: {answer[:300]}")
