-- wrk script: ephemeral PlayerMove events to the gameraft leader (not logged).
--   wrk -t2 -c64 -d10s --latency -s bench-vs-etcd/gameraft_ephemeral.lua http://127.0.0.1:18081 -- RUNID
-- `ok` counts 200 answers.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common_init()
end

function request()
  counter = counter + 1
  local n = tid * 1000000000 + counter
  local body = string.format('{"event":{"Ephemeral":{"PlayerMove":{"player_id":%d,' ..
    '"x":1.5,"y":0.0,"z":-2.0,"timestamp":%d}}}}', n, n)
  return wrk.format("POST", "/events", {["Content-Type"]="application/json"}, body)
end
