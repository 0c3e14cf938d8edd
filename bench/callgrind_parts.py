"""Reads a callgrind dump: instructions per request by crate (of the source file, so
inlined code counts where it was written) and the top functions, both exclusive; then,
for each regular expression given, the inclusive instructions of the functions it
matches (summed over call sites; recursion counts twice).
usage: python3 bench/callgrind_parts.py DUMP REQUESTS [TOP] [REGEX ...]"""
import re, sys, collections
path, nreq = sys.argv[1], int(sys.argv[2]); top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
names = {'fl': {}, 'fn': {}}
def name(kind, v):
    m = re.match(r'\((\d+)\)(?: (.*))?', v)
    if not m: return v
    d = names['fl' if kind in ('fl','fi','fe','cfl','cfi') else 'fn']
    if m.group(2) is not None: d[m.group(1)] = m.group(2)
    return d.get(m.group(1), '?')
excl_fn = collections.Counter(); excl_crate = collections.Counter(); incl = collections.Counter()
fl = fi = fn = None; cfn = None; pending_call = False; total = 0
def crate(f):
    c = re.search(r'registry/src/[^/]+/([^/]+)/', f or '')
    if c: return re.sub(r'-[\d.]+(-[a-z.0-9]+)?$', '', c.group(1))
    if f and '/rustc/' in f: return 'std/core/alloc'
    if f and ('/work/' in f and '/src/' in f): return 'shopgraph:' + f.split('/src/', 1)[1]
    return f or '?'
for line in open(path, errors='replace'):
    line = line.rstrip('\n')
    if not line: continue
    c0 = line[0]
    if c0.isdigit() or c0 in '+-*':
        parts = line.split()
        if len(parts) < 2: continue
        cost = int(parts[1])
        if pending_call:
            incl[cfn] += cost; pending_call = False; continue
        excl_fn[fn] += cost; excl_crate[crate(fi or fl)] += cost; total += cost
        continue
    k, _, v = line.partition('=')
    if k == 'fl': fl = name('fl', v); fi = None
    elif k in ('fi', 'fe'): fi = name(k, v)
    elif k == 'fn': fn = name('fn', v); fi = None
    elif k == 'cfn': cfn = name('fn', v)
    elif k in ('cfl', 'cfi'): name(k, v)
    elif k == 'calls': pending_call = True
print(f"total {total/nreq:,.0f} Ir/request")
print("-- by crate (exclusive)")
for k, v in excl_crate.most_common(top): print(f"{v/nreq:>11,.0f} {100*v/total:5.1f}%  {k}")
print("-- top functions (exclusive)")
for k, v in excl_fn.most_common(top): print(f"{v/nreq:>11,.0f} {100*v/total:5.1f}%  {k[:170]}")
pats = sys.argv[4:] 
if pats:
    print("-- inclusive (sum over call sites; recursion double-counts)")
    for p in pats:
        best = sorted(((v, k) for k, v in incl.items() if re.search(p, k)), reverse=True)[:4]
        for v, k in best: print(f"{v/nreq:>11,.0f} {100*v/total:5.1f}%  [{p}] {k[:150]}")
