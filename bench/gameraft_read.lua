-- wrk script: pages of 100 committed events from random positions.
--   wrk -t2 -c64 -d10s --latency -s bench/gameraft_read.lua http://127.0.0.1:18081 -- RUNID TOTAL
-- TOTAL is the node's event count; each request reads GET /events?from=R&limit=100
-- with R uniform in [0, TOTAL-100]. `ok` counts 200 answers. done() prints one JSON line.
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid); next_tid = next_tid + 1
  table.insert(threads, thread)
end
function init(args)
  ok = 0; bad = 0
  max_from = math.max(0, tonumber(args[2]) - 100)
  math.randomseed(os.time() * 100 + tid)
end
function request()
  return wrk.format("GET", "/events?from=" .. math.random(0, max_from) .. "&limit=100")
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('{"ok":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"duration_us":%d,"errors":%d}\n',
    o, b, latency:percentile(50), latency:percentile(99), summary.duration,
    e.connect + e.read + e.write + e.timeout))
end
