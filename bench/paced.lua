-- wrk script: bench/graphql.lua, with each connection waiting <delay-ms> before each
-- request, so that connections / (delay + latency) paces the request rate.
-- usage: wrk -s bench/paced.lua URL -- <body-file> <expected-substring> <bearer-token> <delay-ms>
dofile("bench/graphql.lua")

local graphql_init = init
function init(args)
  graphql_init(args)
  pause_ms = tonumber(args[4]) or 0
end

function delay()
  return pause_ms
end
