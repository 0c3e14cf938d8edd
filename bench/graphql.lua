-- wrk script: POSTs one GraphQL request and checks every response.
-- usage: wrk -s bench/graphql.lua URL -- <body-file> <expected-substring> [bearer-token]
-- Prints one line: RESULT rps=… p50_ms=… p99_ms=… requests=… bad=…
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  body = file:read("*a")
  file:close()
  expect = args[2]
  headers = { ["Content-Type"] = "application/json" }
  if args[3] ~= nil and args[3] ~= "" then
    headers["Authorization"] = "Bearer " .. args[3]
  end
  bad = 0
end

function request()
  return wrk.format("POST", "/graphql", headers, body)
end

function response(status, _, resp)
  if status ~= 200 or not string.find(resp, expect, 1, true) or string.find(resp, '"errors"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, _)
  local invalid = 0
  for _, thread in ipairs(threads) do
    invalid = invalid + thread:get("bad")
  end
  local e = summary.errors
  invalid = invalid + e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d bad=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, invalid))
end
