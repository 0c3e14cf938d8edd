// GraphQL documents of the demo shop (names follow SPEC.md section 2).
import { gql } from '@urql/core';

export const CART_FIELDS = gql`
  fragment CartFields on Cart {
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
`;

export const PRODUCTS = gql`
  query ShopProducts($first: Int!, $after: String, $filter: ProductFilter) {
    products(first: $first, after: $after, filter: $filter) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges {
        cursor
        node { id name price stock }
      }
    }
  }
`;

export const CART = gql`
  query ShopCart {
    cart { ...CartFields }
  }
  ${CART_FIELDS}
`;

// cartToken is set only when this call created a guest cart (anonymous, no token).
export const ADD_TO_CART = gql`
  mutation ShopAddToCart($productId: ID!) {
    addToCart(productId: $productId, quantity: 1) { ...CartFields cartToken }
  }
  ${CART_FIELDS}
`;

export const UPDATE_CART_ITEM = gql`
  mutation ShopUpdateCartItem($productId: ID!, $quantity: Int!) {
    updateCartItem(productId: $productId, quantity: $quantity) { ...CartFields }
  }
  ${CART_FIELDS}
`;

export const REMOVE_FROM_CART = gql`
  mutation ShopRemoveFromCart($productId: ID!) {
    removeFromCart(productId: $productId) { ...CartFields }
  }
  ${CART_FIELDS}
`;

export const CLEAR_CART = gql`
  mutation ShopClearCart {
    clearCart { ...CartFields }
  }
  ${CART_FIELDS}
`;

// A guest (cart token, no account) passes its e-mail; a customer passes null.
export const CHECKOUT = gql`
  mutation ShopCheckout($email: String) {
    checkout(input: { paymentMethod: CARD, paymentToken: "tok_visa", email: $email }) { id status }
  }
`;

// Account documents are sent with plain fetch (sessionApi in client.js): they
// change which client the page uses, so they cannot go through that client.
const SESSION_FIELDS = 'accessToken accessTokenExpiresAt refreshToken customer { id name email }';

export const SIGN_UP = `mutation ShopSignUp($input: SignUpInput!) { signUp(input: $input) { ${SESSION_FIELDS} } }`;
export const SIGN_IN = `mutation ShopSignIn($email: String!, $password: String!) { signIn(email: $email, password: $password) { ${SESSION_FIELDS} } }`;
export const REFRESH_SESSION = `mutation ShopRefreshSession($refreshToken: String!) { refreshSession(refreshToken: $refreshToken) { ${SESSION_FIELDS} } }`;
export const SIGN_OUT = `mutation ShopSignOut($refreshToken: String!) { signOut(refreshToken: $refreshToken) }`;

const SAGA_FIELDS = `
  id
  status
  error
  steps { name status attempts error }
  order { id total status }
`;

export const SAGA_UPDATES = gql`
  subscription ShopSagaUpdates($id: ID!) {
    sagaUpdates(id: $id) { ${SAGA_FIELDS} }
  }
`;

// Used only when the WebSocket cannot be opened: the page then polls.
export const SAGA = gql`
  query ShopSaga($id: ID!) {
    saga(id: $id) { ${SAGA_FIELDS} }
  }
`;

export const STEP_NAMES = ['RESERVE_STOCK', 'CHARGE_PAYMENT', 'CREATE_ORDER'];
export const TERMINAL_SAGA_STATUSES = ['COMPLETED', 'COMPENSATED', 'FAILED'];
