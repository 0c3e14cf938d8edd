// Example operations opened as tabs on first visit (GraphiQL keeps the user's
// own tabs in localStorage afterwards).
const AUTH_HELP = `# Catalog queries work anonymously (tenant: X-Tenant).
# Carts, checkout and sagas need a customer token:
#   cargo run --release -- token --tenant default \\
#     --sub 1 --role CUSTOMER
# Put it in the Headers pane below:
#   "Authorization": "Bearer <token>"
# or open /playground?token=<token>
`;

export const DEFAULT_TABS = [
  {
    query: `${AUTH_HELP}
query BrowseProducts($first: Int = 10, $after: String, $search: String) {
  products(first: $first, after: $after, filter: { search: $search }) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id
        name
        price
        stock
        category { name }
      }
    }
  }
}
`,
    variables: JSON.stringify({ first: 10 }, null, 2),
  },
  {
    query: `# Put a product in the caller's cart (needs a CUSTOMER token).
# Take a product id from the "BrowseProducts" tab.
mutation AddToCart($productId: ID!, $quantity: Int! = 1) {
  addToCart(productId: $productId, quantity: $quantity) {
    id
    itemCount
    total
    items {
      product { id name }
      quantity
      unitPrice
      lineTotal
    }
  }
}

# Set a quantity (0 removes the line).
mutation UpdateCartItem($productId: ID!, $quantity: Int!) {
  updateCartItem(productId: $productId, quantity: $quantity) {
    id itemCount total
    items { product { id name } quantity lineTotal }
  }
}

query MyCart {
  cart { id itemCount total items { product { id name } quantity unitPrice lineTotal } }
}
`,
    variables: JSON.stringify({ productId: '1', quantity: 1 }, null, 2),
  },
  {
    query: `# Turn the cart into an order. Returns the saga at once (PENDING);
# copy its id into the "WatchSaga" tab to follow it live.
# paymentToken "tok_declined" makes the payment fail and the saga compensate.
mutation Checkout {
  checkout(input: { paymentMethod: CARD, paymentToken: "tok_visa" }) {
    id
    status
  }
}
`,
  },
  {
    query: `# Live saga progress over WebSocket (graphql-transport-ws at /graphql/ws).
# The current state arrives at once, then every transition; the stream ends
# when the saga is COMPLETED, COMPENSATED or FAILED.
subscription WatchSaga($id: ID!) {
  sagaUpdates(id: $id) {
    id
    status
    error
    steps { name status attempts error }
    order { id total status }
  }
}
`,
    variables: JSON.stringify({ id: 'paste-the-saga-id-from-Checkout' }, null, 2),
  },
];
