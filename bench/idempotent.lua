-- wrk script: 1 KiB POST on a bearer route with an idempotency key.
-- IDEM_MODE=fresh: a new key per request (reserve, forward, store); IDEM_MODE=replay: one key
-- (every request after the first is a replay); IDEM_MODE=none: no key. BEARER: the token.
-- Fresh keys are random, like the UUIDs clients send: sequential keys would land next to each
-- other in any ordered index and hide what a real key costs the store.
local mode = os.getenv("IDEM_MODE") or "fresh"
local body = string.rep("a", 1024)
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
request = function()
  local headers = {
    ["Content-Type"] = "application/octet-stream",
    ["Authorization"] = "Bearer " .. os.getenv("BEARER"),
  }
  if mode == "fresh" then
    n = n + 1
    headers["Idempotency-Key"] = string.format("%08x-%08x-%08x-%d", math.random(0, 0x7fffffff),
      math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), n)
  elseif mode == "replay" then
    headers["Idempotency-Key"] = prefix .. "-replay"
  end
  return wrk.format("POST", "/v1/orders", headers, body)
end
