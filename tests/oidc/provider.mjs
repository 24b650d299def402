// A real OpenID Connect provider for authgate's sign-in tests: oauth2-mock-server's service
// (authorization code with PKCE and nonce, refresh, end_session) on 127.0.0.1, on a free port,
// plus a small control API under /control the tests drive it with:
//
//   POST /control/set    {"id_token": {claims to force}, "expires_in": N, "refresh_error": "invalid_grant",
//                         "refresh_delay_ms": N}   (each optional; null clears)
//   POST /control/sign   {"claims": {...}, "typ": "logout+jwt"}  → {"token": "<JWT signed with the provider's key>"}
//   GET  /control/calls  → {"authorization_code": n, "refresh_token": n, "end_session": [{query}], "last_token_request": {...}}
//
// It prints one line, {"port": N}, once it listens, and runs until killed.
import http from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const issuer = new OAuth2Issuer();
await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);

const control = { id_token: null, expires_in: null, refresh_error: null, refresh_delay_ms: 0 };
const calls = { authorization_code: 0, refresh_token: 0, end_session: [], last_token_request: null };

// The ID token is the one signed without `scope` (the access token always carries one).
service.on('beforeTokenSigning', (token) => {
  if (control.id_token && !('scope' in token.payload)) {
    Object.assign(token.payload, control.id_token);
  }
});

service.on('beforeResponse', (response, req) => {
  const grant = req.body.grant_type;
  if (grant in calls) calls[grant] += 1;
  calls.last_token_request = { body: req.body, authorization: req.headers.authorization ?? null };
  if (control.expires_in !== null) response.body.expires_in = control.expires_in;
  if (grant === 'refresh_token' && control.refresh_error) {
    response.statusCode = 400;
    response.body = { error: control.refresh_error };
  }
});

service.on('beforePostLogoutRedirect', (_redirect, req) => {
  calls.end_session.push({ ...req.query });
});

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString();
  return text ? JSON.parse(text) : {};
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/control/set' && req.method === 'POST') {
      Object.assign(control, await body(req));
      return json(res, 200, control);
    }
    if (req.url === '/control/sign' && req.method === 'POST') {
      const { claims, typ } = await body(req);
      const token = await issuer.buildToken({
        scopesOrTransform: (header, payload) => {
          if (typ) header.typ = typ;
          Object.assign(payload, claims);
        },
      });
      return json(res, 200, { token });
    }
    if (req.url === '/control/calls' && req.method === 'GET') {
      return json(res, 200, calls);
    }
  } catch (error) {
    return json(res, 500, { error: String(error) });
  }
  // A slow token endpoint, for requests that must share one refresh.
  if (req.url.startsWith('/token') && control.refresh_delay_ms > 0) {
    await new Promise((resolve) => setTimeout(resolve, control.refresh_delay_ms));
  }
  service.requestHandler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  // The issuer is named by address, as the gateway fetches it (plain http only to loopback).
  issuer.url = `http://127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
