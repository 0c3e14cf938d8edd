-- wrk script: bench/graphql.lua at a fixed rate. Each wrk thread hands its connections
-- send slots <interval-ms> apart, so a thread sends 1000 / interval requests a second
-- whatever the latency, as long as it has enough connections to fill the slots (a slot
-- missed is not made up later with a burst).
-- usage: wrk -t1 -s bench/paced.lua URL -- <body-file> <expected-substring> <bearer-token> <interval-ms>
dofile("bench/graphql.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } paced_timespec;
  int clock_gettime(int clock, paced_timespec *now);
]]
local clock = ffi.new("paced_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local graphql_init = init
local next_slot = nil
function init(args)
  graphql_init(args)
  interval_ms = tonumber(args[4]) or 0
end

function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now then
    next_slot = now
  end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  return math.floor(wait + 0.5)
end
