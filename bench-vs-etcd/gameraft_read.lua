-- wrk script: pages of 100 committed events from random positions.
--   wrk -t2 -c64 -d10s --latency -s bench-vs-etcd/gameraft_read.lua http://127.0.0.1:18081 -- RUNID TOTAL
-- TOTAL is the node's event count; each request reads GET /events?from=R&limit=100
-- with R uniform in [0, TOTAL-100]. `ok` counts 200 answers.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common_init()
  max_from = math.max(0, tonumber(args[2]) - 100)
  math.randomseed(os.time() * 100 + tid)
end

function request()
  return wrk.format("GET", "/events?from=" .. math.random(0, max_from) .. "&limit=100")
end
