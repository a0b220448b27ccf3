// Drives the management console (/ui/) in a real headless Chromium through one operator's
// day, asserting what each page shows, and writes screenshots of every page (light, dark,
// and a phone-width one) plus an axe-core accessibility report per page.
//
// Usage: node console.mjs --base URL --app-url URL --out DIR
// Secrets come from the environment, never the command line: PORTCULLIS_ADMIN_TOKEN.
// Prints one JSON line: {"ok": true, "user_token": "...", "axe": {...}, "steps": [...]}
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
    out: { type: 'string' },
  },
});
const base = args.base;
const appUrl = args['app-url'];
const out = args.out;
const adminToken = process.env.PORTCULLIS_ADMIN_TOKEN;
if (!base || !appUrl || !out || !adminToken) {
  console.error('usage: PORTCULLIS_ADMIN_TOKEN=… node console.mjs --base URL --app-url URL --out DIR');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const steps = [];
const axeReport = {};
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

  /** Screenshots (light, dark, phone) and axe in light and dark. */
  async function shoot(name) {
    await page.waitForLoadState('networkidle').catch(() => {});
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
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(out, `console-${name}-phone.png`), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  const nav = async (label, heading) => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: heading ?? label }).waitFor();
  };
  const openDisclosure = async (summary) => {
    const d = page.locator('details.disclosure', { has: page.locator('summary', { hasText: summary }) });
    if (!(await d.evaluate((el) => el.open))) await d.locator('summary').click();
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
  await shoot('certificates');

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
  await sessions.locator('tbody tr').first().getByRole('button', { name: 'Revoke', exact: true }).click();
  await confirmDialog('Revoke');
  await sessions.getByText('No active sessions.').waitFor();

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
  await shoot('logs');

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
  await shoot('forbidden');

  const csp = consoleErrors.filter((e) => /Content Security Policy|Refused to/i.test(e));
  check(csp.length === 0, `no CSP violations: ${csp.join(' | ')}`);
  console.log(JSON.stringify({ ok: true, user_token: userToken, axe: axeReport, steps, console_errors: consoleErrors }));
} catch (err) {
  console.log(JSON.stringify({ error: `${step}: ${err?.stack ?? err}`, steps, axe: axeReport, console_errors: consoleErrors }));
  code = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
