-- wrk script: each connection waits $PACE_MS milliseconds after a response before sending its
-- next request, so the offered rate is about connections * 1000 / (PACE_MS + latency) and stays
-- far below saturation; the latency percentiles then describe an unhurried proxy.
-- (Debian's wrk has no --rate; wrk's delay() takes whole milliseconds.)
local pace = tonumber(os.getenv("PACE_MS") or "20")

delay = function()
  return pace
end
