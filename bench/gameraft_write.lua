-- wrk script: critical writes to gameraft, one unique request id per write.
--   wrk -t2 -c64 -d10s --latency -s bench/gameraft_write.lua http://127.0.0.1:18081 -- RUNID
-- Each request is a GameStateChange whose `state` is 120 bytes (the size of
-- etcd_write.lua's value) and whose request_id is RUNID-<thread>-<n>.
-- `ok` counts only answers that are 200 and appended a new event
-- ("duplicate":false); anything else is `bad`. done() prints one JSON line.
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid); next_tid = next_tid + 1
  table.insert(threads, thread)
end
function init(args)
  ok = 0; bad = 0; counter = 0
  prefix = args[1] .. "-" .. tid .. "-"
  pad = string.rep("x", 120)
end
function request()
  counter = counter + 1
  local state = string.sub("round-" .. counter .. "-" .. pad, 1, 120)
  local body = '{"event":{"Critical":{"GameStateChange":{"state":"' .. state ..
    '","timestamp":1234567890}}},"request_id":"' .. prefix .. counter .. '"}'
  return wrk.format("POST", "/events", {["Content-Type"]="application/json"}, body)
end
function response(status, headers, body)
  if status == 200 and string.find(body, '"duplicate":false', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('{"ok":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"duration_us":%d,"errors":%d}\n',
    o, b, latency:percentile(50), latency:percentile(99), summary.duration,
    e.connect + e.read + e.write + e.timeout))
end
