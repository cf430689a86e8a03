-- One workload against one OAuth server, for wrk (one thread: -t1), driven by bench/compare.py.
-- Settings come from the environment, read by the main state and the thread alike:
--   BENCH_MODE    refresh | introspect | revoke
--   BENCH_TOKENS  file with one token a line (refresh tokens, or access tokens to introspect,
--                 or refresh tokens to revoke)
--   BENCH_AUTH    the Authorization header value (client_secret_basic)
--   BENCH_OUT     where done() writes its JSON summary
--
-- refresh: grant_type=refresh_token with a token never presented before. The file gives the
--   first tokens; after that each request presents a refresh token received in an earlier
--   response (a FIFO queue), so every exchange is a real rotation of a live token and the run
--   never runs out. Every response must be 200 with an access token and a refresh token, both
--   never seen before (so both differ from the one presented, which was seen); anything else
--   is an error.
-- introspect: RFC 7662 for valid access tokens, cycling through the file; each response must be
--   200 with "active": true.
-- revoke: RFC 7009 for refresh tokens, each presented once; each response must be 200. Tokens
--   presented after the file ran out are counted as `reused` (a re-revocation is cheaper, so
--   compare.py flags such a run).

local mode = os.getenv("BENCH_MODE")
local auth = os.getenv("BENCH_AUTH")
local headers = {
  ["Authorization"] = auth,
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Accept"] = "application/json",
}

local function urlencode(value)
  return (value:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

-- Thread state --------------------------------------------------------------------------------
queue, head, tail = {}, 1, 0 -- refresh: tokens to present next
pool, next_index, wrapped = {}, 1, false -- introspect / revoke: the file's tokens
seen = {}                     -- refresh: every token seen (seeded or received)
ok, status_errors, body_errors, starved, reused = 0, 0, 0, 0, 0
sample = ""                   -- the first bad response (see note), for the report

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then
      if mode == "refresh" then
        tail = tail + 1
        queue[tail] = line
        seen[line] = true
      else
        pool[#pool + 1] = line
      end
    end
  end
end

-- The first bad response, with token values blanked out: the report never shows a token.
local function note(status, body)
  if sample == "" then
    local shown = string.gsub(body or "", '("[%w_]*token"%s*:%s*)"[^"]*"', '%1"<token>"')
    sample = tostring(status) .. " " .. string.sub(shown, 1, 200)
  end
end

function request()
  local body
  if mode == "refresh" then
    local token
    if head <= tail then
      token = queue[head]
      queue[head] = nil
      head = head + 1
    else
      starved = starved + 1 -- every token is in flight or was lost to an error
      token = "starved"
    end
    body = "grant_type=refresh_token&refresh_token=" .. urlencode(token)
  else
    local token = pool[next_index]
    if wrapped and mode == "revoke" then reused = reused + 1 end
    next_index = next_index + 1
    if next_index > #pool then
      next_index = 1
      wrapped = true
    end
    if mode == "introspect" then
      body = "token=" .. urlencode(token) .. "&token_type_hint=access_token"
    else
      body = "token=" .. urlencode(token) .. "&token_type_hint=refresh_token"
    end
  end
  return wrk.format("POST", wrk.path, headers, body)
end

function response(status, _, body)
  if status ~= 200 then
    status_errors = status_errors + 1
    note(status, body)
    return
  end
  if mode == "refresh" then
    local access = string.match(body, '"access_token"%s*:%s*"([^"]+)"')
    local refresh = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
    if not access or not refresh or seen[access] or seen[refresh] or access == refresh then
      body_errors = body_errors + 1
      note(status, body)
      return
    end
    seen[access] = true
    seen[refresh] = true
    tail = tail + 1
    queue[tail] = refresh
  elseif mode == "introspect" then
    if not string.match(body, '"active"%s*:%s*true') then
      body_errors = body_errors + 1
      note(status, body)
      return
    end
  end
  ok = ok + 1
end

-- Main state ----------------------------------------------------------------------------------
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, _)
  local totals = { ok = 0, status_errors = 0, body_errors = 0, starved = 0, reused = 0 }
  local first = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    if first == "" then first = thread:get("sample") or "" end
  end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"ok": %d, "status_errors": %d, "body_errors": %d, "starved": %d, "reused": %d, '
      .. '"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "sample": "%s"}\n',
    totals.ok, totals.status_errors, totals.body_errors, totals.starved, totals.reused,
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    (first:gsub('[%c"\\]', "?"))))
  out:close()
end
