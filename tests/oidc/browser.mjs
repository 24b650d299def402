// Drives a real headless Chromium (Debian's /usr/bin/chromium, never a downloaded build)
// through authgate's browser sign-in, and prints what it saw as one JSON line:
//
//   node browser.mjs START_URL API_URL LOGOUT_URL
//
// 1. opens START_URL (a protected page: gateway → provider → callback → the page),
// 2. from that page, fetch()es API_URL as a script would (cookie sent, JSON asked for),
// 3. opens LOGOUT_URL (gateway → provider's end_session → the landing page),
// 4. fetch()es API_URL again (no session any more).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [startUrl, apiUrl, logoutUrl] = process.argv.slice(2);
const profile = await mkdtemp(join(tmpdir(), 'authgate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 30000,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const result = {};
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const visited = [];
  page.on('request', (request) => {
    if (request.isNavigationRequest()) visited.push(request.url());
  });
  const first = await page.goto(startUrl, { waitUntil: 'load', timeout: 20000 });
  result.signed_in = {
    status: first.status(),
    url: page.url(),
    body: await page.evaluate(() => document.body.innerText),
    navigations: visited.splice(0),
  };
  const call = (url) =>
    page.evaluate(async (target) => {
      const response = await fetch(target, { headers: { accept: 'application/json' } });
      return { status: response.status, body: await response.text() };
    }, url);
  result.api = await call(apiUrl);
  result.cookies = (await context.cookies()).map(({ name, httpOnly, sameSite, secure, path }) => ({
    name,
    httpOnly,
    sameSite,
    secure,
    path,
  }));
  const out = await page.goto(logoutUrl, { waitUntil: 'load', timeout: 20000 });
  result.logged_out = { status: out.status(), url: page.url(), navigations: visited.splice(0) };
  result.api_after_logout = await call(apiUrl);
} finally {
  await context.close();
  await rm(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
