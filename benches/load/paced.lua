-- wrk script: each connection waits PACE_MS milliseconds between requests, so the offered rate
-- is fixed (connections × 1000 / PACE_MS per second) and latency is measured below saturation.
local pace = tonumber(os.getenv("PACE_MS") or "10")

delay = function()
  return pace
end
