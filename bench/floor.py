"""Turns PostgreSQL's statement log of one request (log_min_duration_statement = 0, the
default stderr format) into a pgbench script of the same statements with the same
parameters, written as literals; `-M prepared` prepares each once, as the server does.
Statements of the cache outbox's background round (reads and deletes of cache_outbox)
and catalog lookups are left out: they are not the request's.
usage: python3 bench/floor.py LITERAL=VAR ... < log > script
   a LITERAL=VAR pair writes :VAR where the literal 'LITERAL' was (\\set it in the
   script's caller), so that a write can be replayed on many rows."""
import re
import sys

ENTRY = re.compile(r"^\S+ \S+ \S+ \[\d+\] \S*\s*(LOG|DETAIL):  (.*)$")
STATEMENT = re.compile(r"duration: [\d.]+ ms  (?:statement|execute [^:]*): (.*)$", re.S)
PARAM = re.compile(r"\$(\d+) = ('(?:[^']|'')*'|NULL)")

entries = []  # [kind, text]
for line in sys.stdin:
    line = line.rstrip("\n")
    found = ENTRY.match(line)
    if found:
        entries.append([found.group(1), found.group(2)])
    elif line.startswith("\t") and entries:
        entries[-1][1] += "\n" + line[1:]

statements = []
for i, (kind, text) in enumerate(entries):
    found = STATEMENT.match(text) if kind == "LOG" else None
    if not found:
        continue
    sql = found.group(1)
    following = entries[i + 1] if i + 1 < len(entries) else None
    if following and following[0] == "DETAIL" and following[1].startswith("parameters:"):
        values = dict(PARAM.findall(following[1]))
        sql = re.sub(r"\$(\d+)", lambda m: values[m.group(1)], sql)
    background = "cache_outbox" in sql and "INSERT INTO" not in sql
    if background or "pg_catalog" in sql:
        continue
    statements.append(sql)

pairs = [arg.split("=", 1) for arg in sys.argv[1:]]
for sql in statements:
    for literal, var in pairs:
        sql = sql.replace(f"'{literal}'", f":{var}")
    print(sql.strip().rstrip(";") + ";")
