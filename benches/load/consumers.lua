-- wrk script: each request comes from another of $CONSUMERS addresses (default 10,000), as
-- forwarded by a trusted proxy, so a route's rate limit keeps that many distinct consumers.
local n = tonumber(os.getenv("CONSUMERS") or "10000")
local i = 0

request = function()
  i = i % n + 1
  local address = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256,
    math.floor(i / 256) % 256, i % 256)
  return wrk.format(nil, nil, { ["X-Forwarded-For"] = address })
end
