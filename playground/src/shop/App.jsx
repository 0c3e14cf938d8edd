import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Provider, useClient, useMutation, useQuery, useSubscription } from 'urql';
import { tokenFromUrl } from '../endpoints.js';
import { errorText, makeClient } from './client.js';
import {
  ADD_TO_CART,
  CART,
  CHECKOUT,
  CLEAR_CART,
  PRODUCTS,
  REMOVE_FROM_CART,
  SAGA,
  SAGA_UPDATES,
  STEP_NAMES,
  TERMINAL_SAGA_STATUSES,
  UPDATE_CART_ITEM,
} from './operations.js';

const TOKEN_KEY = 'commerce-shop.token';
const TENANT_KEY = 'commerce-shop.tenant';
const PAGE_SIZE = 12;

function readStored(key, fallback) {
  try {
    const value = window.localStorage.getItem(key);
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    /* private mode: keep it in memory only */
  }
}

function initialToken() {
  const fromUrl = tokenFromUrl();
  if (fromUrl) {
    store(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return readStored(TOKEN_KEY, '');
}

function useDebounced(value, ms) {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return debounced;
}

export function App() {
  const [tokenDraft, setTokenDraft] = useState(initialToken);
  const [tenantDraft, setTenantDraft] = useState(() => readStored(TENANT_KEY, 'default'));
  const token = useDebounced(tokenDraft.trim(), 400);
  const tenant = useDebounced(tenantDraft.trim() || 'default', 400);

  useEffect(() => store(TOKEN_KEY, token), [token]);
  useEffect(() => store(TENANT_KEY, tenant), [tenant]);

  const connection = useMemo(() => makeClient(token, tenant), [token, tenant]);
  useEffect(() => () => connection.dispose(), [connection]);

  return (
    <div className="shop">
      <header className="topbar">
        <h1>
          Demo shop <small>GraphQL + urql</small>
        </h1>
        <label className="field">
          <span>Token</span>
          <input
            id="token-input"
            data-testid="token-input"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="CUSTOMER JWT (cargo run --release -- token --tenant default --sub 1 --role CUSTOMER)"
            value={tokenDraft}
            onChange={(e) => setTokenDraft(e.target.value)}
          />
        </label>
        <label className="field field-small">
          <span>Tenant</span>
          <input
            id="tenant-input"
            data-testid="tenant-input"
            type="text"
            spellCheck={false}
            value={tenantDraft}
            onChange={(e) => setTenantDraft(e.target.value)}
          />
        </label>
        <a className="link" href="../">
          GraphiQL
        </a>
      </header>
      <Provider value={connection.client}>
        <Shop key={`${tenant}\u0000${token}`} signedIn={Boolean(token)} />
      </Provider>
    </div>
  );
}

function Shop({ signedIn }) {
  // Every GraphQL error of the page ends up in the one data-testid="error" box.
  const [errors, setErrors] = useState({});
  const report = useCallback(
    (source, message) =>
      setErrors((prev) => ((prev[source] || null) === (message || null) ? prev : { ...prev, [source]: message || null })),
    [],
  );
  const setActionError = useCallback((message) => report('action', message), [report]);
  const [cart, setCart] = useState(null);
  const [saga, setSaga] = useState(null);
  const [productsEpoch, setProductsEpoch] = useState(0);

  // ----- cart -----
  const [cartResult, refetchCart] = useQuery({ query: CART, pause: !signedIn });
  useEffect(() => {
    if (cartResult.data && cartResult.data.cart) setCart(cartResult.data.cart);
  }, [cartResult.data]);

  const [addState, addToCart] = useMutation(ADD_TO_CART);
  const [, updateCartItem] = useMutation(UPDATE_CART_ITEM);
  const [, removeFromCart] = useMutation(REMOVE_FROM_CART);
  const [, clearCart] = useMutation(CLEAR_CART);
  const [checkoutState, checkout] = useMutation(CHECKOUT);

  const runCartMutation = useCallback(async (execute, variables, field) => {
    setActionError(null);
    const result = await execute(variables);
    if (result.error) {
      setActionError(errorText(result.error));
    } else if (result.data && result.data[field]) {
      setCart(result.data[field]);
    }
    return result;
  }, [setActionError]);

  const onCheckout = async () => {
    setActionError(null);
    setSaga(null);
    const result = await checkout({});
    if (result.error) {
      setActionError(errorText(result.error));
    } else if (result.data && result.data.checkout) {
      setSaga({ ...result.data.checkout, steps: [] });
    }
  };

  // When the saga ends, the cart (cleared on success) and stock have changed.
  const sagaDone = saga && TERMINAL_SAGA_STATUSES.includes(saga.status);
  useEffect(() => {
    if (!sagaDone) return;
    refetchCart({ requestPolicy: 'network-only' });
    setProductsEpoch((n) => n + 1);
  }, [sagaDone, refetchCart]);

  useEffect(() => report('cart', errorText(cartResult.error)), [cartResult.error, report]);

  return (
    <main className="layout">
      <ErrorBox messages={['action', 'cart', 'products', 'saga'].map((k) => errors[k])} />
      <Products
        epoch={productsEpoch}
        signedIn={signedIn}
        adding={addState.fetching}
        onAdd={(productId) => runCartMutation(addToCart, { productId }, 'addToCart')}
        report={report}
      />
      <aside className="side">
        <CartPanel
          cart={cart}
          signedIn={signedIn}
          loading={cartResult.fetching && !cart}
          busy={checkoutState.fetching || (saga && !sagaDone)}
          onInc={(item) =>
            runCartMutation(
              updateCartItem,
              { productId: item.product.id, quantity: item.quantity + 1 },
              'updateCartItem',
            )
          }
          onDec={(item) =>
            runCartMutation(
              updateCartItem,
              { productId: item.product.id, quantity: item.quantity - 1 },
              'updateCartItem',
            )
          }
          onRemove={(item) =>
            runCartMutation(removeFromCart, { productId: item.product.id }, 'removeFromCart')
          }
          onClear={() => runCartMutation(clearCart, {}, 'clearCart')}
          onCheckout={onCheckout}
        />
        {saga && <SagaPanel key={saga.id} initial={saga} onUpdate={setSaga} report={report} />}
      </aside>
    </main>
  );
}

function ErrorBox({ messages }) {
  const list = [...new Set(messages.filter(Boolean))];
  if (!list.length) return null;
  return (
    <div className="error" data-testid="error" role="alert">
      {list.map((m, i) => (
        <div key={i}>{m}</div>
      ))}
    </div>
  );
}

function Products({ epoch, signedIn, adding, onAdd, report }) {
  const [search, setSearch] = useState('');
  const debouncedSearch = useDebounced(search.trim(), 300);
  // Cursor stack: cursors[i] is the `after` of page i (null for the first page).
  const [cursors, setCursors] = useState([null]);
  const page = cursors.length - 1;

  useEffect(() => setCursors([null]), [debouncedSearch]);

  const variables = useMemo(
    () => ({
      first: PAGE_SIZE,
      after: cursors[page],
      filter: debouncedSearch ? { search: debouncedSearch } : null,
    }),
    [cursors, page, debouncedSearch],
  );
  const [result, refetch] = useQuery({ query: PRODUCTS, variables });
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    refetch({ requestPolicy: 'network-only' });
  }, [epoch, refetch]);

  useEffect(() => report('products', errorText(result.error)), [result.error, report]);

  const connection = result.data && result.data.products;
  const edges = connection ? connection.edges : [];

  return (
    <section className="products">
      <div className="toolbar">
        <input
          id="search-input"
          data-testid="search-input"
          type="search"
          placeholder="Search products…"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
        <span className="muted" data-testid="product-total">
          {connection ? `${connection.totalCount} products` : result.fetching ? 'Loading…' : ''}
        </span>
      </div>
      {!signedIn && (
        <p className="hint">
          Browsing anonymously. Paste a customer token above to use the cart and check out.
        </p>
      )}
      <div className="grid">
        {edges.map(({ cursor, node }) => (
          <article
            key={node.id}
            className="card"
            data-testid="product-card"
            data-product-id={node.id}
            data-cursor={cursor}
          >
            <h3 className="card-name">{node.name}</h3>
            <div className="card-price">${node.price}</div>
            <div className={node.stock > 0 ? 'stock' : 'stock out'}>
              {node.stock > 0 ? `${node.stock} in stock` : 'Out of stock'}
            </div>
            <button
              type="button"
              data-testid="add-to-cart"
              disabled={!signedIn || node.stock <= 0 || adding}
              title={signedIn ? 'Add one to the cart' : 'Set a token first'}
              onClick={() => onAdd(node.id)}
            >
              Add to cart
            </button>
          </article>
        ))}
        {connection && edges.length === 0 && <p className="muted">No product matches.</p>}
      </div>
      <div className="pager">
        <button
          type="button"
          data-testid="prev-page"
          disabled={page === 0 || result.fetching}
          onClick={() => setCursors((c) => c.slice(0, -1))}
        >
          ← Previous
        </button>
        <span className="muted" data-testid="page-number">
          Page {page + 1}
        </span>
        <button
          type="button"
          data-testid="next-page"
          disabled={!connection || !connection.pageInfo.hasNextPage || result.fetching}
          onClick={() => setCursors((c) => [...c, connection.pageInfo.endCursor])}
        >
          Next →
        </button>
      </div>
    </section>
  );
}

function CartPanel({ cart, signedIn, loading, busy, onInc, onDec, onRemove, onClear, onCheckout }) {
  const items = cart ? cart.items : [];
  const count = cart ? cart.itemCount : 0;
  return (
    <section className="panel cart" data-testid="cart" data-ready={cart ? 'true' : 'false'}>
      <h2>
        Cart <span className="badge" data-testid="cart-count">{count}</span>
      </h2>
      {!signedIn && <p className="muted">Sign in with a token to see your cart.</p>}
      {loading && <p className="muted">Loading…</p>}
      {signedIn && cart && items.length === 0 && <p className="muted">Your cart is empty.</p>}
      <ul className="lines">
        {items.map((item) => (
          <li key={item.product.id} data-testid="cart-item" data-product-id={item.product.id}>
            <div className="line-name">{item.product.name}</div>
            <div className="line-controls">
              <button type="button" data-testid="cart-dec" disabled={busy} onClick={() => onDec(item)} aria-label="One less">
                −
              </button>
              <span data-testid="cart-qty">{item.quantity}</span>
              <button type="button" data-testid="cart-inc" disabled={busy} onClick={() => onInc(item)} aria-label="One more">
                +
              </button>
              <span className="line-total">${item.lineTotal}</span>
              <button
                type="button"
                className="link-button"
                data-testid="cart-remove"
                disabled={busy}
                onClick={() => onRemove(item)}
              >
                Remove
              </button>
            </div>
          </li>
        ))}
      </ul>
      <div className="total">
        Total: $<span data-testid="cart-total">{cart ? cart.total : '0.00'}</span>
      </div>
      <div className="actions">
        <button type="button" className="secondary" data-testid="clear-cart" disabled={!count || busy} onClick={onClear}>
          Clear cart
        </button>
        <button
          type="button"
          className="primary"
          data-testid="checkout-button"
          disabled={!signedIn || !count || busy}
          onClick={onCheckout}
        >
          {busy ? 'Checking out…' : 'Checkout'}
        </button>
      </div>
    </section>
  );
}

function SagaPanel({ initial, onUpdate, report }) {
  const client = useClient();
  const [saga, setSaga] = useState(initial);
  const [polling, setPolling] = useState(false);
  const [pollError, setPollError] = useState(null);
  const done = TERMINAL_SAGA_STATUSES.includes(saga.status);

  const [sub] = useSubscription(
    { query: SAGA_UPDATES, variables: { id: initial.id }, pause: polling },
    (_prev, data) => data,
  );

  useEffect(() => {
    const update = sub.data && sub.data.sagaUpdates;
    if (update) setSaga(update);
  }, [sub.data]);

  // If the WebSocket cannot be used (a proxy that drops upgrades, say), poll.
  useEffect(() => {
    if (sub.error && !done) setPolling(true);
  }, [sub.error, done]);

  useEffect(() => {
    if (!polling || done) return undefined;
    let stopped = false;
    const tick = async () => {
      const r = await client.query(SAGA, { id: initial.id }, { requestPolicy: 'network-only' }).toPromise();
      if (stopped) return;
      if (r.error) setPollError(errorText(r.error));
      else if (r.data && r.data.saga) setSaga(r.data.saga);
    };
    tick();
    const t = setInterval(tick, 1000);
    return () => {
      stopped = true;
      clearInterval(t);
    };
  }, [polling, done, client, initial.id]);

  useEffect(() => onUpdate(saga), [saga, onUpdate]);
  // A failed WebSocket is not an error yet (the panel falls back to polling).
  const wsError = sub.error && !sub.error.networkError ? errorText(sub.error) : null;
  useEffect(() => report('saga', pollError || wsError), [pollError, wsError, report]);

  const steps = STEP_NAMES.map(
    (name) =>
      (saga.steps || []).find((s) => s.name === name) || { name, status: 'PENDING', attempts: 0, error: null },
  );

  return (
    <section className="panel saga" data-testid="saga" data-saga-id={saga.id}>
      <h2>Checkout</h2>
      <div className="saga-head">
        Saga <code>{saga.id}</code>:{' '}
        <strong className={`status status-${saga.status}`} data-testid="saga-status">
          {saga.status}
        </strong>
        {polling && !done && <span className="muted"> (polling)</span>}
      </div>
      <ol className="steps">
        {steps.map((step) => (
          <li
            key={step.name}
            className={`step status-${step.status}`}
            data-testid={`saga-step-${step.name}`}
            data-status={step.status}
          >
            <span className="dot" />
            <span className="step-name">{step.name.replace(/_/g, ' ').toLowerCase()}</span>
            <span className="step-status">{step.status}</span>
            {step.attempts > 1 && <span className="muted"> ×{step.attempts}</span>}
            {step.error && <div className="step-error">{step.error}</div>}
          </li>
        ))}
      </ol>
      {saga.error && <div className="saga-error">{saga.error}</div>}
      {saga.order && (
        <div className="order" data-testid="order">
          Order <code>{saga.order.id}</code> — ${saga.order.total} ({saga.order.status})
        </div>
      )}
    </section>
  );
}
