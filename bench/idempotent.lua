-- wrk script: 1 KiB POST on a bearer route with an idempotency key.
-- IDEM_MODE=fresh: a new key per request (reserve, forward, store); IDEM_MODE=replay: one key
-- (every request after the first is a replay); IDEM_MODE=none: no key. BEARER: the token.
local mode = os.getenv("IDEM_MODE") or "fresh"
local body = string.rep("a", 1024)
local n = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
request = function()
  local headers = {
    ["Content-Type"] = "application/octet-stream",
    ["Authorization"] = "Bearer " .. os.getenv("BEARER"),
  }
  if mode == "fresh" then
    n = n + 1
    headers["Idempotency-Key"] = prefix .. "-" .. n
  elseif mode == "replay" then
    headers["Idempotency-Key"] = prefix .. "-replay"
  end
  return wrk.format("POST", "/v1/orders", headers, body)
end
