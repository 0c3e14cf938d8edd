// Browser test of /playground (GraphiQL) and /playground/shop (urql storefront)
// against a running server. Uses the system Chromium; never downloads a browser.
//
//   BASE_URL=http://127.0.0.1:8000 ARTIFACTS=/tmp/artifacts node playground/tests/browser.mjs
//
// The shop signs up a new customer itself (no JWT needed): sign-up -> add to cart ->
// sign out -> guest cart -> sign in (merged) -> checkout -> COMPLETED.
// Env: BASE_URL (default http://127.0.0.1:8000), TOKEN (ignored; kept for old callers),
// ARTIFACTS (screenshot dir, default ./artifacts), CHROMIUM (default
// /usr/bin/chromium), SAGA_TIMEOUT_MS (default 30000).
// Exit 0 and "N passed, 0 failed" on success; non-zero with the reasons otherwise.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const ARTIFACTS = resolve(process.env.ARTIFACTS || 'artifacts');
const SAGA_TIMEOUT_MS = Number(process.env.SAGA_TIMEOUT_MS || 30000);
const STEP_TIMEOUT_MS = 15000;
const BASE_HOST = new URL(BASE_URL).host;

const results = [];
const requests = [];
const pageErrors = [];

async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   - ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    results.push({ name, ok: false, error: err });
    console.log(`FAIL - ${name}: ${err && err.message ? err.message.split('\n')[0] : err}`);
    if (err && err.message && err.message.includes('\n')) console.log(err.message.split('\n').slice(1, 12).join('\n'));
  }
}

function watch(page) {
  page.on('request', (req) => requests.push(req.url()));
  page.on('websocket', (ws) => requests.push(ws.url()));
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
}

async function testPlayground(context) {
  const page = await context.newPage();
  watch(page);
  const query = '{ products(first: 3) { totalCount edges { node { name } } } }';
  await page.goto(`${BASE_URL}/playground`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout: STEP_TIMEOUT_MS });
  // GraphiQL 3 uses CodeMirror 5: set the text through its API, then run.
  await page.evaluate((q) => {
    const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    cm.setValue(q);
    cm.focus();
  }, query);
  // GraphiQL derives the operation name from the editor after a short debounce;
  // let it catch up so the run button does not send the previous operation name.
  await page.waitForTimeout(1000);
  await page.click('.graphiql-execute-button', { timeout: STEP_TIMEOUT_MS });
  try {
    await page.waitForFunction(
      () => {
        const el = document.querySelector('.result-window .CodeMirror');
        const text = el && el.CodeMirror ? el.CodeMirror.getValue() : (document.querySelector('.result-window') || {}).textContent || '';
        return text.includes('"totalCount"');
      },
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
  } finally {
    await page.screenshot({ path: join(ARTIFACTS, 'playground.png') }).catch(() => {});
  }
  const response = await page.evaluate(() => {
    const el = document.querySelector('.result-window .CodeMirror');
    return el && el.CodeMirror ? el.CodeMirror.getValue() : '';
  });
  if (/"errors"\s*:/.test(response)) throw new Error(`GraphiQL response carries errors:\n${response.slice(0, 800)}`);
  await page.close();
}

async function text(page, testid) {
  const el = await page.$(`[data-testid="${testid}"]`);
  return el ? (await el.textContent()).trim() : null;
}

async function cartCount(page) {
  return Number(await text(page, 'cart-count')) || 0;
}

async function waitCartCount(page, expected, description, failWith) {
  await page
    .waitForFunction(
      (n) => Number((document.querySelector('[data-testid="cart-count"]') || {}).textContent) === n,
      expected,
      { timeout: STEP_TIMEOUT_MS },
    )
    .catch(async () => failWith(`cart-count ${await cartCount(page)}, expected ${expected} ${description}`));
}

async function addFirstProduct(page, failWith) {
  const add = page.locator('[data-testid="product-card"] [data-testid="add-to-cart"]:not([disabled])').first();
  await add.click({ timeout: STEP_TIMEOUT_MS }).catch(() => failWith('no enabled add-to-cart button'));
}

async function waitSignedIn(page, signedIn, failWith) {
  await page
    .waitForSelector(`[data-testid="account"][data-signed-in="${signedIn}"]`, { timeout: STEP_TIMEOUT_MS })
    .catch(() => failWith(signedIn ? 'the page did not sign in' : 'the page did not sign out'));
}

// sign-up -> add to cart -> sign out -> guest cart -> sign in (merged) -> checkout -> COMPLETED
async function testShop(context) {
  const page = await context.newPage();
  watch(page);
  const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});
  const failWith = async (message) => {
    const shown = [await text(page, 'error'), await text(page, 'auth-error')].filter(Boolean).join('; ');
    throw new Error(shown ? `${message}; page shows: ${shown}` : message);
  };
  const email = `shopper-${Date.now()}@example.com`;
  const password = 'correct horse battery';
  try {
    await page.goto(`${BASE_URL}/playground/shop`, { waitUntil: 'domcontentloaded' });
    await page
      .waitForSelector('[data-testid="product-card"]', { timeout: STEP_TIMEOUT_MS })
      .catch(() => failWith('no product card appeared'));

    // Sign up: no pasted JWT.
    await page.fill('[data-testid="auth-email"]', email);
    await page.fill('[data-testid="auth-password"]', password);
    await page.fill('[data-testid="auth-name"]', 'Browser Shopper');
    await page.click('[data-testid="sign-up-button"]:not([disabled])', { timeout: STEP_TIMEOUT_MS });
    await waitSignedIn(page, true, failWith);
    await page
      .waitForSelector('[data-testid="cart"][data-ready="true"]', { timeout: STEP_TIMEOUT_MS })
      .catch(() => failWith('the cart did not load'));
    await addFirstProduct(page, failWith);
    await waitCartCount(page, 1, 'after the first add', failWith);
    await shot('shop-1-signed-up');

    // Sign out: the customer's cart is not shown any more.
    await page.click('[data-testid="sign-out-button"]', { timeout: STEP_TIMEOUT_MS });
    await waitSignedIn(page, false, failWith);
    await waitCartCount(page, 0, 'once signed out', failWith);

    // Shop as a guest: the first add creates a guest cart (its token kept by the page).
    await page.waitForSelector('[data-testid="product-card"]', { timeout: STEP_TIMEOUT_MS });
    await addFirstProduct(page, failWith);
    await waitCartCount(page, 1, 'in the guest cart', failWith);
    const hint = (await text(page, 'guest-hint')) || '';
    if (!/guest/i.test(hint)) await failWith(`the page does not say it shops as a guest (${hint})`);
    await shot('shop-2-guest-cart');

    // Sign in: the guest cart is merged into the customer's (1 + 1).
    await page.fill('[data-testid="auth-email"]', email);
    await page.fill('[data-testid="auth-password"]', password);
    await page.click('[data-testid="sign-in-button"]:not([disabled])', { timeout: STEP_TIMEOUT_MS });
    await waitSignedIn(page, true, failWith);
    await waitCartCount(page, 2, 'after the merge', failWith);
    await shot('shop-3-merged');

    await page.click('[data-testid="checkout-button"]:not([disabled])', { timeout: STEP_TIMEOUT_MS });
    await page
      .waitForSelector('[data-testid="saga-status"]', { timeout: STEP_TIMEOUT_MS })
      .catch(() => failWith('checkout returned no saga'));
    const status = await page
      .waitForFunction(
        () => {
          const s = (document.querySelector('[data-testid="saga-status"]') || {}).textContent;
          return ['COMPLETED', 'COMPENSATED', 'FAILED'].includes(s) ? s : false;
        },
        null,
        { timeout: SAGA_TIMEOUT_MS, polling: 100 },
      )
      .then((h) => h.jsonValue())
      .catch(async () => failWith(`saga not finished after ${SAGA_TIMEOUT_MS} ms (status ${await text(page, 'saga-status')})`));
    if (status !== 'COMPLETED') await failWith(`saga ended ${status}`);
    for (const step of ['RESERVE_STOCK', 'CHARGE_PAYMENT', 'CREATE_ORDER']) {
      const s = await page.getAttribute(`[data-testid="saga-step-${step}"]`, 'data-status');
      if (s !== 'SUCCEEDED') await failWith(`step ${step} is ${s}, expected SUCCEEDED`);
    }
    // The saga clears the cart; the page refetches it.
    await waitCartCount(page, 0, 'after the completed checkout', failWith);
  } finally {
    await shot('shop');
    await page.close();
  }
}

function testSameHost() {
  const foreign = requests.filter((u) => {
    let url;
    try {
      url = new URL(u);
    } catch {
      return true;
    }
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) return false; // data:, blob:, about:
    return url.host !== BASE_HOST;
  });
  if (!requests.length) throw new Error('no request was recorded');
  if (foreign.length) throw new Error(`requests to other hosts than ${BASE_HOST}:\n${[...new Set(foreign)].join('\n')}`);
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await check('playground: GraphiQL runs a products query', () => testPlayground(context));
    await check('shop: sign-up, cart, sign-out, guest cart, sign-in merges, checkout COMPLETED', () => testShop(context));
    await check(`every request went to ${BASE_HOST}`, () => testSameHost());
    await context.close();
  } finally {
    await browser.close();
  }
  if (pageErrors.length) console.log(`page errors (not failures):\n  ${pageErrors.join('\n  ')}`);
  console.log(`${requests.length} requests recorded; screenshots in ${ARTIFACTS}`);
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(`browser test crashed: ${err && err.stack ? err.stack : err}`);
  console.log('0 passed, 1 failed');
  process.exit(2);
});
