// Same-origin endpoints, computed from where the page was loaded from, so the
// pages work behind any host, port or TLS terminator with no configuration.
export function httpEndpoint() {
  return `${window.location.origin}/graphql`;
}

export function wsEndpoint() {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/graphql/ws`;
}

// Reads ?token=... from the page URL (used by the browser test and by links
// printed next to `cargo run --release -- token ...`).
export function tokenFromUrl() {
  const value = new URLSearchParams(window.location.search).get('token');
  return value && value.trim() ? value.trim() : null;
}
