-- wrk script for scripts/bench.sh.
--
-- Environment:
--   WRK_TOKEN_PREFIX, WRK_TOKEN_COUNT: rotate `Authorization: Bearer <prefix><i>`
--     over i = 0 .. count-1, round robin over all connections of the thread
--     (the requests are formatted once, in init). Unset: wrk's static request
--     (headers given with -H).
-- At the end one line `WRKJSON {...}` is printed with the totals and the
-- latency percentiles in microseconds.

local prefix = os.getenv("WRK_TOKEN_PREFIX")
local count = tonumber(os.getenv("WRK_TOKEN_COUNT") or "0") or 0
local reqs = {}
local next_i = 0

function init(args)
  if prefix and count > 0 then
    for i = 0, count - 1 do
      wrk.headers["Authorization"] = "Bearer " .. prefix .. i
      reqs[i] = wrk.format("GET", wrk.path)
    end
  end
end

if prefix and count > 0 then
  function request()
    local r = reqs[next_i]
    next_i = (next_i + 1) % count
    return r
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
