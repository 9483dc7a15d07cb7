-- wrk script: GET random customers (ids from the file given after --), or
-- POST bodies round-robin (one JSON body per line of the file given with
-- WRK_BODIES), and print one machine-readable RESULT line at the end.
--   wrk ... -s wrk_report.lua URL -- ids.txt
--   WRK_BODIES=bodies.jsonl WRK_KEY=... wrk ... -s wrk_report.lua URL
local ids, bodies, next_body = {}, {}, 0
local key = os.getenv("WRK_KEY")

init = function(args)
  if args[1] then
    for line in io.lines(args[1]) do ids[#ids + 1] = line end
  end
  local path = os.getenv("WRK_BODIES")
  if path then
    for line in io.lines(path) do bodies[#bodies + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  local headers = {}
  if key then headers["Authorization"] = "Bearer " .. key end
  if #bodies > 0 then
    next_body = next_body % #bodies + 1
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", wrk.path, headers, bodies[next_body])
  end
  if #ids > 0 then
    return wrk.format("GET", wrk.path .. ids[math.random(#ids)], headers)
  end
  return wrk.format("GET", wrk.path, headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d p999_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
