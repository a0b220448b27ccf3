// Opens one URL in a real headless Chromium (the system's /usr/bin/chromium, driven by
// playwright-core) with a fresh profile, follows whatever the pages do (redirects, cookies,
// forms that submit themselves) until the page has loaded, then saves a screenshot and
// prints one JSON line describing where it ended:
//
//   {"url": "...", "status": 200, "title": "...", "lang": "en", "text": "<body text>",
//    "navigations": [{"url": "...", "status": 302}, ...],
//    "cookies": [{"name": "...", "domain": "...", "path": "/", "secure": true, "httpOnly": true,
//                 "sameSite": "Lax"}],
//    "console": ["error: Refused to apply inline style ...", ...],
//    "overflow": 0,
//    "axe": [{"id": "color-contrast", "impact": "serious", "help": "...", "targets": [...]}]}
//
// Cookie values are never printed. On a browser error the line is {"error": "..."} and the
// exit code is 1. `console` lists the page's console errors and warnings (a blocked
// stylesheet under the Content-Security-Policy shows up there), each with the URL it
// concerns; the final document's own error status is left out (it is `status`). `axe` is present with
// --axe: the violations axe-core (tests/browser/node_modules/axe-core) finds on the final
// page, evaluated through the DevTools protocol, so the page's own CSP stays in force.
// `overflow` is how many CSS pixels the page is wider than the window (0: nothing sticks
// out sideways, so nothing needs a horizontal scroll or is cut off at a phone's width).
//
// --phone: a phone's screen (390×844 CSS pixels at device scale 2, touch, mobile viewport
// handling) instead of a laptop's 1000×700.
// --ca PEM: trust this CA as a root, the way a user or an administrator does on Linux:
// it is added to an NSS database (`certutil`, Debian's libnss3-tools) in a private $HOME
// the browser is started with. Without it, a private CA's certificate is refused.
// --click NAME: once loaded, click the link or button with that accessible name and follow
// where it leads; --wait-heading NAME then waits for the level-1 heading NAME (a page that
// renders itself by script) before the screenshot.
//
// Usage: node visit.mjs --url URL --screenshot PATH [--timeout-ms 30000] [--axe]
//        [--color-scheme light|dark] [--phone] [--ca PEM] [--click NAME] [--wait-heading NAME]
// The browser binary is $PORTCULLIS_CHROMIUM, else /usr/bin/chromium (Debian's `chromium`,
// which tests/run.sh installs): a browser download of the test tool's own is not used.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    screenshot: { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
    axe: { type: 'boolean', default: false },
    'color-scheme': { type: 'string', default: 'light' },
    phone: { type: 'boolean', default: false },
    ca: { type: 'string' },
    click: { type: 'string' },
    'wait-heading': { type: 'string' },
  },
});
if (!args.url || !args.screenshot) {
  console.error('usage: node visit.mjs --url URL --screenshot PATH [--timeout-ms N] [--axe] [--phone] [--ca PEM] [--click NAME] [--wait-heading NAME]');
  process.exit(2);
}
const timeout = Number.parseInt(args['timeout-ms'], 10);

const profile = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
let context;
let code = 0;
try {
  const env = { ...process.env };
  if (args.ca) {
    // Chromium on Linux takes locally trusted roots from the NSS database in $HOME.
    const home = join(profile, 'home');
    const db = join(home, '.pki', 'nssdb');
    mkdirSync(db, { recursive: true });
    for (const certutil of [
      ['-N', '-d', `sql:${db}`, '--empty-password'],
      ['-A', '-d', `sql:${db}`, '-t', 'C,,', '-n', 'portcullis-test-ca', '-i', args.ca],
    ]) {
      const run = spawnSync('certutil', certutil, { encoding: 'utf8', timeout: 10000 });
      if (run.status !== 0) {
        throw new Error(`certutil ${certutil[0]} failed (apt-get install libnss3-tools): ${run.error ?? ''} ${run.stderr}`);
      }
    }
    env.HOME = home;
  }
  const screen = args.phone
    ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
    : { viewport: { width: 1000, height: 700 } };
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout,
    // Nothing but the pages under test: no sandbox (root in CI), no GPU, no QUIC, no
    // first-run, update, sync or other background traffic.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    ...screen,
    env,
    colorScheme: args['color-scheme'] === 'dark' ? 'dark' : 'light',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  const navigations = [];
  const consoleLines = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      // The document's own error status is reported too: left out, it is `status`.
      const from = msg.location()?.url ?? '';
      if (from === page.url() && msg.text().startsWith('Failed to load resource')) return;
      consoleLines.push(`${msg.type()}: ${msg.text()} (${from})`.slice(0, 500));
    }
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      navigations.push({ url: response.url(), status: response.status() });
    }
  });
  const response = await page.goto(args.url, { waitUntil: 'load' });
  // Pages that move on by themselves (form posts, script redirects) get a moment to do so.
  await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
  if (args.click) {
    const name = args.click;
    const moved = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
    await page
      .getByRole('link', { name, exact: true })
      .or(page.getByRole('button', { name, exact: true }))
      .click();
    await moved;
    await page.waitForLoadState('load');
    await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
  }
  if (args['wait-heading']) {
    await page.getByRole('heading', { level: 1, name: args['wait-heading'], exact: true }).waitFor();
    await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
  }
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  await page.screenshot({ path: args.screenshot, fullPage: true });
  let axe;
  if (args.axe) {
    const require = createRequire(import.meta.url);
    await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
    const results = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, { resultTypes: ['violations'] }),
    );
    axe = results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    }));
  }
  const cookies = (await context.cookies()).map((c) => ({
    name: c.name,
    domain: c.domain,
    path: c.path,
    secure: c.secure,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
  }));
  const last = navigations.at(-1);
  console.log(
    JSON.stringify({
      url: page.url(),
      status: last?.status ?? response?.status() ?? 0,
      title: await page.title(),
      lang: await page.evaluate(() => document.documentElement.lang),
      text: (await page.locator('body').innerText().catch(() => '')).slice(0, 20000),
      navigations,
      cookies,
      console: consoleLines,
      overflow,
      axe,
    }),
  );
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.stack ?? err) }));
  code = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
