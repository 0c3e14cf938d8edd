import { Client, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import { httpEndpoint, wsEndpoint } from '../endpoints.js';

// A signed-in shopper sends its access token; a guest sends its cart token
// (X-Cart-Token), which the server gave in addToCart's `cartToken`.
export function authHeaders(token, tenant, cartToken) {
  const headers = { 'X-Tenant': tenant || 'default' };
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (cartToken) headers['X-Cart-Token'] = cartToken;
  return headers;
}

// One account mutation by plain fetch; resolves to `data[field]` or throws an
// Error whose `code` is the GraphQL error code.
export async function sessionApi(query, variables, field, { tenant, cartToken } = {}) {
  const response = await fetch(httpEndpoint(), {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
      ...authHeaders(null, tenant, cartToken),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json().catch(() => ({}));
  const error = body.errors && body.errors[0];
  if (error || !body.data || body.data[field] === undefined) {
    const code = error && error.extensions && error.extensions.code;
    const failure = new Error(error ? (code ? `${code}: ${error.message}` : error.message) : `HTTP ${response.status}`);
    failure.code = code;
    throw failure;
  }
  return body.data[field];
}

// One urql client per (token, tenant, cart token): HTTP requests carry
// Authorization (or X-Cart-Token) and X-Tenant headers; the WebSocket (graphql-transport-ws, /graphql/ws) carries the
// same values in the connection_init payload (connectionParams).
//
// No document cache: every query goes to the server, which has its own cache
// with read-your-writes, and mutations return the fresh cart. Queries use POST
// (preferGetMethod: false) so that the browser's HTTP cache never answers a
// private GET (the cart) with a stale copy.
export function makeClient(token, tenant, cartToken) {
  const headers = authHeaders(token, tenant, cartToken);
  const ws = createWsClient({
    url: wsEndpoint(),
    connectionParams: () => ({ ...headers }),
    lazy: true,
    retryAttempts: 2,
  });
  const client = new Client({
    url: httpEndpoint(),
    preferGetMethod: false,
    requestPolicy: 'network-only',
    fetchOptions: () => ({ headers: { ...headers } }),
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return { client, dispose: () => ws.dispose() };
}

// "[GraphQL] message" -> "CODE: message", one line per error.
export function errorText(error) {
  if (!error) return null;
  if (error.graphQLErrors && error.graphQLErrors.length) {
    return error.graphQLErrors
      .map((e) => {
        const code = e.extensions && e.extensions.code;
        return code ? `${code}: ${e.message}` : e.message;
      })
      .join('\n');
  }
  if (error.networkError) return `Network error: ${error.networkError.message || error.networkError}`;
  return error.message || String(error);
}
