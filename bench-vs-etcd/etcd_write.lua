-- wrk script: puts to etcd through its JSON gateway, one unique key per put.
--   wrk -t2 -c64 -d10s --latency -s bench-vs-etcd/etcd_write.lua http://127.0.0.1:42379 -- RUNID
-- Key RUNID-<thread>-<n> (base64'd), value 120 bytes. `ok` counts 200 answers.
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
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common_init()
  prefix = args[1] .. "-" .. tid .. "-"
  value = enc(string.rep("x", 120))
end

function request()
  counter = counter + 1
  local body = '{"key":"' .. enc(prefix .. counter) .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
