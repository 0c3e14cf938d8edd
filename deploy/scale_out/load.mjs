// The scale-out test's load driver and conductor (Node.js 20, no dependencies; run with
// --experimental-websocket). It starts the API instances itself (so that it can stop
// and restart them at known moments), drives a mixed load through nginx, and writes a
// JSON report. deploy/scale_out_test.sh prepares everything else and checks the
// database afterwards.
//
// Phases, each timed by the conductor:
//   before    the load on 3 instances
//   graceful  instance A is stopped gracefully: taken out of nginx (marked `down`,
//             `nginx -s reload`), then SIGTERM, as a planned stop behind nginx is done
//             (Kubernetes does the same with its endpoints and the preStop pause). With
//             "graceful": "sigterm" it gets SIGTERM alone, to see what the server's own
//             graceful shutdown achieves. Lasts until A has exited, plus a settle time.
//   kill      instance B gets SIGKILL
//   restart   A and B start again, until both answer /health/ready
//   after     the load on 3 instances again
// A request belongs to the phase in which it ended (an error happens when it ends).
//
// Load (closed loops, each virtual user waits for its answer before the next request):
//   readers      anonymous catalog reads by GET (products page, product, categories)
//   cart editors a customer each: addToCart, updateCartItem, removeFromCart (POST)
//   shoppers     a customer each: addToCart twice, then checkout (POST)
//   subscribers  20 customers, each with one WebSocket (graphql-transport-ws) kept
//                open: placeOrder, then sagaUpdates(id) on the socket until the saga
//                is terminal; a socket that closes is opened again (through nginx, so
//                on another instance) and the saga subscribed to again.
import { spawn, spawnSync } from "node:child_process";
import http from "node:http";
import { readFileSync, readdirSync, writeFileSync, openSync } from "node:fs";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const {
  binary, env, ports, base, tokens, products, logDir, nginxLog, report,
  seconds = { before: 10, settle: 3, kill: 5, after: 10 },
  readers = 6, cartEditors = 4, shoppers = 4, nginx, graceful = "drain",
} = config;
const SUBSCRIBERS = tokens.subscribers.length;
const TERMINAL = new Set(["COMPLETED", "COMPENSATED", "FAILED"]);
const REQUEST_TIMEOUT_MS = 15_000;
const SAGA_DEADLINE_MS = 60_000;

const now = () => Date.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...args);

// ---- the API instances ---------------------------------------------------------------

const instances = ports.map((port, i) => ({ name: `api-${i + 1}`, port, child: null, starts: 0 }));

function start(instance) {
  instance.starts += 1;
  const out = openSync(`${logDir}/${instance.name}.${instance.starts}.log`, "w");
  instance.child = spawn(binary, ["serve", "--no-worker"], {
    env: { ...process.env, ...env, BIND_ADDR: `127.0.0.1:${instance.port}`, INSTANCE_ID: instance.name },
    stdio: ["ignore", out, out],
  });
  instance.exited = new Promise((resolve) => instance.child.on("exit", (code, signal) => resolve({ code, signal })));
}

async function ready(instance, deadlineMs = 60_000) {
  const until = now() + deadlineMs;
  while (now() < until) {
    try {
      const res = await fetch(`http://127.0.0.1:${instance.port}/health/ready`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${instance.name} not ready within ${deadlineMs} ms`);
}

// ---- nginx: taking an instance out and back --------------------------------------------

// nginx's worker processes (children of its master) and whether each is shutting down.
function nginxWorkers() {
  const master = readFileSync(nginx.pidFile, "utf8").trim();
  const workers = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1];
      if (ppid !== master) continue;
      const title = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      workers.push({ pid, exiting: title.includes("shutting down") });
    } catch {
      // gone meanwhile
    }
  }
  return workers;
}

// Rewrites the upstream list (the instances in `down` marked so) and reloads nginx;
// returns once a worker started by this reload runs, so that every new request is
// balanced by the new list (the old workers only finish what they had).
async function setUpstreams(down) {
  const before = new Set(nginxWorkers().map((w) => w.pid));
  const lines = instances.map(
    (i) => `server 127.0.0.1:${i.port} max_fails=2 fail_timeout=5s${down.includes(i) ? " down" : ""};`,
  );
  writeFileSync(nginx.upstreams, lines.join("\n") + "\n");
  const reload = spawnSync("nginx", ["-s", "reload", "-p", nginx.prefix, "-c", nginx.conf], { encoding: "utf8" });
  if (reload.status !== 0) throw new Error(`nginx -s reload: ${reload.stderr}`);
  const until = now() + 10_000;
  while (now() < until) {
    if (nginxWorkers().some((w) => !w.exiting && !before.has(w.pid))) return;
    await sleep(20);
  }
  throw new Error("nginx did not reload within 10 s");
}

// ---- bookkeeping -----------------------------------------------------------------------

const phases = []; // { name, start, end }
function enter(name) {
  const t = now();
  if (phases.length) phases[phases.length - 1].end = t;
  phases.push({ name, start: t, end: null });
  log(`phase ${name}`);
}
const results = []; // { end, ok, kind, error }
let running = true;

function phaseAt(t) {
  for (const p of phases) if (t >= p.start && (p.end === null || t < p.end)) return p.name;
  return "drain";
}

// One request on a connection of its own. A reload of nginx closes the idle keep-alive
// connections of its old workers: a browser sends a request that met such a close again
// by itself, Node's fetch does not, and that client-side race is not what this test
// measures (nginx to the instances still keeps connections alive).
const noKeepAlive = new http.Agent({ keepAlive: false });
function send(url, method, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: noKeepAlive, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", reject);
    req.end(body);
  });
}

async function graphql(kind, { method = "POST", query, variables, token }) {
  const headers = { accept: "application/graphql-response+json, application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let url = `${base}/graphql`;
  let body;
  if (method === "GET") {
    url += `?query=${encodeURIComponent(query)}`;
    if (variables) url += `&variables=${encodeURIComponent(JSON.stringify(variables))}`;
  } else {
    headers["content-type"] = "application/json";
    body = JSON.stringify({ query, variables });
  }
  let error = null;
  let data = null;
  try {
    const res = await send(url, method, headers, body);
    const text = res.text;
    let parsed = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // an nginx error page, say
    }
    if (res.status !== 200) error = `HTTP ${res.status}`;
    else if (!parsed) error = "unparsable body";
    else if (parsed.errors?.length) error = parsed.errors[0].extensions?.code ?? parsed.errors[0].message;
    else data = parsed.data;
  } catch (err) {
    error = `network: ${err.code ?? err.name}`;
  }
  results.push({ end: now(), ok: error === null, kind, error });
  return data;
}

// ---- the virtual users -----------------------------------------------------------------

const pick = (list) => list[Math.floor(Math.random() * list.length)];

async function reader() {
  const reads = [
    ["products", "{ products(first: 20) { totalCount edges { node { id name price stock } } } }"],
    ["product", `{ product(id: "${pick(products)}") { id name price stock category { name } } }`],
    ["categories", "{ categories { id name slug } }"],
  ];
  while (running) {
    const [kind, query] = pick(reads);
    await graphql(`read:${kind}`, { method: "GET", query });
  }
}

const ADD = "mutation($p: ID!, $q: Int!) { addToCart(productId: $p, quantity: $q) { itemCount total } }";
const UPDATE = "mutation($p: ID!, $q: Int!) { updateCartItem(productId: $p, quantity: $q) { itemCount } }";
const REMOVE = "mutation($p: ID!) { removeFromCart(productId: $p) { itemCount } }";

async function cartEditor(token) {
  while (running) {
    const p = pick(products);
    await graphql("cart:add", { query: ADD, variables: { p, q: 2 }, token });
    await graphql("cart:update", { query: UPDATE, variables: { p, q: 1 }, token });
    await graphql("cart:remove", { query: REMOVE, variables: { p }, token });
  }
}

const CHECKOUT = "mutation { checkout(input: {paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }";

async function shopper(token) {
  while (running) {
    const added = await graphql("cart:add", { query: ADD, variables: { p: pick(products), q: 1 }, token });
    if (!added) continue;
    await graphql("cart:add", { query: ADD, variables: { p: pick(products), q: 1 }, token });
    await graphql("checkout", { query: CHECKOUT, token });
  }
}

const PLACE = "mutation($items: [OrderItemInput!]!) { placeOrder(input: {items: $items, paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }";
const UPDATES = "subscription($id: ID!) { sagaUpdates(id: $id) { id status } }";
const subscriptions = { total: 0, finished: 0, reconnected: 0, reconnectedFinished: 0, unfinished: [] };
const sockets = { opened: 0, closedUnexpectedly: 0, closeCodes: {} };

// One graphql-transport-ws socket: resolves once acknowledged; `onClose` is told when it
// goes away (instance stopped or killed).
function openSocket(token, handlers) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/graphql/ws`, "graphql-transport-ws");
    let acked = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } }));
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        acked = true;
        sockets.opened += 1;
        resolve(ws);
      } else if (message.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else {
        handlers.onMessage(message);
      }
    };
    ws.onclose = (event) => {
      if (!acked) reject(new Error(`socket closed before ack (${event.code})`));
      else handlers.onClose(event.code);
    };
    ws.onerror = () => {}; // followed by close
  });
}

// Follows one saga to a terminal status over the subscriber's socket, opening the
// socket again (and subscribing again) whenever it closes before that.
async function follow(state, sagaId) {
  subscriptions.total += 1;
  const started = now();
  let reconnected = false;
  let seq = 0;
  while (now() - started < SAGA_DEADLINE_MS) {
    if (!state.ws) {
      try {
        state.ws = await openSocket(state.token, {
          onMessage: (m) => state.onMessage?.(m),
          onClose: (code) => {
            sockets.closedUnexpectedly += state.closing ? 0 : 1;
            sockets.closeCodes[code] = (sockets.closeCodes[code] ?? 0) + 1;
            state.ws = null;
            state.onClose?.();
          },
        });
      } catch {
        await sleep(200);
        continue;
      }
    }
    const id = `${sagaId}-${++seq}`;
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), SAGA_DEADLINE_MS);
      state.onMessage = (m) => {
        if (m.id !== id) return;
        if (m.type === "next" && TERMINAL.has(m.payload?.data?.sagaUpdates?.status)) {
          clearTimeout(timer);
          resolve("terminal");
        } else if (m.type === "error") {
          clearTimeout(timer);
          resolve("error");
        } else if (m.type === "complete") {
          clearTimeout(timer);
          resolve("complete");
        }
      };
      state.onClose = () => {
        clearTimeout(timer);
        resolve("closed");
      };
      state.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query: UPDATES, variables: { id: sagaId } } }));
    });
    state.onMessage = null;
    state.onClose = null;
    if (outcome === "terminal") {
      subscriptions.finished += 1;
      if (reconnected) subscriptions.reconnectedFinished += 1;
      return;
    }
    if (outcome === "closed") {
      if (!reconnected) subscriptions.reconnected += 1;
      reconnected = true;
      continue;
    }
    break; // error, timeout, or completed without a terminal status
  }
  subscriptions.unfinished.push(sagaId);
}

async function subscriber(token) {
  const state = { token, ws: null, closing: false };
  while (running) {
    const items = [{ productId: pick(products), quantity: 1 }];
    const placed = await graphql("placeOrder", { query: PLACE, variables: { items }, token });
    const sagaId = placed?.placeOrder?.id;
    if (sagaId) await follow(state, sagaId);
    else await sleep(50);
  }
  state.closing = true;
  state.ws?.close(1000);
}

// ---- the nginx log: requests in flight on the killed instance --------------------------

// log_format: $msec $request_time "$upstream_addr" $status $request_method $uri
// A request counts when it was on the instance at any moment from the signal (`from`) to
// the exit the driver saw (`to`): the process dies some time after `kill()` returns, and
// until then its socket still accepts what nginx sends it. Log times are to the ms.
function inFlightOn(port, from, to) {
  let count = 0;
  for (const line of readFileSync(nginxLog, "utf8").split("\n")) {
    const m = line.match(/^(\d+\.\d+) (\d+\.\d+) "([^"]*)" (\d+) (\w+) (\S+)$/);
    if (!m) continue;
    const end = Number(m[1]) * 1000;
    const begin = end - Number(m[2]) * 1000;
    if (m[6] === "/graphql/ws") continue; // sockets are followed by the subscribers
    if (m[3].split(", ")[0] === `127.0.0.1:${port}` && begin <= to + 1 && end >= from - 1) count += 1;
  }
  return count;
}

function servedAfter(at, restarted) {
  const perInstance = Object.fromEntries(restarted.map((i) => [i.name, 0]));
  for (const line of readFileSync(nginxLog, "utf8").split("\n")) {
    const m = line.match(/^(\d+\.\d+) (\d+\.\d+) "([^"]*)" (\d+) (\w+) (\S+)$/);
    if (!m || Number(m[1]) * 1000 < at) continue;
    const last = m[3].split(", ").pop();
    const instance = restarted.find((i) => last === `127.0.0.1:${i.port}`);
    if (instance && m[4] === "200") perInstance[instance.name] += 1;
  }
  return perInstance;
}

// ---- the run ---------------------------------------------------------------------------

async function main() {
  instances.forEach(start);
  await Promise.all(instances.map((i) => ready(i)));
  log("3 instances ready");

  const users = [];
  for (let i = 0; i < readers; i++) users.push(reader());
  tokens.cartEditors.slice(0, cartEditors).forEach((t) => users.push(cartEditor(t)));
  tokens.shoppers.slice(0, shoppers).forEach((t) => users.push(shopper(t)));
  tokens.subscribers.forEach((t) => users.push(subscriber(t)));

  const [a, b] = instances;
  enter("before");
  await sleep(seconds.before * 1000);

  enter("graceful");
  if (graceful === "drain") await setUpstreams([a]);
  const termAt = now();
  a.child.kill("SIGTERM");
  const stopped = await Promise.race([a.exited, sleep(60_000).then(() => null)]);
  const gracefulExit = stopped ? { ...stopped, afterMs: now() - termAt } : { code: null, signal: null, afterMs: null };
  log(`${a.name} after SIGTERM:`, JSON.stringify(gracefulExit));
  if (!stopped) {
    a.child.kill("SIGKILL");
    await a.exited;
  }
  await sleep(seconds.settle * 1000);

  enter("kill");
  const killAt = now();
  b.child.kill("SIGKILL");
  await b.exited;
  const exitedAt = now();
  await sleep(seconds.kill * 1000);

  enter("restart");
  start(a);
  start(b);
  await Promise.all([ready(a), ready(b)]);
  if (graceful === "drain") await setUpstreams([]);
  const restartedAt = now();

  enter("after");
  await sleep(seconds.after * 1000);
  phases[phases.length - 1].end = now();
  running = false;
  log("load stopped; waiting for the virtual users (subscribers follow their last saga)");
  await Promise.all(users);

  // nginx writes its log line when a request ends; every request has ended by now.
  const inFlightAtKill = inFlightOn(b.port, killAt, exitedAt);
  // From fail_timeout (5 s) on, nginx has tried the restarted instances again.
  const served = servedAfter(restartedAt + 5000, [a, b]);

  const byPhase = {};
  for (const p of [...phases.map((p) => p.name), "drain"]) byPhase[p] = { requests: 0, errors: 0, kinds: {} };
  for (const r of results) {
    const phase = byPhase[phaseAt(r.end)];
    phase.requests += 1;
    if (!r.ok) {
      phase.errors += 1;
      const key = `${r.kind}: ${r.error}`;
      phase.kinds[key] = (phase.kinds[key] ?? 0) + 1;
    }
  }
  for (const p of phases) {
    const seconds = (p.end - p.start) / 1000;
    byPhase[p.name].seconds = Number(seconds.toFixed(1));
    byPhase[p.name].okPerSecond = Math.round((byPhase[p.name].requests - byPhase[p.name].errors) / seconds);
  }

  const failures = [];
  if (byPhase.graceful.errors > 0) failures.push(`${byPhase.graceful.errors} error(s) while ${a.name} stopped gracefully`);
  if (!stopped) failures.push(`${a.name} had not exited 60 s after SIGTERM`);
  if (byPhase.kill.errors > inFlightAtKill) {
    failures.push(`${byPhase.kill.errors} error(s) after the SIGKILL, more than the ${inFlightAtKill} request(s) in flight on ${b.name}`);
  }
  if (subscriptions.unfinished.length) failures.push(`subscriptions that never saw their saga finish: ${subscriptions.unfinished.join(", ")}`);
  if (subscriptions.reconnected === 0) failures.push("no subscription had to reconnect: the stops did not reach the sockets");
  for (const [name, count] of Object.entries(served)) {
    if (count === 0) failures.push(`${name} served nothing after the restart`);
  }
  if (byPhase.drain.errors > 0) failures.push(`${byPhase.drain.errors} error(s) after the load`);

  const out = {
    graceful,
    phases: byPhase,
    gracefulExit,
    inFlightAtKill,
    servedAfterRestart: served,
    subscriptions: { ...subscriptions, unfinished: subscriptions.unfinished.length },
    sockets,
    failures,
  };
  writeFileSync(report, JSON.stringify(out, null, 2));
  for (const i of instances) i.child.kill("SIGTERM");
  await Promise.race([Promise.all(instances.map((i) => i.exited)), sleep(20_000)]);
  for (const i of instances) if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill("SIGKILL");
  process.exit(failures.length ? 1 : 0);
}

main().catch((err) => {
  log("driver failed:", err);
  for (const i of instances) i.child?.kill("SIGKILL");
  process.exit(2);
});
