-- wrk script: every request carries the next token from the file named by $TOKENS_FILE (one
-- token per line), cycling, so a gateway sees many distinct tokens instead of one.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
assert(#tokens > 0, "no tokens in " .. os.getenv("TOKENS_FILE"))
local i = 0

request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
