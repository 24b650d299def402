-- wrk script: each request carries the next of the tokens in $TOKENS_FILE (one per line), so
-- a verified-token cache cannot answer from memory until every token has been seen once.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = "Bearer " .. line
end
local next_token = 0
local path = os.getenv("TOKENS_PATH") or "/"

request = function()
  next_token = next_token % #tokens + 1
  return wrk.format("GET", path, { ["Authorization"] = tokens[next_token] })
end
