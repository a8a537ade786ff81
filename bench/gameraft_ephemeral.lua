-- wrk script: ephemeral PlayerMove events to the gameraft leader (not logged).
--   wrk -t2 -c64 -d10s --latency -s bench/gameraft_ephemeral.lua http://127.0.0.1:18081 -- RUNID
-- `ok` counts 200 answers. done() prints one JSON line.
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid); next_tid = next_tid + 1
  table.insert(threads, thread)
end
function init(args)
  ok = 0; bad = 0; counter = 0
end
function request()
  counter = counter + 1
  local n = tid * 1000000000 + counter
  local body = string.format('{"event":{"Ephemeral":{"PlayerMove":{"player_id":%d,' ..
    '"x":1.5,"y":0.0,"z":-2.0,"timestamp":%d}}}}', n, n)
  return wrk.format("POST", "/events", {["Content-Type"]="application/json"}, body)
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
