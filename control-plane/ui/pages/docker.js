// Docker services: engine health, services with live state, start/stop/restart/delete,
// logs, publishing through a proxy, host-port allocations.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice, action, time } from '../dom.js';

const CREATE = [
  { name: 'name', label: 'Name', type: 'text', required: true, placeholder: 'web' },
  { name: 'image', label: 'Image (already on the engine)', type: 'text', required: true, placeholder: 'my-image:1' },
  { name: 'ports', label: 'Ports', type: 'list', placeholder: 'http=8080, 9000:19000/tcp', help: '[NAME=]CONTAINER[:HOST][/tcp|udp]; no HOST = allocated' },
  { name: 'command', label: 'Command and arguments', type: 'list', placeholder: 'httpd, -f, -p, 8080', help: 'Comma separated' },
  { name: 'env', label: 'Environment', type: 'map', placeholder: 'LOG_LEVEL: info', help: 'Values are never shown again' },
  { name: 'memory', label: 'Memory limit', type: 'text', placeholder: '256m' },
  { name: 'cpus', label: 'CPU limit', type: 'text', placeholder: '0.5' },
  { name: 'restart_policy', label: 'Restart policy', type: 'select', options: ['', 'no', 'always', 'unless-stopped', 'on-failure'] },
  { name: 'start', label: 'Start now', type: 'bool', default: true },
];

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

export async function render(main) {
  const [health, services, ports] = await Promise.all([
    api.get('/api/v1/docker/health').catch((e) => e),
    api.get('/api/v1/services').catch((e) => e),
    api.get('/api/v1/ports').catch((e) => e),
  ]);
  const again = () => render(main);
  const logs = h('div#service-logs', { 'aria-live': 'polite' });
  const create = form(CREATE, {}, async (v) => {
    const body = { ...v, ports: (v.ports || []).map(port) };
    if (!body.restart_policy) delete body.restart_policy;
    const s = await api.post('/api/v1/services', body);
    notice(`Service ${s.name} created`);
    await again();
  }, { submit: 'Create service', conflictField: 'name' });
  const svc = (name) => `/api/v1/services/${api.enc(name)}`;
  const healthView = health instanceof Error
    ? h('p.form-error', health.message)
    : h('p', health.reachable ? badge('engine reachable', 'ok') : badge('engine unreachable', 'bad'), ' ', h('span.mono', health.address || ''), ' ', health.error || '');
  clear(
    main,
    h('div.page-head', h('h1', 'Docker services'), healthView),
    disclosure('New service', create),
    logs,
    card(
      'Services',
      null,
      services instanceof Error
        ? h('p.form-error', { role: 'alert' }, `${services.message} (HTTP ${services.status})`)
        : table(
            [
              { label: 'Name', value: (s) => s.name },
              { label: 'Image', value: (s) => h('span.mono', s.image) },
              { label: 'State', value: (s) => badge(s.state.status + (s.state.exit_code != null && !s.state.running ? ` (${s.state.exit_code})` : ''), s.state.running ? 'ok' : 'warn') },
              { label: 'Ports', value: (s) => s.ports.map((p) => `${p.name || ''} ${p.bind}:${p.host_port}→${p.container_port}/${p.protocol}`).join(', ') },
              { label: 'Created', value: (s) => time(s.created_at) },
              {
                label: 'Actions',
                value: (s) =>
                  h(
                    'div.actions',
                    ...['start', 'stop', 'restart'].map((op) =>
                      action(op[0].toUpperCase() + op.slice(1), async () => {
                        await api.post(`${svc(s.name)}/${op}`);
                        notice(`${s.name}: ${op} done`);
                        await again();
                      }),
                    ),
                    action('Logs', async () => {
                      const r = await api.get(`${svc(s.name)}/logs?tail=200&timestamps=true`);
                      clear(document.getElementById('service-logs'), card(`Logs of ${s.name}`, null, h('pre.log', r.lines.join('\n') || '(empty)')));
                    }),
                    action('Publish', async () => {
                      const p = await api.post(`${svc(s.name)}/proxy`, {});
                      notice(`Proxy ${p.hostname} → ${p.target_url} created`);
                    }),
                    danger('Delete', `Delete the service ${s.name}? Its container is removed and its ports released.`, async () => {
                      const r = await api.del(svc(s.name));
                      notice(`Service ${s.name} deleted${r?.proxies_left?.length ? `; proxies still pointing at it: ${r.proxies_left.join(', ')}` : ''}`);
                      await again();
                    }),
                  ),
              },
            ],
            services,
            'No Docker services.',
          ),
    ),
    card(
      'Host ports',
      null,
      ports instanceof Error
        ? h('p.form-error', ports.message)
        : table(
            [
              { label: 'Port', value: (p) => `${p.host_port ?? p.port}/${p.protocol}` },
              { label: 'Bind', value: (p) => p.bind },
              { label: 'Service', value: (p) => p.service || '' },
            ],
            ports,
            'No ports allocated.',
          ),
    ),
  );
}
