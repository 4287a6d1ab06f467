-- wrk script: POST one chat-completion body, count every answer that is not a 200 (and, when
-- BENCH_REQUIRE_HEADER is set, every 200 without that header), stop after BENCH_MAX_REQUESTS
-- answers per thread, and print the figures as one JSON line that bench/load.py reads.
-- Settings come from the environment: BENCH_BODY_FILE (request body), BENCH_MAX_REQUESTS,
-- BENCH_REQUIRE_HEADER, BENCH_DONE_FILE. wrk's main thread sleeps for the whole duration even
-- when every thread has stopped, so a thread that reaches the count creates BENCH_DONE_FILE and
-- bench/load.py then interrupts wrk (SIGINT), which makes it report at once.

local body_file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"

local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
local require_header = os.getenv("BENCH_REQUIRE_HEADER") or ""
local done_file = os.getenv("BENCH_DONE_FILE") or ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  answered = 0
  bad_status = 0
  missing_header = 0
  first_bad = ""
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 200)
    end
  elseif require_header ~= "" and headers[require_header] == nil then
    missing_header = missing_header + 1
  end
  if max_requests > 0 and answered == max_requests then
    if done_file ~= "" then
      local marker = io.open(done_file, "w")
      if marker then marker:close() end
    end
    wrk.thread:stop()
  end
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local bad, missing, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("bad_status")
    missing = missing + thread:get("missing_header")
    if first == "" then first = thread:get("first_bad") end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"timeouts": %d, "bad_status": %d, "missing_header": %d, "first_bad": %s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, errors.connect, errors.read, errors.write,
    errors.timeout, bad, missing, json_string(first)))
end
