-- wrk script: puts to etcd through its JSON gateway, one unique key per put.
--   wrk -t2 -c64 -d10s --latency -s bench/etcd_write.lua http://127.0.0.1:42379 -- RUNID
-- Key RUNID-<thread>-<n> (base64'd), value 120 bytes. `ok` counts 200 answers.
-- done() prints one JSON line.
local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function enc(data)
  return ((data:gsub('.', function(x)
    local r,byte='',x:byte()
    for i=8,1,-1 do r=r..(byte%2^i-byte%2^(i-1)>0 and '1' or '0') end
    return r;
  end)..'0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c=0
    for i=1,6 do c=c+(x:sub(i,i)=='1' and 2^(6-i) or 0) end
    return b:sub(c+1,c+1)
  end)..({ '', '==', '=' })[#data%3+1])
end
local counter = 0
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid); next_tid = next_tid + 1
  table.insert(threads, thread)
end
function init(args)
  ok = 0; bad = 0
  prefix = args[1] .. "-" .. tid .. "-"
  value = enc(string.rep("x", 120))
end
function request()
  counter = counter + 1
  local body = '{"key":"' .. enc(prefix .. counter) .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format('{"ok":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"duration_us":%d,"errors":%d}\n', o, b, latency:percentile(50), latency:percentile(99), summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
