// Overview: control-plane health and store, data planes (applied vs current version, last
// NACK), certificate expiry warnings and the most recent request errors.

import * as api from '../api.js';
import { h, clear, card, table, badge, time, action } from '../dom.js';

const DAY = 86400;

export async function render(main) {
  const [health, dps, certs, errors] = await Promise.all([
    api.get('/health'),
    api.get('/api/v1/dataplanes').catch((e) => e),
    api.get('/api/v1/certificates').catch((e) => e),
    api.get('/api/v1/logs/errors?limit=10').catch((e) => e),
  ]);
  const now = Date.now() / 1000;
  const warnings = Array.isArray(certs)
    ? certs.filter((c) => c.status !== 'valid' || (c.not_after && c.not_after - now < 14 * DAY))
    : [];
  const stat = (label, value, kind) =>
    h('div.card', h('div.stat-label', label), h('div.stat', kind ? badge(value, kind) : value));
  const peers = Object.entries(health.peers || {});
  clear(
    main,
    h('div.page-head', h('h1', 'Overview'), action('Refresh', () => render(main))),
    h(
      'div.grid',
      stat('Control plane', health.status, health.status === 'ok' ? 'ok' : 'bad'),
      stat('Store', `${health.store_backend} · ${health.store_ok ? 'reachable' : 'unreachable'}`),
      stat('Config version', String(health.config_version)),
      stat('Data planes connected', String(health.connected_data_planes)),
    ),
    peers.length
      ? card(
          'Peers',
          null,
          table(
            [
              { label: 'Peer', value: ([n]) => n },
              { label: 'Address', value: ([, p]) => p.address },
              { label: 'State', value: ([, p]) => (p.reachable ? badge('reachable', 'ok') : badge('unreachable', 'bad')) },
              { label: 'Error', value: ([, p]) => p.error || '' },
            ],
            peers,
          ),
        )
      : null,
    card('Data planes', null, dataplanes(dps)),
    card(
      'Certificates needing attention',
      h('a', { href: '#/certificates' }, 'All certificates'),
      Array.isArray(certs)
        ? table(
            [
              { label: 'Name', value: (c) => c.name },
              { label: 'Domains', value: (c) => c.domains.join(', ') },
              { label: 'Status', value: (c) => certBadge(c) },
              { label: 'Expires', value: (c) => time(c.not_after) },
              { label: 'Error', value: (c) => c.error || '' },
            ],
            warnings,
            'Every certificate is valid for at least two more weeks.',
          )
        : h('p.form-error', certs.message),
    ),
    card(
      'Recent errors',
      h('a', { href: '#/logs' }, 'Request logs'),
      Array.isArray(errors?.items)
        ? table(
            [
              { label: 'Time', value: (r) => r.time.replace("T", " ").slice(0, 19) },
              { label: 'Status', value: (r) => badge(String(r.status), r.status >= 500 ? 'bad' : 'warn') },
              { label: 'Host', value: (r) => r.host },
              { label: 'Request', value: (r) => `${r.method} ${r.path}` },
              { label: 'Client', value: (r) => r.client_ip },
            ],
            errors.items,
            'No 4xx or 5xx answers recently.',
          )
        : h('p.form-error', errors.message),
    ),
  );
}

export function certBadge(c) {
  const now = Date.now() / 1000;
  if (c.status === 'valid' && c.not_after && c.not_after < now) return badge('expired', 'bad');
  if (c.status === 'valid' && c.not_after && c.not_after - now < 14 * DAY) return badge('expires soon', 'warn');
  const kind = { valid: 'ok', pending: 'warn', expiring: 'warn', failed: 'bad' }[c.status] || '';
  return badge(c.status, kind);
}

function dataplanes(dps) {
  if (!dps || dps instanceof Error) return h('p.form-error', dps?.message || 'unavailable');
  return table(
    [
      { label: 'Node', value: (d) => d.node_id },
      { label: 'Connected', value: (d) => (d.connected ? badge('connected', 'ok') : badge('away', 'warn')) },
      {
        label: 'Applied / current',
        value: (d) =>
          h(
            'span',
            `${d.applied_version} / ${dps.current_version} `,
            d.applied_version === dps.current_version ? badge('in sync', 'ok') : badge('behind', 'warn'),
          ),
      },
      { label: 'Last NACK', value: (d) => (d.last_nack_error ? h('span', badge(`v${d.last_nack_version}`, 'bad'), ' ', d.last_nack_error) : '—') },
      { label: 'Address', value: (d) => d.address },
      { label: 'Version', value: (d) => d.software_version },
      { label: 'Last seen', value: (d) => time(d.last_seen) },
    ],
    dps.items,
    'No data plane has connected yet.',
  );
}
