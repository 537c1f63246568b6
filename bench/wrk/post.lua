-- wrk script for ponder's benchmark: POSTs one JSON body on every request and prints a
-- machine-readable summary line ("WRK_JSON {...}") when the run ends.
--   WRK_BODY     the request body (default: a small non-streamed chat completion)
--   WRK_HEADERS  extra request headers, one "name: value" per line
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
  or '{"model":"fake-model","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["Content-Type"] = "application/json"
local extra = os.getenv("WRK_HEADERS") or ""
for line in extra:gmatch("[^\n]+") do
  local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if k then wrk.headers[k] = v end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
