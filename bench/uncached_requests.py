"""Sends COUNT requests of one kind over one keep-alive connection and checks every
answer: products (anonymous), cart (the first token's customer) or add_cart
(addToCart returning the cart, rotating over the other tokens and products 9991-10000).
usage: python3 bench/uncached_requests.py PORT COUNT KIND TOKENS_FILE"""
import http.client, sys, json
port, count, kind, tokfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
toks = [l.strip() for l in open(tokfile) if l.strip()]
PRODUCTS = '{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
CART = '{"query":"{ cart { itemCount total items { quantity product { name category { name } } } } }"}'
ADD = '{"query":"mutation { addToCart(productId: \\"%d\\") { itemCount total items { quantity product { name category { name } } } } }"}'
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for n in range(count):
    h = {"content-type": "application/json"}
    if kind == "products":
        body, exp = PRODUCTS, '"edges"'
    elif kind == "cart":
        body, exp = CART, '"itemCount":10'
        h["authorization"] = "Bearer " + toks[0]
    else:
        body, exp = ADD % (9991 + (n // 100) % 10), '"category"'
        h["authorization"] = "Bearer " + toks[1 + n % 100]
    conn.request("POST", "/graphql", body, h)
    a = conn.getresponse().read().decode()
    if exp not in a or '"errors"' in a:
        sys.exit("unexpected: " + a[:300])
