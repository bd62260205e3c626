-- wrk script: every request goes to a different id from a file, so every request-release is a
-- 201 on a number with no open request, and every cancel hits a still-pending request.
--
--   wrk -tT ... -s walk.lua http://127.0.0.1:PORT -- MODE IDS_FILE OFFSET TOKEN T
--
-- MODE is "release" (POST /api/v1/phone-numbers/{id}/request-release) or "cancel"
-- (POST /api/v1/phone-numbers/release-requests/{id}/cancel), or "get" (IDS_FILE is then the path
-- to GET, headers come from wrk's -H). Ids are shared out among wrk's
-- threads by stride. When a thread runs out of ids it stops (the run is bounded by count as
-- well as by wrk's -d). done() prints one JSON line with the counts and latency percentiles.

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local ids = {}
local i, stride, mode, headers
local body = '{"reason":"Benchmark: this number is no longer needed by the team."}'
exhausted = 0
sent = 0

function init(args)
  mode = args[1]
  if mode == "get" then
    path = args[2]
    return
  end
  local offset = tonumber(args[3]) or 0
  for line in io.lines(args[2]) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  stride = tonumber(args[5]) or 1
  headers = {
    ["Authorization"] = "Bearer " .. args[4],
    ["Content-Type"] = "application/json",
  }
  i = offset + tid + 1
end

function request()
  if mode == "get" then
    sent = sent + 1
    return wrk.format("GET", path)
  end
  if i > #ids then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/livez")
  end
  local id = ids[i]
  i = i + stride
  sent = sent + 1
  if mode == "cancel" then
    return wrk.format("POST", "/api/v1/phone-numbers/release-requests/" .. id .. "/cancel", headers)
  end
  return wrk.format("POST", "/api/v1/phone-numbers/" .. id .. "/request-release", headers, body)
end

function done(summary, latency, requests)
  local ex, sent_total = 0, 0
  for _, t in ipairs(threads) do
    ex = ex + (t:get("exhausted") or 0)
    sent_total = sent_total + (t:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"sent":%d,"duration_s":%.3f,"rps":%.1f,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"exhausted":%d}\n',
    summary.requests, sent_total, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, ex))
end
