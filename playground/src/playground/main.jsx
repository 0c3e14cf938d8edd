import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import 'graphiql/graphiql.css';
import { createRoot } from 'react-dom/client';
import { httpEndpoint, tokenFromUrl, wsEndpoint } from '../endpoints.js';
import { DEFAULT_TABS } from './tabs.js';
import './playground.css';

// Drops header values that would only make the server reject the request:
// an empty Authorization, a bare "Bearer", or the "<paste a token ...>"
// placeholder. Everything else is sent as typed.
export function cleanHeaders(headers) {
  const out = {};
  for (const [key, raw] of Object.entries(headers || {})) {
    if (raw === undefined || raw === null) continue;
    const value = String(raw).trim();
    if (key.toLowerCase() === 'authorization') {
      if (!value || /^bearer$/i.test(value) || value.includes('<')) continue;
    }
    if (!value) continue;
    out[key] = value;
  }
  return out;
}

// HTTP: POST /graphql (same origin). Subscriptions: graphql-transport-ws at
// /graphql/ws. For every subscription @graphiql/toolkit opens a graphql-ws client
// whose connectionParams are `wsConnectionParams` merged with the headers of the
// header editor, so the Authorization header reaches connection_init as well.
const baseFetcher = createGraphiQLFetcher({
  url: httpEndpoint(),
  subscriptionUrl: wsEndpoint(),
  enableIncrementalDelivery: false,
  headers: { accept: 'application/graphql-response+json, application/json' },
});

const fetcher = (params, opts) =>
  baseFetcher(params, { ...(opts || {}), headers: cleanHeaders(opts && opts.headers) });

const token = tokenFromUrl();
const defaultHeaders = JSON.stringify(
  { Authorization: token ? `Bearer ${token}` : '', 'X-Tenant': 'default' },
  null,
  2,
);

function Playground() {
  return (
    <GraphiQL
      fetcher={fetcher}
      defaultTabs={DEFAULT_TABS.map((tab) => ({ ...tab, headers: defaultHeaders }))}
      defaultHeaders={defaultHeaders}
      // ?token=... forces the header editor to carry that token.
      headers={token ? defaultHeaders : undefined}
      defaultEditorToolsVisibility="headers"
      shouldPersistHeaders={false}
    >
      <GraphiQL.Logo>
        Commerce <em>GraphQL</em>
      </GraphiQL.Logo>
    </GraphiQL>
  );
}

createRoot(document.getElementById('graphiql')).render(<Playground />);
