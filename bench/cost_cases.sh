# Sourced by the scripts that measure what the rate limiter and the query limits cost:
# the queries (from the cheapest request to an executed one) and the four configurations.
# shellcheck disable=SC2034
QUERIES=(typename mixed products)
declare -A BODY=(
  [typename]='{"query":"{ __typename }"}'
  [mixed]='{"query":"{ __typename products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
  [products]='{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
)
declare -A EXPECT=([typename]='"Query"' [mixed]='"edges"' [products]='"edges"')
declare -A LABEL=(
  [typename]='`{ __typename }` (parsed, validated, executed)'
  [mixed]='`{ __typename products(first: 20) {…} }` (executed; products from the field cache)'
  [products]='`products(first: 20) {…}` (whole-response cache hit)'
)
CONFIGS=(none limiter limits both)
declare -A ENV=(
  [none]='RATE_LIMIT_ENABLED=false QUERY_LIMITS_ENABLED=false'
  [limiter]='RATE_LIMIT_ENABLED=true QUERY_LIMITS_ENABLED=false'
  [limits]='RATE_LIMIT_ENABLED=false QUERY_LIMITS_ENABLED=true'
  [both]='RATE_LIMIT_ENABLED=true QUERY_LIMITS_ENABLED=true'
)
LIMITER='RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000'
