// Docker services: engine health, services with live state (polled every 3 s), create,
// start/stop/restart/delete, and per service (#/docker/NAME) logs (tail, or followed over SSE),
// stats (one sample, or live), ports (list, add, remove: each change recreates the
// container) and publishing through a proxy. Below the list: the reconciliation view
// (orphaned containers, missing containers, stale allocations; cleanup after a confirm)
// and the host-port registry (allocations, free ranges, a port check).

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice, action, time } from '../dom.js';

const CREATE = [
  { name: 'name', label: 'Name', type: 'text', required: true, placeholder: 'web' },
  { name: 'image', label: 'Image (already on the engine)', type: 'text', placeholder: 'my-image:1', help: 'Or leave it empty and give a Dockerfile' },
  { name: 'dockerfile', label: 'Dockerfile (build the image instead)', type: 'textarea', rows: 4, placeholder: 'FROM busybox\nCMD ["httpd", "-f", "-p", "8080"]', help: 'Built by the engine, tagged portcullis-build/NAME:latest' },
  { name: 'build_context', label: 'Build context (a .tar, optional)', type: 'file', accept: '.tar,application/x-tar', help: 'Files the Dockerfile COPYs; at most 32 MiB' },
  { name: 'ports', label: 'Ports', type: 'list', placeholder: 'http=8080, 9000:19000/tcp', help: '[NAME=]CONTAINER[:HOST][/tcp|udp]; no HOST = allocated' },
  { name: 'command', label: 'Command and arguments', type: 'list', placeholder: 'httpd, -f, -p, 8080', help: 'Comma separated' },
  { name: 'env', label: 'Environment', type: 'map', placeholder: 'LOG_LEVEL: info', help: 'One "NAME: value" per line; values are never shown again' },
  { name: 'labels', label: 'Labels', type: 'map', placeholder: 'team: web', help: 'One "key: value" per line; portcullis.* is reserved' },
  { name: 'memory', label: 'Memory limit', type: 'text', placeholder: '256m' },
  { name: 'cpus', label: 'CPU limit', type: 'text', placeholder: '0.5' },
  { name: 'restart_policy', label: 'Restart policy', type: 'select', options: ['', 'no', 'always', 'unless-stopped', 'on-failure'] },
  { name: 'networks', label: 'Networks', type: 'list', placeholder: 'backend', help: 'Existing engine networks; empty = bridge', advanced: true },
  { name: 'start', label: 'Start now', type: 'bool', default: true },
];

const PORT_ADD = [
  { name: 'container_port', label: 'Container port', type: 'number', required: true, placeholder: '8080' },
  { name: 'host_port', label: 'Host port', type: 'number', help: 'Empty = allocated from the port range' },
  { name: 'name', label: 'Port name', type: 'text', placeholder: 'admin', help: 'Default port-N' },
  { name: 'bind', label: 'Bind address', type: 'text', placeholder: '127.0.0.1' },
  { name: 'protocol', label: 'Protocol', type: 'select', options: ['tcp', 'udp'] },
  { name: 'source_token', label: 'Source token', type: 'text', placeholder: 'tok_… or a token name', help: 'Only this token (and admins) may then manage the port' },
];

const PUBLISH = [
  { name: 'hostname', label: 'Hostname', type: 'text', placeholder: 'NAME.localhost' },
  { name: 'port', label: 'Port name', type: 'text', help: 'Default: the first tcp port' },
  { name: 'target', label: 'Target', type: 'select', options: ['host', 'container'], help: 'host: the published host port; container: the container address' },
  { name: 'https', label: 'Serve HTTPS too', type: 'bool' },
];

const CHECK = [{ name: 'port', label: 'Host port', type: 'number', required: true }, { name: 'bind', label: 'Bind address', type: 'text', placeholder: '127.0.0.1' }];

/** `[NAME=]CONTAINER[:HOST][/PROTO]` → PortInput (the CLI's syntax). */
function port(spec) {
  const m = spec.match(/^(?:([A-Za-z0-9_-]+)=)?(\d+)(?::(\d+))?(?:\/(tcp|udp))?$/);
  if (!m) {
    const e = new Error(`ports: "${spec}" is not [NAME=]CONTAINER[:HOST][/tcp|udp]`);
    e.field = 'ports';
    throw e;
  }
  return { name: m[1], container_port: Number(m[2]), host_port: m[3] ? Number(m[3]) : undefined, protocol: m[4] };
}

// A File as base64 (the REST body carries the build context that way).
async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

const svc = (name) => `/api/v1/services/${api.enc(name)}`;

// Live state: every few seconds the page asks for the services again and updates the
// state badges in place (a `[data-service]` element each), so a container that exits or
// is removed behind the page's back shows so without a reload.
const POLL_MS = 3000;

function pollStates(main) {
  let live = true;
  const timer = setInterval(async () => {
    const cells = main.querySelectorAll('[data-service]');
    if (!cells.length) return;
    const list = await api.get('/api/v1/services').catch(() => null);
    if (!list || !live) return;
    const byName = new Map(list.map((s) => [s.name, s.state]));
    for (const el of cells) {
      const st = byName.get(el.dataset.service) || { status: 'deleted', running: false };
      const key = `${st.status}/${st.exit_code ?? ''}/${st.error ?? ''}`;
      if (el.dataset.status !== key) {
        el.dataset.status = key;
        clear(el, stateBadge(st));
      }
    }
  }, POLL_MS);
  return () => {
    live = false;
    clearInterval(timer);
  };
}

// What the shown view runs in the background (the poll timer, log and stats streams):
// stopped when the view is rendered again (after an action) or the page is left.
let teardown = null;
function reset() {
  teardown?.();
  teardown = null;
}

/** The state badge of `s`, kept current by pollStates. */
const liveState = (s) =>
  h('span', { 'data-service': s.name, 'data-status': `${s.state.status}/${s.state.exit_code ?? ''}/${s.state.error ?? ''}` }, stateBadge(s.state));

/** running → ok, exited/created → warn, missing/unknown/dead → bad, creating → plain. */
function stateBadge(st) {
  const kind = st.running ? 'ok' : ['missing', 'unknown', 'dead'].includes(st.status) ? 'bad' : st.status === 'creating' ? '' : 'warn';
  const code = st.exit_code != null && !st.running && st.status === 'exited' ? ` (${st.exit_code})` : '';
  return h('span.state', badge(st.status + code, kind), st.error ? h('small.help', ` ${st.error}`) : null);
}

/** Memory and CPU limits as set, or a dash. */
const limits = (s) =>
  [s.memory_bytes ? `${bytes(s.memory_bytes)} memory` : '', s.nano_cpus ? `${s.nano_cpus / 1e9} CPU` : ''].filter(Boolean).join(', ') || '—';

const portText = (p) => `${p.name}: ${p.bind}:${p.host_port} → ${p.container_port}/${p.protocol}`;

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** start/stop/restart buttons fitting the state, and delete. */
function lifecycle(s, after) {
  const op = (label, path) =>
    action(label, async () => {
      const v = await api.post(`${svc(s.name)}/${path}`);
      notice(`${s.name}: ${v.state.status}`);
      await after(v);
    });
  return h(
    'div.actions',
    s.state.running ? op('Stop', 'stop') : op('Start', 'start'),
    op('Restart', 'restart'),
    danger('Delete', `Delete the service ${s.name}? Its container is removed and its ports released.`, async () => {
      const r = await api.del(svc(s.name));
      const left = r?.proxies_left?.length ? `; proxies still pointing at it: ${r.proxies_left.join(', ')}` : '';
      notice(`Service ${s.name} deleted${r?.released_ports?.length ? `, released ${r.released_ports.join(', ')}` : ''}${left}`);
      await after(null);
    }),
  );
}

export async function render(main, [name]) {
  reset();
  if (name) return detail(main, name);
  const [health, services, ports, orphans, available] = await Promise.all([
    api.get('/api/v1/docker/health').catch((e) => e),
    api.get('/api/v1/services').catch((e) => e),
    api.get('/api/v1/ports').catch((e) => e),
    api.get('/api/v1/services/cleanup').catch((e) => e),
    api.get('/api/v1/ports/available').catch((e) => e),
  ]);
  const again = () => render(main, []);
  const failed = (e) => h('p.form-error', { role: 'alert' }, `${e.message}${e.status ? ` (HTTP ${e.status})` : ''}`);
  const create = form(CREATE, {}, async (v) => {
    const body = { ...v, ports: (v.ports || []).map(port) };
    if (!body.restart_policy) delete body.restart_policy;
    if (v.build_context) body.build_context = await base64(v.build_context);
    const s = await api.post('/api/v1/services', body);
    notice(`Service ${s.name} created: ${s.state.status}`);
    await again();
  }, { submit: 'Create service', conflictField: 'name', more: 'Networks' });
  const healthView = health instanceof Error
    ? failed(health)
    : h('p', health.reachable ? badge('engine reachable', 'ok') : badge('engine unreachable', 'bad'), ' ', h('span.mono', health.host || ''), ' ', health.error || '');
  const checkResult = h('p#port-check', { 'aria-live': 'polite' });
  const check = form(CHECK, {}, async (v) => {
    const q = v.bind ? `?bind=${api.enc(v.bind)}` : '';
    const r = await api.get(`/api/v1/ports/check/${v.port}${q}`);
    clear(checkResult, badge(r.available ? 'free' : 'taken', r.available ? 'ok' : 'warn'), ` ${r.bind}:${r.port}/${r.protocol} `, r.reason || r.service || '');
  }, { submit: 'Check' });
  clear(
    main,
    h('div.page-head', h('h1', 'Docker services'), healthView),
    disclosure('New service', create),
    card(
      'Services',
      h('div.actions', action('Refresh', again)),
      services instanceof Error
        ? failed(services)
        : table(
            [
              { label: 'Name', value: (s) => h('a', { href: `#/docker/${api.enc(s.name)}` }, s.name) },
              { label: 'Image', value: (s) => h('span.mono', s.image) },
              { label: 'State', value: (s) => liveState(s) },
              { label: 'Ports', value: (s) => h('span.mono', s.ports.map(portText).join(', ')) },
              { label: 'Limits', value: (s) => limits(s) },
              { label: 'Created', value: (s) => time(s.created_at) },
              { label: 'Actions', value: (s) => lifecycle(s, again) },
            ],
            services,
            'No Docker services.',
          ),
    ),
    orphans instanceof Error ? card('Reconciliation', null, failed(orphans)) : reconcile(orphans, again),
    card(
      'Host ports',
      null,
      ports instanceof Error
        ? failed(ports)
        : table(
            [
              { label: 'Port', value: (p) => h('span.mono', `${p.host_port}/${p.protocol}`) },
              { label: 'Bind', value: (p) => h('span.mono', p.bind) },
              { label: 'Service', value: (p) => h('a', { href: `#/docker/${api.enc(p.service)}` }, p.service) },
              { label: 'Port name', value: (p) => p.port_name },
              { label: 'Owner', value: (p) => h('span.mono', p.owner_token_id) },
            ],
            ports,
            'No ports allocated.',
          ),
      available instanceof Error
        ? failed(available)
        : h(
            'p#ports-available',
            `${available.free} free of ${available.range.start}–${available.range.end} on ${available.bind}/${available.protocol}`,
            available.ranges.length ? `: ${available.ranges.slice(0, 8).map((r) => (r.start === r.end ? r.start : `${r.start}–${r.end}`)).join(', ')}${available.ranges.length > 8 ? ', …' : ''}` : '',
          ),
      disclosure('Check a port', h('div', check, checkResult)),
    ),
  );
  teardown = pollStates(main);
  return reset;
}

/** Orphaned containers, missing containers and stale allocations; cleanup after a confirm. */
function reconcile(r, again) {
  const clean = !r.orphans.length && !r.missing.length && !r.stale_allocations.length;
  return card(
    'Reconciliation',
    clean
      ? null
      : danger('Clean up', `Remove ${r.orphans.length} orphaned container(s) and release ${r.stale_allocations.length} stale allocation(s)? Services whose container is missing stay listed.`, async () => {
          const done = await api.post('/api/v1/services/cleanup');
          notice(`Cleanup: removed ${done.removed.length ? done.removed.join(', ') : 'no container'}; released ${done.released.length ? done.released.join(', ') : 'no allocation'}`);
          await again();
        }),
    h('p.lead', clean ? 'The engine and the records agree: no orphaned container, no missing container, no stale allocation.' : 'The engine and the records disagree:'),
    r.orphans.length
      ? h('div', h('h3', 'Orphaned containers (no record)'), table(
          [
            { label: 'Container', value: (o) => h('span.mono', o.container_name) },
            { label: 'Service label', value: (o) => o.service },
            { label: 'Image', value: (o) => h('span.mono', o.image) },
            { label: 'State', value: (o) => badge(o.state, o.state === 'running' ? 'ok' : 'warn') },
            { label: 'Owner', value: (o) => h('span.mono', o.owner_token_id) },
          ],
          r.orphans,
        ))
      : null,
    r.missing.length ? h('p', h('strong', 'Missing containers: '), r.missing.join(', ')) : null,
    r.stale_allocations.length ? h('p', h('strong', 'Stale allocations: '), h('span.mono', r.stale_allocations.join(', '))) : null,
  );
}

/** One service: state and actions, logs, stats, ports, publish. */
async function detail(main, name) {
  const s = await api.get(svc(name));
  const again = () => render(main, [name]);
  const back = () => {
    location.hash = '#/docker';
  };
  let logSource = null;
  let statSource = null;
  const stop = () => {
    logSource?.close();
    logSource = null;
    statSource?.close();
    statSource = null;
  };


  // Logs: the last N lines, or followed (text/event-stream, one {"line"} per event).
  const logBox = h('pre.log#service-log', { role: 'log', tabindex: '0', 'aria-label': `Logs of ${name}` }, '(not loaded)');
  const tail = h('input#log-tail', { type: 'number', min: '1', max: '10000', value: '200', name: 'tail' });
  const logState = h('span#log-state.help', { 'aria-live': 'polite' });
  const loadLogs = async () => {
    stop();
    const r = await api.get(`${svc(name)}/logs?tail=${Number(tail.value) || 200}&timestamps=true`);
    logBox.textContent = r.lines.join('\n') || '(empty)';
    logState.textContent = `${r.lines.length} line(s)`;
  };
  const follow = async () => {
    logSource?.close();
    const lines = [];
    logBox.textContent = '';
    logState.textContent = 'Following…';
    const src = new EventSource(`${svc(name)}/logs?follow=true&tail=${Number(tail.value) || 200}`);
    logSource = src;
    src.onmessage = (ev) => {
      lines.push(JSON.parse(ev.data).line);
      if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      logBox.textContent = lines.join('\n');
      logBox.scrollTop = logBox.scrollHeight;
    };
    src.addEventListener('error', (ev) => {
      // The stream ends when the container stops; EventSource would reconnect and repeat
      // the tail, so it is closed instead.
      if (ev.data) logState.textContent = `Stream error: ${JSON.parse(ev.data).detail}`;
      else if (logSource === src) logState.textContent = 'The stream ended.';
      src.close();
    });
  };

  // Stats: one sample, or live (one a second).
  const statBox = h('div#service-stats', h('p.empty', 'Not loaded.'));
  const showStats = (x) =>
    clear(
      statBox,
      h(
        'div.grid',
        h('div', h('div.stat-label', 'CPU'), h('div.stat', `${x.cpu_percent.toFixed(1)} %`), h('small.help', `of one CPU; ${x.online_cpus} online`)),
        h('div', h('div.stat-label', 'Memory'), h('div.stat#stat-memory', bytes(x.memory_usage_bytes)), h('small.help', `of ${bytes(x.memory_limit_bytes)} (${x.memory_percent.toFixed(1)} %)`)),
        h('div', h('div.stat-label', 'Network in / out'), h('div.stat', `${bytes(x.network_rx_bytes)} / ${bytes(x.network_tx_bytes)}`)),
        h('div', h('div.stat-label', 'Block read / write'), h('div.stat', `${bytes(x.block_read_bytes)} / ${bytes(x.block_write_bytes)}`)),
        h('div', h('div.stat-label', 'Processes'), h('div.stat', String(x.pids))),
      ),
      h('small.help', x.read ? `Read at ${x.read.slice(0, 19).replace('T', ' ')} UTC` : ''),
    );
  const loadStats = async () => {
    statSource?.close();
    statSource = null;
    showStats(await api.get(`${svc(name)}/stats`));
  };
  const liveStats = async () => {
    statSource?.close();
    const src = new EventSource(`${svc(name)}/stats?stream=true`);
    statSource = src;
    src.onmessage = (ev) => showStats(JSON.parse(ev.data));
    src.addEventListener('error', () => src.close());
  };

  const addPort = form(PORT_ADD, {}, async (v) => {
    const r = await api.post(`${svc(name)}/ports`, v);
    notice(`Port ${portText(r.port)} added${r.recreated ? `; the container was recreated (${r.running ? 'running' : 'not running'})` : ''}`);
    await again();
  }, { submit: 'Add port', conflictField: 'name' });
  const publish = form(PUBLISH, {}, async (v) => {
    const p = await api.post(`${svc(name)}/proxy`, v);
    notice(`Proxy ${p.hostname} → ${p.target_url} created`);
  }, { submit: 'Create proxy', conflictField: 'hostname' });

  clear(
    main,
    h('div.page-head', h('h1', `Service ${s.name}`), h('p', h('a', { href: '#/docker' }, '← All Docker services'))),
    card(
      'State',
      lifecycle(s, async (v) => (v ? again() : back())),
      h(
        'dl.kv#service-state',
        h('dt', 'State'), h('dd', liveState(s)),
        h('dt', 'Started'), h('dd', s.state.started_at ? `${s.state.started_at.slice(0, 19).replace('T', ' ')} UTC` : '—'),
        h('dt', 'Image'), h('dd.mono', s.image),
        h('dt', 'Container'), h('dd.mono', `${s.container_name} ${(s.container_id || '').slice(0, 12)}`),
        h('dt', 'Command'), h('dd.mono', (s.command || []).join(' ') || '(image default)'),
        h('dt', 'Environment'), h('dd.mono', s.env_keys.join(', ') || '—'),
        h('dt', 'Limits'), h('dd', limits(s)),
        h('dt', 'Restart policy'), h('dd', s.restart_policy || 'no'),
        h('dt', 'Networks'), h('dd', (s.networks || []).join(', ') || 'bridge'),
        h('dt', 'Created'), h('dd', time(s.created_at)),
      ),
    ),
    card(
      'Logs',
      null,
      h('div.log-controls', h('label', { for: 'log-tail' }, 'Lines'), tail, action('Show', loadLogs), action('Follow', follow), action('Stop following', async () => {
        stop();
        logState.textContent = 'Stopped.';
      })),
      logState,
      logBox,
    ),
    card('Stats', h('div.actions', action('Refresh stats', loadStats), action('Live', liveStats)), statBox),
    card(
      'Ports',
      null,
      table(
        [
          { label: 'Name', value: (p) => p.name },
          { label: 'Host', value: (p) => h('span.mono', `${p.bind}:${p.host_port}`) },
          { label: 'Container', value: (p) => h('span.mono', `${p.container_port}/${p.protocol}`) },
          { label: 'Source token', value: (p) => h('span.mono', p.source_token_id || '—') },
          {
            label: 'Actions',
            value: (p) =>
              danger('Remove', `Remove port ${p.name} (${p.bind}:${p.host_port})? The container is recreated (briefly unreachable) and the host port released.`, async () => {
                const r = await api.del(`${svc(name)}/ports/${api.enc(p.name)}`);
                const left = r.proxies_left.length ? `; proxies still pointing at it: ${r.proxies_left.join(', ')}` : '';
                notice(`Port ${p.name} removed${r.released ? `, ${r.released} released` : ''}${r.recreated ? `; the container was recreated (${r.running ? 'running' : 'not running'})` : ''}${left}`);
                await again();
              }),
          },
        ],
        s.ports,
        'No published ports.',
      ),
      disclosure('Add a port', addPort),
    ),
    disclosure('Publish through a proxy', publish),
  );
  await loadLogs().catch((e) => {
    logBox.textContent = e.message;
  });
  const stopPolling = pollStates(main);
  teardown = () => {
    stop();
    stopPolling();
  };
  if (s.state.running) await loadStats().catch(() => {});
  return reset;
}
