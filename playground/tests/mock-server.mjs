// A stand-in for the Rust server, for working on the playground without it:
//
//   node tests/mock-server.mjs            # PORT=8123 by default
//
// - serves dist/ the way the Rust server must: /playground and /playground/ ->
//   dist/index.html, /playground/shop and /playground/shop/ -> dist/shop/index.html,
//   /playground/assets/* -> dist/assets/* (content types below), 404 otherwise;
// - POST /graphql: a tiny in-memory shop (products, carts, checkout saga) built
//   with graphql-js on a subset of the SPEC.md schema;
// - /graphql/ws: graphql-transport-ws (graphql-ws server) with sagaUpdates.
// It checks what the pages send: carts need `Authorization: Bearer ...` over
// HTTP, and the WebSocket needs Authorization in connectionParams.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphQLError, buildSchema, graphql } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const DIST = resolve(fileURLToPath(new URL('../dist', import.meta.url)));
const PORT = Number(process.env.PORT || 8123);
const HOST = process.env.HOST || '127.0.0.1';
const STEP_MS = Number(process.env.MOCK_STEP_MS || 400);

export const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
};

const schema = buildSchema(`
  scalar Decimal
  type Query {
    products(first: Int = 20, after: String, filter: ProductFilter): ProductConnection!
    cart(customerId: ID): Cart!
    saga(id: ID!): Saga
  }
  type Mutation {
    addToCart(productId: ID!, quantity: Int! = 1, customerId: ID): Cart!
    updateCartItem(productId: ID!, quantity: Int!, customerId: ID): Cart!
    removeFromCart(productId: ID!, customerId: ID): Cart!
    clearCart(customerId: ID): Cart!
    checkout(input: CheckoutInput!): Saga!
  }
  type Subscription { sagaUpdates(id: ID!): Saga! }
  input ProductFilter { search: String, categoryId: ID, inStock: Boolean }
  input CheckoutInput { customerId: ID, paymentMethod: PaymentMethod!, paymentToken: String, idempotencyKey: String }
  enum PaymentMethod { CARD PAYPAL BANK_TRANSFER }
  type Category { id: ID!, name: String! }
  type Product { id: ID!, name: String!, price: Decimal!, stock: Int!, category: Category }
  type ProductEdge { cursor: String!, node: Product! }
  type PageInfo { hasNextPage: Boolean!, hasPreviousPage: Boolean!, startCursor: String, endCursor: String }
  type ProductConnection { edges: [ProductEdge!]!, pageInfo: PageInfo!, totalCount: Int! }
  type CartItem { product: Product!, quantity: Int!, unitPrice: Decimal!, lineTotal: Decimal! }
  type Cart { id: ID!, items: [CartItem!]!, itemCount: Int!, total: Decimal! }
  type Order { id: ID!, total: Decimal!, status: String! }
  type SagaStep { name: String!, status: String!, attempts: Int!, error: String }
  type Saga { id: ID!, status: String!, steps: [SagaStep!]!, order: Order, error: String }
`);

const categories = [{ id: '1', name: 'Books' }, { id: '2', name: 'Games' }];
const products = Array.from({ length: 30 }, (_, i) => ({
  id: String(i + 1),
  name: `${['Blue', 'Red', 'Green', 'Golden', 'Tiny'][i % 5]} ${['Mug', 'Novel', 'Puzzle', 'Lamp', 'Chair', 'Kite'][i % 6]} ${i + 1}`,
  price: (((i * 7) % 40) + 4.99).toFixed(2),
  stock: i % 11 === 10 ? 0 : 5 + (i % 9),
  category: categories[i % 2],
}));
const carts = new Map(); // principal -> Map(productId -> quantity)
const sagas = new Map();
const listeners = new Map(); // sagaId -> Set(fn)
const cents = (s) => Math.round(Number(s) * 100);
const money = (c) => (c / 100).toFixed(2);

function principal(ctx) {
  const auth = ctx.authorization || '';
  const m = /^Bearer\s+(\S+)$/i.exec(auth);
  if (!m) throw new GraphQLError('authentication required', { extensions: { code: 'UNAUTHENTICATED' } });
  return `${ctx.tenant}:${m[1]}`;
}
function cartOf(ctx) {
  const who = principal(ctx);
  if (!carts.has(who)) carts.set(who, new Map());
  return { who, lines: carts.get(who) };
}
function cartView({ who, lines }) {
  const items = [...lines].map(([pid, quantity]) => {
    const product = products.find((p) => p.id === pid);
    return { product, quantity, unitPrice: product.price, lineTotal: money(cents(product.price) * quantity) };
  });
  return {
    id: `cart-${who}`,
    items,
    itemCount: items.reduce((n, it) => n + it.quantity, 0),
    total: money(items.reduce((n, it) => n + cents(it.lineTotal), 0)),
  };
}
function findProduct(id) {
  const p = products.find((x) => x.id === id);
  if (!p) throw new GraphQLError(`product ${id} not found`, { extensions: { code: 'NOT_FOUND' } });
  return p;
}
function publish(saga) {
  for (const fn of listeners.get(saga.id) || []) fn(structuredClone(saga));
}
function runSaga(saga, lines, cart, token) {
  const names = ['RESERVE_STOCK', 'CHARGE_PAYMENT', 'CREATE_ORDER'];
  let i = 0;
  const next = () => {
    if (i > 0) saga.steps[i - 1].status = 'SUCCEEDED';
    if (i === 1 && token === 'tok_declined') {
      saga.steps[1].status = 'FAILED';
      saga.steps[1].error = 'card declined';
      saga.steps[0].status = 'COMPENSATED';
      saga.status = 'COMPENSATED';
      saga.error = 'payment declined';
      return publish(saga);
    }
    if (i === names.length) {
      saga.status = 'COMPLETED';
      saga.order = { id: `order-${saga.id}`, total: cart.total, status: 'COMPLETED' };
      for (const [pid, q] of lines) findProduct(pid).stock -= q;
      lines.clear();
      return publish(saga);
    }
    saga.status = 'RUNNING';
    saga.steps[i].status = 'RUNNING';
    saga.steps[i].attempts = 1;
    i += 1;
    publish(saga);
    setTimeout(next, STEP_MS);
  };
  setTimeout(next, STEP_MS);
}

const root = {
  products({ first, after, filter }) {
    const q = ((filter && filter.search) || '').toLowerCase();
    const all = products.filter((p) => !q || p.name.toLowerCase().includes(q));
    const start = after ? Number(Buffer.from(after, 'base64').toString()) + 1 : 0;
    const page = all.slice(start, start + first);
    const edges = page.map((node, k) => ({ cursor: Buffer.from(String(start + k)).toString('base64'), node }));
    return {
      edges,
      totalCount: all.length,
      pageInfo: {
        hasNextPage: start + first < all.length,
        hasPreviousPage: start > 0,
        startCursor: edges.length ? edges[0].cursor : null,
        endCursor: edges.length ? edges[edges.length - 1].cursor : null,
      },
    };
  },
  cart: (_a, ctx) => cartView(cartOf(ctx)),
  addToCart({ productId, quantity }, ctx) {
    const c = cartOf(ctx);
    const p = findProduct(productId);
    const q = (c.lines.get(productId) || 0) + quantity;
    if (q > p.stock) throw new GraphQLError('not enough stock', { extensions: { code: 'OUT_OF_STOCK' } });
    c.lines.set(productId, q);
    return cartView(c);
  },
  updateCartItem({ productId, quantity }, ctx) {
    const c = cartOf(ctx);
    findProduct(productId);
    if (quantity <= 0) c.lines.delete(productId);
    else c.lines.set(productId, quantity);
    return cartView(c);
  },
  removeFromCart({ productId }, ctx) {
    const c = cartOf(ctx);
    c.lines.delete(productId);
    return cartView(c);
  },
  clearCart(_a, ctx) {
    const c = cartOf(ctx);
    c.lines.clear();
    return cartView(c);
  },
  checkout({ input }, ctx) {
    const c = cartOf(ctx);
    if (!c.lines.size) throw new GraphQLError('cart is empty', { extensions: { code: 'BAD_USER_INPUT' } });
    const id = `saga-${sagas.size + 1}`;
    const saga = {
      id,
      status: 'PENDING',
      error: null,
      order: null,
      steps: ['RESERVE_STOCK', 'CHARGE_PAYMENT', 'CREATE_ORDER'].map((name) => ({ name, status: 'PENDING', attempts: 0, error: null })),
    };
    sagas.set(id, saga);
    runSaga(saga, c.lines, cartView(c), input.paymentToken);
    return structuredClone(saga);
  },
  saga: ({ id }) => sagas.get(id) || null,
  sagaUpdates({ id }, ctx) {
    if (!ctx.authorization) throw new GraphQLError('no Authorization in connectionParams', { extensions: { code: 'UNAUTHENTICATED' } });
    const saga = sagas.get(id);
    if (!saga) throw new GraphQLError(`saga ${id} not found`, { extensions: { code: 'NOT_FOUND' } });
    const queue = [structuredClone(saga)];
    let wake = null;
    const fn = (s) => {
      queue.push(s);
      if (wake) wake();
    };
    if (!listeners.has(id)) listeners.set(id, new Set());
    listeners.get(id).add(fn);
    return (async function* stream() {
      try {
        for (;;) {
          while (queue.length) {
            const s = queue.shift();
            yield { sagaUpdates: s };
            if (['COMPLETED', 'COMPENSATED', 'FAILED'].includes(s.status)) return;
          }
          await new Promise((r) => (wake = r));
          wake = null;
        }
      } finally {
        listeners.get(id).delete(fn);
      }
    })();
  },
};

async function serveStatic(req, res, url) {
  let rel = null;
  const p = url.pathname;
  if (p === '/playground' || p === '/playground/') rel = 'index.html';
  else if (p === '/playground/shop' || p === '/playground/shop/') rel = 'shop/index.html';
  else if (p.startsWith('/playground/assets/')) rel = p.slice('/playground/'.length);
  if (!rel) return false;
  const file = normalize(join(DIST, rel));
  if (!file.startsWith(DIST)) return false;
  try {
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file)] || 'application/octet-stream',
      'cache-control': 'no-cache',
    });
    res.end(body);
  } catch {
    return false;
  }
  return true;
}

const log = [];
const server = createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (req.method === 'GET' && (await serveStatic(req, res, url))) return;
  if (url.pathname === '/graphql' && req.method === 'POST') {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw || '{}');
    const ctx = { authorization: req.headers.authorization || '', tenant: req.headers['x-tenant'] || 'default' };
    log.push({ op: body.operationName || '(anonymous)', auth: Boolean(ctx.authorization), tenant: req.headers['x-tenant'] || null });
    const result = await graphql({
      schema,
      source: body.query,
      variableValues: body.variables,
      operationName: body.operationName,
      rootValue: root,
      contextValue: ctx,
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(result));
    return;
  }
  if (url.pathname === '/__mock/log') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(log));
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});

const wss = new WebSocketServer({ server, path: '/graphql/ws' });
useServer(
  {
    schema,
    roots: { subscription: root, query: root, mutation: root },
    context: (c) => {
      const params = c.connectionParams || {};
      const key = Object.keys(params).find((k) => k.toLowerCase() === 'authorization');
      return { authorization: key ? params[key] : '', tenant: params['X-Tenant'] || 'default' };
    },
  },
  wss,
);

server.listen(PORT, HOST, () => {
  console.log(`mock server on http://${HOST}:${PORT}/playground (dist: ${DIST})`);
});
