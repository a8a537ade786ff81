-- wrk script: critical writes to gameraft, one unique request id per write.
--   wrk -t2 -c64 -d10s --latency -s bench-vs-etcd/gameraft_write.lua http://127.0.0.1:18081 -- RUNID
-- Each request is a GameStateChange whose `state` is 120 bytes (the size of
-- etcd_write.lua's value) and whose request_id is RUNID-<thread>-<n>.
-- `ok` counts only answers that are 200 and appended a new event
-- ("duplicate":false); anything else is `bad`.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common_init()
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

function succeeded(status, body)
  return status == 200 and string.find(body, '"duplicate":false', 1, true) ~= nil
end
