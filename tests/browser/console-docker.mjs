// Drives the console's Docker page in a real headless Chromium against the real engine: a
// create refused with the API's error next to its field, a service created from a local
// busybox image, running → stop → exited → start, its logs (shown and followed), its stats,
// a port added and removed (each recreating the container), an orphaned container cleaned
// up after a confirmation, the service deleted after one. Screenshots (laptop and phone,
// light and dark: DIR/docker-{create-error,services,service}-*.png) and axe-core like
// console.mjs.
//
// Usage: PORTCULLIS_ADMIN_TOKEN=… node console-docker.mjs --base URL --out DIR
//          --service NAME --built NAME --image REF --orphan CONTAINER_NAME
// Prints one JSON line: {"ok": true, "axe": {...}, "steps": [...]} or {"error": "..."}.

import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    out: { type: 'string' },
    service: { type: 'string' },
    image: { type: 'string' },
    built: { type: 'string' },
    orphan: { type: 'string' },
  },
});
const { base, out, service, built, image, orphan } = args;
const adminToken = process.env.PORTCULLIS_ADMIN_TOKEN;
if (!base || !out || !service || !built || !image || !orphan || !adminToken) {
  console.error('usage: PORTCULLIS_ADMIN_TOKEN=… node console-docker.mjs --base URL --out DIR --service NAME --built NAME --image REF --orphan NAME');
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

const profile = mkdtempSync(join(tmpdir(), 'portcullis-console-docker-'));
let context;
let code = 0;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  async function shoot(name) {
    // An open follow stream keeps the network busy: do not wait for idle forever.
    await page.waitForLoadState('networkidle', { timeout: 3000 }).catch(() => {});
    await page.evaluate(() => document.querySelectorAll('#notices .notice').forEach((n) => n.remove()));
    await page.evaluate(() => window.scrollTo(0, 0));
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: join(out, `docker-${name}-${scheme}.png`), fullPage: true });
      await page.evaluate(axeSource);
      axeReport[`${name}-${scheme}`] = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help,
          targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
      });
    }
    await page.setViewportSize({ width: 390, height: 844 });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: join(out, `docker-${name}-${scheme === 'light' ? 'phone' : 'phone-dark'}.png`), fullPage: true });
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 800 });
  }
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
  const stateBadge = () => page.locator('#service-state .badge').first();
  const noticeWith = (text) => page.locator('#notices .notice', { hasText: text }).first();

  say('sign in');
  await page.goto(`${base}/ui/#/docker`);
  await page.getByLabel('API token').fill(adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Docker services' }).waitFor();
  await page.locator('.page-head .badge', { hasText: 'engine reachable' }).waitFor();

  say('the orphaned container is listed');
  const recon = page.locator('section.card', { has: page.getByRole('heading', { name: 'Reconciliation' }) });
  await recon.locator('td', { hasText: orphan }).waitFor();

  say('a bad memory limit is shown next to its field and creates nothing');
  let form = await openDisclosure('New service');
  await form.getByLabel('Name').fill(service);
  await form.getByLabel('Image (already on the engine)').fill(image);
  await form.getByLabel('Memory limit').fill('lots');
  await form.getByRole('button', { name: 'Create service' }).click();
  await fieldError(form, 'memory').filter({ hasText: 'memory' }).waitFor();
  check((await form.getByLabel('Memory limit').getAttribute('aria-invalid')) === 'true', 'the memory field is marked invalid');
  check(!(await page.locator('table', { hasText: service }).count()), 'nothing was created');
  await shoot('create-error');

  say('create the service from the local busybox image');
  await form.getByLabel('Memory limit').fill('64m');
  await form.getByLabel('CPU limit').fill('0.5');
  await form.getByLabel('Ports').fill('http=8080');
  // busybox is the entrypoint: `sh -c` prints a marker, then serves /www.
  await form.getByLabel('Command and arguments').fill(`sh, -c, echo hello-from-${service}; exec /bin/busybox httpd -f -p 8080 -h /www`);
  await form.getByLabel('Environment').fill('GREETING: hi');
  await form.getByRole('button', { name: 'Create service' }).click();
  const servicesCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Services', exact: true }) });
  const row = servicesCard.locator('tbody tr', { has: page.getByRole('link', { name: service, exact: true }) });
  await row.locator('.badge', { hasText: 'running' }).waitFor();
  check((await row.textContent()).includes('64.0 MiB memory'), 'the memory limit is listed');
  await page.locator('section.card', { hasText: 'Host ports' }).locator('td', { hasText: service }).first().waitFor();

  say('open the service: its logs hold what it printed');
  await row.getByRole('link', { name: service }).click();
  await page.getByRole('heading', { level: 1, name: `Service ${service}` }).waitFor();
  await page.locator('#service-log', { hasText: `hello-from-${service}` }).waitFor();
  check((await page.locator('#service-state').textContent()).includes('GREETING'), 'the env key is shown');

  say('stats show memory');
  await page.locator('#stat-memory').waitFor();
  const mem = await page.locator('#stat-memory').textContent();
  check(/^[1-9][\d.]* (B|KiB|MiB)$/.test(mem.trim()), `memory in use is a positive number: ${mem}`);
  check((await page.locator('#service-stats').textContent()).includes('64.0 MiB'), 'the limit is the one set');

  say('follow the logs over SSE');
  await page.getByRole('button', { name: 'Follow', exact: true }).click();
  await page.locator('#log-state', { hasText: 'Following' }).waitFor();
  await page.locator('#service-log', { hasText: `hello-from-${service}` }).waitFor();
  await shoot('service');
  await page.getByRole('button', { name: 'Stop following' }).click();

  say('stop → exited');
  await page.getByRole('button', { name: 'Stop', exact: true }).click();
  await stateBadge().filter({ hasText: 'exited' }).waitFor();
  await page.getByRole('button', { name: 'Start', exact: true }).waitFor();

  say('start → running');
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await stateBadge().filter({ hasText: 'running' }).waitFor();

  say('add a port: the container is recreated');
  form = await openDisclosure('Add a port');
  await form.getByLabel('Container port').fill('9090');
  await form.getByLabel('Port name').fill('admin');
  await form.getByRole('button', { name: 'Add port' }).click();
  await noticeWith('the container was recreated (running)').waitFor();
  const portsCard = page.locator('section.card', { has: page.getByRole('heading', { name: 'Ports' }) });
  await portsCard.locator('td', { hasText: '9090/tcp' }).waitFor();
  check((await portsCard.locator('tbody tr').count()) === 2, 'two ports listed');

  say('a port name taken is shown next to the name field');
  form = await openDisclosure('Add a port');
  await form.getByLabel('Container port').fill('9091');
  await form.getByLabel('Port name').fill('admin');
  await form.getByRole('button', { name: 'Add port' }).click();
  await fieldError(form, 'name').filter({ hasText: /admin/ }).waitFor();

  say('remove the port after a confirmation');
  const adminRow = portsCard.locator('tbody tr', { hasText: '9090/tcp' });
  await adminRow.getByRole('button', { name: 'Remove' }).click();
  await page.locator('dialog.confirm[open]', { hasText: 'recreated' }).waitFor();
  await confirmDialog('Remove');
  await noticeWith('Port admin removed').waitFor();
  check((await noticeWith('Port admin removed').textContent()).includes('recreated'), 'the notice says the container was recreated');
  await portsCard.locator('td', { hasText: '9090/tcp' }).waitFor({ state: 'detached' });
  await stateBadge().filter({ hasText: 'running' }).waitFor();

  say('publish it through a proxy');
  form = await openDisclosure('Publish through a proxy');
  await form.getByLabel('Hostname').fill(`${service}.localhost`);
  await form.getByRole('button', { name: 'Create proxy' }).click();
  await noticeWith(`Proxy ${service}.localhost → http://127.0.0.1:`).waitFor();

  say('back to the list: clean up the orphan after a confirmation');
  await page.getByRole('link', { name: '← All Docker services' }).click();
  await page.getByRole('heading', { level: 1, name: 'Docker services' }).waitFor();
  await recon.locator('td', { hasText: orphan }).waitFor();
  await shoot('services');

  say('live state: a stop behind the page\'s back shows without a reload');
  const behind = async (op) => {
    const r = await fetch(`${base}/api/v1/services/${service}/${op}`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    check(r.ok, `${op} through the API: ${r.status}`);
  };
  await page.evaluate(() => {
    window.portcullisNoReload = true;
  });
  await behind('stop');
  await row.locator('.badge', { hasText: 'exited' }).waitFor();
  await behind('start');
  await row.locator('.badge', { hasText: 'running' }).waitFor();
  check(await page.evaluate(() => window.portcullisNoReload === true), 'the page was not reloaded');
  await recon.getByRole('button', { name: 'Clean up' }).click();
  await confirmDialog('Clean up');
  await noticeWith('Cleanup: removed').waitFor();
  check((await noticeWith('Cleanup: removed').textContent()).includes(orphan), 'the notice names the removed container');
  await recon.locator('td', { hasText: orphan }).waitFor({ state: 'detached' });
  check(!(await recon.textContent()).includes(service), 'the managed service is no orphan');

  say('check a port');
  form = await openDisclosure('Check a port');
  await form.getByLabel('Host port').fill('1');
  await form.getByRole('button', { name: 'Check' }).click();
  await page.locator('#port-check .badge').waitFor();

  say('build a service from a Dockerfile with a context and labels; it runs');
  const ctxDir = mkdtempSync(join(tmpdir(), 'portcullis-build-ctx-'));
  writeFileSync(join(ctxDir, 'hello.txt'), `built-from-context-${built}\n`);
  execFileSync('tar', ['-cf', join(ctxDir, 'context.tar'), '-C', ctxDir, 'hello.txt']);
  form = await openDisclosure('New service');
  await form.getByLabel('Name').fill(built);
  await form.getByLabel('Image (already on the engine)').fill('');
  await form.getByLabel('Dockerfile (build the image instead)').fill(
    `FROM ${image}\nCOPY hello.txt /hello.txt\nCMD ["sh", "-c", "cat /hello.txt; exec sleep 600"]\n`,
  );
  await form.getByLabel('Build context (a .tar, optional)').setInputFiles(join(ctxDir, 'context.tar'));
  await form.getByLabel('Labels').fill('team: web');
  await form.getByLabel('Memory limit').fill('');
  await form.getByLabel('CPU limit').fill('');
  await form.getByLabel('Ports').fill('');
  await form.getByLabel('Command and arguments').fill('');
  await form.getByLabel('Environment').fill('');
  await form.getByRole('button', { name: 'Create service' }).click();
  const builtRow = servicesCard.locator('tbody tr', { has: page.getByRole('link', { name: built, exact: true }) });
  await builtRow.locator('.badge', { hasText: 'running' }).waitFor({ timeout: 90000 });
  rmSync(ctxDir, { recursive: true, force: true });
  check((await builtRow.textContent()).includes(`portcullis-build/${built}`), `the built image is listed: ${await builtRow.textContent()}`);
  await shoot('built');
  await builtRow.getByRole('link', { name: built }).click();
  await page.getByRole('heading', { level: 1, name: `Service ${built}` }).waitFor();
  await page.locator('#service-log', { hasText: `built-from-context-${built}` }).waitFor();
  await page.getByRole('link', { name: '← All Docker services' }).click();
  await page.getByRole('heading', { level: 1, name: 'Docker services' }).waitFor();

  say('delete the service after a confirmation (cancel first)');
  await row.getByRole('button', { name: 'Delete' }).click();
  await page.locator('dialog.confirm[open]').getByRole('button', { name: 'Cancel' }).click();
  check(await row.count(), 'cancel keeps the service');
  await row.getByRole('button', { name: 'Delete' }).click();
  await confirmDialog('Delete');
  await noticeWith(`Service ${service} deleted`).waitFor();
  check((await noticeWith(`Service ${service} deleted`).textContent()).includes(`proxies still pointing at it: ${service}.localhost`), 'the notice lists the proxy left');
  await row.waitFor({ state: 'detached' });

  const errors = consoleErrors.filter((e) => !/Failed to load resource/.test(e));
  check(!errors.length, `no console errors: ${errors.join(' | ')}`);
  console.log(JSON.stringify({ ok: true, axe: axeReport, steps }));
} catch (e) {
  code = 1;
  console.log(JSON.stringify({ error: String(e.stack || e), steps, consoleErrors }));
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
