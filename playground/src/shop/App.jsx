import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Provider, useClient, useMutation, useQuery, useSubscription } from 'urql';
import { errorText, makeClient, sessionApi } from './client.js';
import {
  ADD_TO_CART,
  CART,
  CHECKOUT,
  CLEAR_CART,
  PRODUCTS,
  REFRESH_SESSION,
  REMOVE_FROM_CART,
  SAGA,
  SAGA_UPDATES,
  SIGN_IN,
  SIGN_OUT,
  SIGN_UP,
  STEP_NAMES,
  TERMINAL_SAGA_STATUSES,
  UPDATE_CART_ITEM,
} from './operations.js';

const SESSION_KEY = 'commerce-shop.session';
const CART_TOKEN_KEY = 'commerce-shop.cart-token';
const TENANT_KEY = 'commerce-shop.tenant';
const PAGE_SIZE = 12;
// The access token is renewed when 80 % of what was left of its life has passed.
const REFRESH_AT = 0.8;

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
    if (value === null || value === '') window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    /* private mode: keep it in memory only */
  }
}

function storedSession() {
  try {
    const session = JSON.parse(readStored(SESSION_KEY, 'null'));
    return session && session.accessToken && session.refreshToken ? session : null;
  } catch {
    return null;
  }
}

function useDebounced(value, ms) {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return debounced;
}

// Who is shopping: a signed-in customer (session), a guest (cart token), or nobody
// yet. Sign-in and sign-up send the guest's cart token, so the server merges the
// guest cart into the customer's; the token is spent then.
export function App() {
  const [tenantDraft, setTenantDraft] = useState(() => readStored(TENANT_KEY, 'default'));
  const tenant = useDebounced(tenantDraft.trim() || 'default', 400);
  const [session, setSession] = useState(storedSession);
  const [cartToken, setCartToken] = useState(() => readStored(CART_TOKEN_KEY, ''));
  const [authError, setAuthError] = useState(null);
  const [authBusy, setAuthBusy] = useState(false);

  useEffect(() => store(TENANT_KEY, tenant), [tenant]);
  useEffect(() => store(SESSION_KEY, session ? JSON.stringify(session) : null), [session]);
  useEffect(() => store(CART_TOKEN_KEY, cartToken || null), [cartToken]);

  // Renews the access token before it expires (the refresh token is single-use:
  // each renewal stores the next one).
  useEffect(() => {
    if (!session) return undefined;
    const left = Date.parse(session.accessTokenExpiresAt) - Date.now();
    const delay = Math.max(0, Math.floor(left * REFRESH_AT));
    const timer = setTimeout(async () => {
      try {
        const next = await sessionApi(REFRESH_SESSION, { refreshToken: session.refreshToken }, 'refreshSession', { tenant });
        setSession(next);
      } catch (err) {
        setSession(null);
        setAuthError(`Signed out: ${err.message}`);
      }
    }, delay);
    return () => clearTimeout(timer);
  }, [session, tenant]);

  const authenticate = useCallback(
    async (mode, { email, password, name }) => {
      setAuthError(null);
      setAuthBusy(true);
      const options = { tenant, cartToken: cartToken || undefined };
      try {
        const next =
          mode === 'signUp'
            ? await sessionApi(SIGN_UP, { input: { email, name, password } }, 'signUp', options)
            : await sessionApi(SIGN_IN, { email, password }, 'signIn', options);
        setCartToken('');
        setSession(next);
      } catch (err) {
        // An expired guest cart cannot be merged: forget it; the next try signs in.
        if (cartToken && /cart token/i.test(err.message)) setCartToken('');
        setAuthError(err.message);
      } finally {
        setAuthBusy(false);
      }
    },
    [tenant, cartToken],
  );

  const signOut = useCallback(async () => {
    const refreshToken = session && session.refreshToken;
    setSession(null);
    setAuthError(null);
    if (!refreshToken) return;
    try {
      await sessionApi(SIGN_OUT, { refreshToken }, 'signOut', { tenant });
    } catch (err) {
      setAuthError(`Sign-out: ${err.message}`);
    }
  }, [session, tenant]);

  const accessToken = session ? session.accessToken : '';
  const guestToken = accessToken ? '' : cartToken;
  const connection = useMemo(() => makeClient(accessToken, tenant, guestToken), [accessToken, tenant, guestToken]);
  useEffect(() => () => connection.dispose(), [connection]);
  const shopper = accessToken ? 'customer' : guestToken ? 'guest' : 'visitor';

  return (
    <div className="shop">
      <header className="topbar">
        <h1>
          Demo shop <small>GraphQL + urql</small>
        </h1>
        <Account
          session={session}
          busy={authBusy}
          error={authError}
          onSignIn={(form) => authenticate('signIn', form)}
          onSignUp={(form) => authenticate('signUp', form)}
          onSignOut={signOut}
        />
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
        <Shop
          key={`${tenant}\u0000${accessToken}\u0000${guestToken}`}
          shopper={shopper}
          onCartToken={setCartToken}
        />
      </Provider>
    </div>
  );
}

function Account({ session, busy, error, onSignIn, onSignUp, onSignOut }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  if (session) {
    return (
      <div className="account" data-testid="account" data-signed-in="true">
        <span data-testid="signed-in-as">
          {session.customer.name} &lt;{session.customer.email}&gt;
        </span>
        <button type="button" className="secondary" data-testid="sign-out-button" onClick={onSignOut}>
          Sign out
        </button>
        {error && <span className="auth-error" data-testid="auth-error">{error}</span>}
      </div>
    );
  }
  const form = { email: email.trim(), password, name: name.trim() };
  const ready = form.email && password;
  return (
    <form
      className="account"
      data-testid="account"
      data-signed-in="false"
      onSubmit={(e) => {
        e.preventDefault();
        if (ready) onSignIn(form);
      }}
    >
      <input data-testid="auth-email" type="email" placeholder="e-mail" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} />
      <input
        data-testid="auth-password"
        type="password"
        placeholder="password (8+)"
        autoComplete="current-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
      />
      <input data-testid="auth-name" type="text" placeholder="name (sign-up)" value={name} onChange={(e) => setName(e.target.value)} />
      <button type="submit" data-testid="sign-in-button" disabled={!ready || busy}>
        Sign in
      </button>
      <button type="button" className="secondary" data-testid="sign-up-button" disabled={!ready || !form.name || busy} onClick={() => onSignUp(form)}>
        Sign up
      </button>
      {error && <span className="auth-error" data-testid="auth-error">{error}</span>}
    </form>
  );
}

function Shop({ shopper, onCartToken }) {
  const signedIn = shopper === 'customer';
  const hasCart = shopper !== 'visitor';
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
  const [cartResult, refetchCart] = useQuery({ query: CART, pause: !hasCart });
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
      // The first anonymous add created a guest cart: from now on the page is a guest.
      if (result.data[field].cartToken) onCartToken(result.data[field].cartToken);
    }
    return result;
  }, [setActionError, onCartToken]);

  // A guest cart that expired (or was merged elsewhere): start over without it.
  useEffect(() => {
    const stale = shopper === 'guest' && cartResult.error && /cart token/i.test(errorText(cartResult.error) || '');
    if (stale) onCartToken('');
  }, [shopper, cartResult.error, onCartToken]);

  const onCheckout = async (email) => {
    setActionError(null);
    setSaga(null);
    const result = await checkout({ email: signedIn ? null : email });
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
        shopper={shopper}
        adding={addState.fetching}
        onAdd={(productId) => runCartMutation(addToCart, { productId }, 'addToCart')}
        report={report}
      />
      <aside className="side">
        <CartPanel
          cart={cart}
          shopper={shopper}
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

function Products({ epoch, shopper, adding, onAdd, report }) {
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
      {shopper !== 'customer' && (
        <p className="hint" data-testid="guest-hint">
          {shopper === 'guest'
            ? 'Shopping as a guest: sign in or up to keep this cart, or check out with your e-mail.'
            : 'Browsing anonymously: add to cart to shop as a guest, or sign in.'}
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
              disabled={node.stock <= 0 || adding}
              title="Add one to the cart"
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

function CartPanel({ cart, shopper, loading, busy, onInc, onDec, onRemove, onClear, onCheckout }) {
  const items = cart ? cart.items : [];
  const count = cart ? cart.itemCount : 0;
  const guest = shopper === 'guest';
  const [email, setEmail] = useState('');
  return (
    <section className="panel cart" data-testid="cart" data-ready={cart ? 'true' : 'false'}>
      <h2>
        Cart <span className="badge" data-testid="cart-count">{count}</span>
      </h2>
      {shopper === 'visitor' && <p className="muted">Your cart is empty.</p>}
      {loading && <p className="muted">Loading…</p>}
      {shopper !== 'visitor' && cart && items.length === 0 && <p className="muted">Your cart is empty.</p>}
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
      {guest && (
        <label className="field guest-email">
          <span>E-mail for a guest checkout</span>
          <input data-testid="guest-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
      )}
      <div className="actions">
        <button type="button" className="secondary" data-testid="clear-cart" disabled={!count || busy} onClick={onClear}>
          Clear cart
        </button>
        <button
          type="button"
          className="primary"
          data-testid="checkout-button"
          disabled={shopper === 'visitor' || !count || busy || (guest && !email.trim())}
          onClick={() => onCheckout(email.trim())}
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
