-- What every bench-vs-etcd/*.lua wrk script shares: thread numbering, success counting
-- and the one JSON line done() prints for vs_etcd.py. A script loads it with
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")
-- then defines request() and init(args) (calling common_init() first), and
-- replaces succeeded(status, body) if a 200 alone is not a success.
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- Per-thread counters; `tid` was set by setup() in this thread's state.
function common_init()
  ok = 0; bad = 0; counter = 0
end

function succeeded(status, body)
  return status == 200
end

function response(status, headers, body)
  if succeeded(status, body) then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('{"ok":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"duration_us":%d,"errors":%d}\n',
    o, b, latency:percentile(50), latency:percentile(99), summary.duration,
    e.connect + e.read + e.write + e.timeout))
end
