// Drives the management console (/ui/) in a real headless Chromium through one operator's
// day, asserting what each page shows, and writes screenshots of every page (light, dark,
// and a phone-width one) plus an axe-core accessibility report per page (laptop light and
// dark, phone light) and how far each page sticks out sideways at a phone's width.
//
// Usage: node console.mjs --base URL --app-url URL --acme-domain NAME --out DIR
// Secrets come from the environment, never the command line: PORTCULLIS_ADMIN_TOKEN.
// Prints one JSON line: {"ok": true, "user_token": "...", "axe": {...}, "overflow": {...}, "steps": [...]}
// or {"error": "..."} (exit code 1). The user token is the one this run created through
// the Tokens page; the caller uses it to check ownership from outside too.

import { readFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    'app-url': { type: 'string' },
    'acme-domain': { type: 'string' },
    out: { type: 'string' },
  },
});
const base = args.base;
const appUrl = args['app-url'];
const acmeDomain = args['acme-domain'];
const out = args.out;
const adminToken = process.env.PORTCULLIS_ADMIN_TOKEN;
if (!base || !appUrl || !acmeDomain || !out || !adminToken) {
  console.error('usage: PORTCULLIS_ADMIN_TOKEN=… node console.mjs --base URL --app-url URL --acme-domain NAME --out DIR');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const steps = [];
const axeReport = {};
// Per page: CSS pixels by which it is wider than a phone's screen (0: nothing sticks out).
const overflow = {};
const consoleErrors = [];
let step = 'start';
const say = (s) => {
  step = s;
  steps.push(s);
};
function check(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), 'portcullis-console-'));
let context;
let code = 0;
let userToken = '';
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15000);
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  /** Screenshots (laptop and phone width, light and dark) and axe in light and dark. */
  async function shoot(name, { keepNotices = false } = {}) {
    await page.waitForLoadState('networkidle').catch(() => {});
    // Toasts of earlier steps would cover the page; keep them only where they are the point.
    if (!keepNotices) await page.evaluate(() => document.querySelectorAll('#notices .notice').forEach((n) => n.remove()));
    // From the top, so the sticky bar sits where it belongs in a full-page shot.
    await page.evaluate(() => window.scrollTo(0, 0));
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: join(out, `console-${name}-${scheme}.png`), fullPage: true });
      await page.evaluate(axeSource);
      const result = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help,
          targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
      });
      axeReport[`${name}-${scheme}`] = result;
    }
    await page.setViewportSize({ width: 390, height: 844 });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      const suffix = scheme === 'light' ? 'phone' : 'phone-dark';
      await page.screenshot({ path: join(out, `console-${name}-${suffix}.png`), fullPage: true });
    }
    // At a phone's width too: axe (light), and nothing wider than the screen.
    await page.emulateMedia({ colorScheme: 'light' });
    axeReport[`${name}-phone`] = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help,
        targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    overflow[name] = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  const nav = async (label, heading) => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: heading ?? label }).waitFor();
  };
  const openDisclosure = async (summary) => {
    const d = page.locator('details.disclosure', { has: page.locator(':scope > summary', { hasText: summary }) });
    if (!(await d.evaluate((el) => el.open))) await d.locator(':scope > summary').click();
    return d;
  };
  const fieldError = (scope, name) => scope.locator(`.field:has([name="${name}"]) .field-error`);
  const confirmDialog = async (button) => {
    const dlg = page.locator('dialog.confirm[open]');
    await dlg.waitFor();
    await dlg.getByRole('button', { name: button, exact: true }).click();
    await dlg.waitFor({ state: 'detached' });
  };

  say('sign-in page');
  await page.goto(`${base}/`);
  await page.waitForURL(`${base}/ui/`);
  await page.getByLabel('API token').waitFor();
  await shoot('signin');
  say('a wrong token is refused on the page');
  await page.getByLabel('API token').fill('pcs_not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#token-err', { hasText: 'not accepted' }).waitFor();
  say('sign in with the admin token');
  await page.getByLabel('API token').fill(adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  check(!page.url().includes(adminToken), 'the token is not in the URL');
  await page.locator('table', { hasText: 'dp-console' }).waitFor();
  // Lists update in place: a marker set now survives until sign-out only if no change
  // below reloads the page.
  await page.evaluate(() => {
    window.portcullisNoReload = true;
  });
  const notReloaded = async () => check(await page.evaluate(() => window.portcullisNoReload === true), 'the page was not reloaded');
  await shoot('overview');

  say('create a proxy');
  await nav('Proxies');
  let form = await openDisclosure('New proxy');
  await form.getByLabel('Hostname').fill('app.localhost');
  await form.getByLabel('Target URL').fill(process.env.PORTCULLIS_BACKEND_URL);
  await form.getByRole('button', { name: 'Create proxy' }).click();
  await page.getByRole('link', { name: 'app.localhost' }).waitFor();

  say('traffic flows through the data plane');
  const app = await context.newPage();
  let seen = '';
  for (let i = 0; i < 100 && !seen.includes('"path":"/hello"'); i++) {
    const r = await app.goto(`${appUrl}/hello`).catch(() => null);
    seen = r && r.status() === 200 ? await app.locator('body').innerText() : '';
    if (!seen.includes('"path":"/hello"')) await app.waitForTimeout(200);
  }
  check(seen.includes('"path":"/hello"'), `the backend's echo through the data plane, got ${seen.slice(0, 200)}`);

  say('a duplicate hostname is shown next to the hostname');
  form = await openDisclosure('New proxy');
  await form.getByLabel('Hostname').fill('app.localhost');
  await form.getByLabel('Target URL').fill(process.env.PORTCULLIS_BACKEND_URL);
  await form.getByRole('button', { name: 'Create proxy' }).click();
  await fieldError(form, 'hostname').filter({ hasText: '409' }).waitFor();
  const dup = await fieldError(form, 'hostname').innerText();
  check(/already exists/i.test(dup), `hostname error: ${dup}`);

  say('an invalid target URL is shown next to the target');
  await form.getByLabel('Hostname').fill('bad.localhost');
  await form.getByLabel('Target URL').fill('ftp://example.com/');
  await form.getByRole('button', { name: 'Create proxy' }).click();
  await fieldError(form, 'target_url').filter({ hasText: '400' }).waitFor();
  const bad = await fieldError(form, 'target_url').innerText();
  check(bad.includes('target_url'), `target_url error: ${bad}`);
  check((await fieldError(form, 'hostname').innerText()) === '', 'the hostname error was cleared');
  await page.locator('#proxy-search').fill('app');
  await shoot('proxies');

  say('enable protection');
  await page.getByRole('link', { name: 'app.localhost' }).click();
  await page.getByRole('heading', { level: 1, name: /app\.localhost/ }).waitFor();
  const protection = page.locator('section.card', { has: page.getByRole('heading', { name: 'Protection' }) });
  await protection.getByLabel('Mode').selectOption('forward');
  await protection.getByLabel('Authorization server host').fill('auth.localhost');
  await protection.getByLabel('Required scopes').fill('mcp');
  await protection.getByLabel('Allowed GitHub orgs').fill('acme');
  await protection.getByRole('button', { name: 'Enable protection' }).click();
  await protection.getByText('forward via auth.localhost').waitFor();
  let status = 0;
  for (let i = 0; i < 100 && status !== 401; i++) {
    status = (await app.goto(`${appUrl}/hello`).catch(() => null))?.status() ?? 0;
    if (status !== 401) await app.waitForTimeout(200);
  }
  check(status === 401, `the data plane asks for a token now (got ${status})`);
  await app.close();
  await shoot('proxy-detail');

  say('a route for the proxy');
  await nav('Routes');
  form = await openDisclosure('New route');
  await form.getByLabel('Id').fill('api-v2');
  await form.getByLabel('Priority').fill('10');
  await form.getByLabel('Path pattern').fill('/api/v2');
  await form.getByLabel('Target', { exact: true }).fill(process.env.PORTCULLIS_BACKEND_URL);
  await form.getByLabel('Proxies').fill('app.localhost');
  await form.getByRole('button', { name: 'Create route' }).click();
  await page.getByRole('cell', { name: '/api/v2' }).waitFor();
  await shoot('routes');

  say('order a development certificate');
  await nav('Certificates');
  form = await openDisclosure('Order a certificate');
  await form.getByLabel('Name').fill('app-localhost');
  await form.getByLabel('Domains').fill('app.localhost');
  await form.getByLabel('Self-signed development certificate (no CA)').check();
  await form.getByRole('button', { name: 'Order certificate' }).click();
  await page.locator('table tr', { hasText: 'app-localhost' }).locator('.badge', { hasText: 'valid' }).waitFor();

  say('order a certificate from the ACME CA (Pebble) and watch its progress');
  form = await openDisclosure('Order a certificate');
  await form.getByLabel('Name').fill('shop');
  await form.getByLabel('Domains').fill(acmeDomain);
  await form.getByLabel('ACME contact e-mail').fill('ops@example.test');
  // The progress shows from the moment the order is accepted (Pebble may be quick, so
  // record every progress card that appears rather than race one).
  await page.evaluate(() => {
    window.portcullisProgress = [];
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('.progress-card progress')) {
        const text = el.closest('.progress-card').textContent;
        if (!window.portcullisProgress.includes(text)) window.portcullisProgress.push(text);
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
  await form.getByRole('button', { name: 'Order certificate' }).click();
  const done = page.locator('#cert-progress .progress-card.done', { hasText: 'Certificate shop is valid' });
  await done.waitFor({ timeout: 90000 });
  const shown = await page.evaluate(() => window.portcullisProgress);
  check(shown.some((t) => t.includes("Ordering shop") && t.includes("pending")), `progress was shown: ${JSON.stringify(shown)}`);
  check(await page.locator('#cert-progress progress').count() === 0, 'the progress bar is gone once it settled');
  const shopRow = page.locator('table tr', { hasText: acmeDomain });
  await shopRow.locator('.badge', { hasText: 'valid' }).waitFor();
  check(/pebble/i.test(await shopRow.innerText()), `issued by Pebble: ${await shopRow.innerText()}`);
  await notReloaded();
  await shoot('certificates');

  say('export a certificate: the chain is shown, the key only once confirmed');
  const devRow = page.locator('table tr', { hasText: 'app-localhost' });
  await devRow.getByRole('button', { name: 'Export', exact: true }).click();
  await page.locator('#cert-export-chain', { hasText: 'BEGIN CERTIFICATE' }).waitFor();
  check(await page.locator('#cert-export-private-key').count() === 0, 'the key is not shown yet');
  await page.getByRole('button', { name: 'Show private key' }).click();
  await confirmDialog('Cancel');
  check(await page.locator('#cert-export-private-key').count() === 0, 'cancelled: the key is still hidden');
  await page.getByRole('button', { name: 'Show private key' }).click();
  await confirmDialog('Show private key');
  await page.locator('#cert-export-private-key', { hasText: 'PRIVATE KEY' }).waitFor();
  await shoot('certificate-export');

  say("convert to production is confirmed, and the API's answer shown");
  // The shop certificate came from the production directory (Pebble): the API says 409.
  await shopRow.getByRole('button', { name: 'Convert to production' }).click();
  await confirmDialog('Cancel');
  await shopRow.getByRole('button', { name: 'Convert to production' }).click();
  await confirmDialog('Convert to production');
  const converted = await page.locator('.notice.error', { hasText: '409' }).innerText();
  check(/already from production/.test(converted), `the API's answer: ${converted}`);

  say('create a user token');
  await nav('Tokens', 'API tokens');
  form = await openDisclosure('New token');
  await form.getByLabel('Name').fill('bob');
  await form.getByLabel('Scope').selectOption('user');
  await form.getByRole('button', { name: 'Create token' }).click();
  userToken = (await page.locator('code.secret').innerText()).trim();
  check(userToken.startsWith('pcs_'), 'the new secret is shown once');
  await shoot('tokens');

  say('register an external service');
  await nav('External services');
  form = await openDisclosure('Register a service');
  await form.getByLabel('Name').fill('billing');
  await form.getByLabel('Target URL').fill('http://127.0.0.1:9');
  await form.getByRole('button', { name: 'Register service' }).click();
  await page.getByRole('cell', { name: 'billing', exact: true }).waitFor();
  await shoot('services');

  say('revoke an OAuth session');
  await nav('OAuth');
  const sessions = page.locator('section.card', { has: page.getByRole('heading', { name: 'Sessions' }) });
  await sessions.locator('tbody tr').first().waitFor();
  await shoot('oauth');
  // Destructive actions ask first; Cancel changes nothing.
  await sessions.locator('tbody tr').first().getByRole('button', { name: 'Revoke', exact: true }).click();
  await confirmDialog('Cancel');
  check(await sessions.locator('tbody tr').count() === 1, 'cancelled: the session is still listed');
  await sessions.locator('tbody tr').first().getByRole('button', { name: 'Revoke', exact: true }).click();
  await confirmDialog('Revoke');
  await sessions.getByText('No active sessions.').waitFor();

  say('register an OAuth client: a bad redirect is named, the secret shown once, the client listed');
  form = await openDisclosure('Register a client');
  await form.getByLabel('Name').fill('ci-client');
  await form.getByLabel('Redirect URIs').fill('not a url');
  await form.getByRole('button', { name: 'Register client' }).click();
  await fieldError(form, 'redirect_uris').filter({ hasText: '400' }).waitFor();
  await form.getByLabel('Redirect URIs').fill('https://ci.example.test/callback');
  await form.getByRole('button', { name: 'Register client' }).click();
  const secret = (await page.locator('#client-secret-value').innerText()).trim();
  check(secret.length >= 20, `the client secret is shown: ${secret.length} characters`);
  const clients = page.locator('section.card', { has: page.getByRole('heading', { name: 'Clients' }) });
  await clients.locator('tbody tr', { hasText: 'ci-client' }).locator('.badge', { hasText: 'registered by an admin' }).waitFor();

  say('set a scope description; a bad scope is named next to the scope');
  form = await openDisclosure('Set a description');
  await form.getByLabel('Scope', { exact: true }).fill('bad scope');
  await form.getByLabel(/^Description/).fill('Use the MCP tools');
  await form.getByRole('button', { name: 'Save description' }).click();
  await fieldError(form, 'scope').filter({ hasText: '400' }).waitFor();
  await form.getByLabel('Scope', { exact: true }).fill('mcp');
  await form.getByRole('button', { name: 'Save description' }).click();
  const scopes = page.locator('section.card', { has: page.getByRole('heading', { name: 'Scope descriptions' }) });
  await scopes.locator('tbody tr', { hasText: 'Use the MCP tools' }).locator('.badge', { hasText: 'custom' }).waitFor();

  say("set and clear a proxy's OAuth settings");
  const perProxy = page.locator('section.card', { has: page.getByRole('heading', { name: 'Per-proxy OAuth settings' }) });
  await perProxy.getByLabel('Proxy hostname').fill('app.localhost');
  await perProxy.getByRole('button', { name: 'Show settings' }).click();
  await perProxy.getByText('Providers: all').waitFor();
  await perProxy.getByLabel('Allowed identity providers').fill('nope');
  await perProxy.getByRole('button', { name: 'Save settings' }).click();
  await fieldError(perProxy, 'idps').filter({ hasText: '400' }).waitFor();
  await perProxy.getByLabel('Allowed identity providers').fill('github');
  await perProxy.getByRole('button', { name: 'Save settings' }).click();
  await perProxy.getByText('Providers: github').waitFor();
  await shoot('oauth-admin');
  await perProxy.getByRole('button', { name: 'Clear settings' }).click();
  await confirmDialog('Clear settings');
  await perProxy.getByText('Providers: all').waitFor();

  say('publish the OAuth endpoints at a host (oauth setup)');
  form = await openDisclosure('Publish the OAuth endpoints at a host');
  await form.getByLabel('Host', { exact: true }).fill('login.localhost');
  await form.getByRole('button', { name: 'Publish' }).click();
  await form.locator('p[role=status]', { hasText: 'Published at https://login.localhost' }).waitFor();
  await form.getByRole('button', { name: 'Publish' }).click();
  await fieldError(form, 'hostname').filter({ hasText: '409' }).waitFor();

  say('docker page');
  await nav('Docker', 'Docker services');
  await shoot('docker');

  say('request logs show the traffic');
  await nav('Request logs');
  const results = page.locator('section.card', { has: page.getByRole('heading', { name: 'Results' }) });
  for (let i = 0; i < 50; i++) {
    if (await results.getByText('GET /hello').count()) break;
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForTimeout(300);
  }
  await results.getByText('GET /hello').first().waitFor();
  say('live follow shows a new request as it arrives; stats chart the traffic');
  const live = page.locator('section.card', { has: page.getByRole('heading', { name: 'Live' }) });
  await live.getByRole('button', { name: 'Follow', exact: true }).click();
  await live.getByText('Following').waitFor();
  const probe = await context.newPage();
  await probe.goto(`${appUrl}/followed`).catch(() => null);
  await probe.close();
  await live.getByText('GET /followed').first().waitFor({ timeout: 30000 });
  const statsCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Stats' }) });
  await statsCard.locator('.chart', { hasText: 'Top hosts' }).getByText('app.localhost').first().waitFor();
  await statsCard.locator('.chart', { hasText: 'Unique visitors by host' }).getByText('app.localhost').first().waitFor();
  say('a small limit pages through older records');
  const filtersCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Filters' }) });
  await filtersCard.getByLabel('Limit').fill('2');
  await filtersCard.getByRole('button', { name: 'Search' }).click();
  const older = results.getByRole('button', { name: 'Older records' });
  await older.waitFor();
  const newest = await results.locator('tbody').innerText();
  check((await results.locator('tbody tr').count()) === 2, 'two records per page');
  await older.click();
  let next = newest;
  for (let i = 0; i < 50 && next === newest; i++) {
    await page.waitForTimeout(100);
    next = await results.locator('tbody').innerText().catch(() => newest);
  }
  check(next !== newest, 'the older page shows other records');
  await shoot('logs');

  await notReloaded();
  say('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').waitFor();

  say("a user token touching another's proxy sees the 403");
  await page.getByLabel('API token').fill(userToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The shell reopens the page the address names (the logs page, where we signed out).
  await page.getByRole('heading', { level: 1, name: 'Request logs' }).waitFor();
  await page.locator('.who .badge', { hasText: 'user' }).waitFor();
  await page.goto(`${base}/ui/#/proxies/app.localhost`);
  await page.getByRole('heading', { level: 1, name: /app\.localhost/ }).waitFor();
  const settings = page.locator('section.card', { has: page.getByRole('heading', { name: 'Settings' }) });
  await settings.getByLabel('Target URL').fill('http://127.0.0.1:9');
  await settings.getByRole('button', { name: 'Save changes' }).click();
  await settings.locator('.form-error', { hasText: '403' }).waitFor();
  const forbidden = await settings.locator('.form-error').innerText();
  check(/forbidden/i.test(forbidden), `the API's 403 message: ${forbidden}`);
  await page.getByRole('button', { name: 'Delete proxy' }).click();
  await confirmDialog('Delete proxy');
  await page.locator('.notice.error', { hasText: '403' }).waitFor();
  await page.locator('.alert.warn', { hasText: 'belongs to another token' }).waitFor();
  await shoot('forbidden', { keepNotices: true });

  say('single sign-on refused or cancelled is worded on the sign-in page');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').waitFor();
  await page.goto(`${base}/ui/?signin_error=access_denied`);
  await page.locator('#sso-err', { hasText: 'cancelled' }).waitFor();
  check(!page.url().includes('signin_error'), 'the error code left the address bar');
  await shoot('signin-error');

  say('sign in with single sign-on (GitHub login through the authorization server)');
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  check(page.url().startsWith(`${base}/ui/`), `back on the console: ${page.url()}`);
  await page.locator('.who .badge', { hasText: 'user' }).waitFor();
  const who = await page.locator('.who').innerText();
  check(who.includes('oauth:'), `signed in as the GitHub user: ${who}`);
  const cookies = await context.cookies(base);
  const sessionCookie = cookies.find((c) => c.name === 'portcullis-ui');
  check(sessionCookie && sessionCookie.httpOnly && sessionCookie.sameSite === 'Lax', `session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  check(!cookies.some((c) => c.name === 'portcullis-ui-login'), 'the login cookie was cleared');
  await shoot('overview-sso');
  say('the single-sign-on user sees the 403 on the admin\'s proxy too');
  await page.goto(`${base}/ui/#/proxies/app.localhost`);
  await page.getByRole('heading', { level: 1, name: /app\.localhost/ }).waitFor();
  await page.getByRole('button', { name: 'Delete proxy' }).click();
  await confirmDialog('Delete proxy');
  await page.locator('.notice.error', { hasText: '403' }).waitFor();

  const csp = consoleErrors.filter((e) => /Content Security Policy|Refused to/i.test(e));
  check(csp.length === 0, `no CSP violations: ${csp.join(' | ')}`);
  console.log(JSON.stringify({ ok: true, user_token: userToken, axe: axeReport, overflow, steps, console_errors: consoleErrors }));
} catch (err) {
  const shown = context?.pages()?.[0];
  if (shown) await shown.screenshot({ path: join(out, 'console-failure.png'), fullPage: true }).catch(() => {});
  console.log(JSON.stringify({ error: `${step}: ${err?.stack ?? err}`, steps, axe: axeReport, console_errors: consoleErrors }));
  code = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
