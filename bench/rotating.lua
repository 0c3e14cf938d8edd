-- wrk script: bench/graphql.lua, each request from the next of <tokens-file>'s callers
-- and for the next of <products> product ids from <first-product> (the body's %d), so
-- that repeated adds spread over many cart lines and none reaches the most units a
-- line may hold.
-- usage: wrk -s bench/rotating.lua URL -- <body-file> <expected> <tokens-file> <first-product> <products>
dofile("bench/graphql.lua")

local graphql_setup, graphql_init = setup, init
local started = 0
function setup(thread)
  graphql_setup(thread)
  thread:set("offset", started * 7919)
  started = started + 1
end

function init(args)
  graphql_init({ args[1], args[2] })
  tokens = {}
  for line in io.lines(args[3]) do
    table.insert(tokens, line)
  end
  first_product, products = tonumber(args[4]), tonumber(args[5])
  n = offset or 0
end

function request()
  n = n + 1
  local caller = tokens[n % #tokens + 1]
  local product = first_product + math.floor(n / #tokens) % products
  return wrk.format("POST", "/graphql",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. caller },
    string.format(body, product))
end
