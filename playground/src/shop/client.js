import { Client, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import { httpEndpoint, wsEndpoint } from '../endpoints.js';

export function authHeaders(token, tenant) {
  const headers = { 'X-Tenant': tenant || 'default' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

// One urql client per (token, tenant): HTTP requests carry Authorization and
// X-Tenant headers; the WebSocket (graphql-transport-ws, /graphql/ws) carries the
// same values in the connection_init payload (connectionParams).
//
// No document cache: every query goes to the server, which has its own cache
// with read-your-writes, and mutations return the fresh cart. Queries use POST
// (preferGetMethod: false) so that the browser's HTTP cache never answers a
// private GET (the cart) with a stale copy.
export function makeClient(token, tenant) {
  const headers = authHeaders(token, tenant);
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
