// Routes: global and per proxy, in the order data planes try them (highest priority
// first, then by id); create and delete. The API has no route update: change = delete +
// create.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice } from '../dom.js';

const FIELDS = [
  { name: 'id', label: 'Id', type: 'text', help: 'Optional; generated when empty' },
  { name: 'priority', label: 'Priority', type: 'number', help: 'Higher is tried first (default 0)' },
  { name: 'match_kind', label: 'Match', type: 'select', options: ['prefix', 'exact', 'regex'] },
  { name: 'path_pattern', label: 'Path pattern', type: 'text', placeholder: '/api', required: true },
  { name: 'methods', label: 'Methods', type: 'list', placeholder: 'GET, POST', help: 'Empty = every method' },
  { name: 'target_kind', label: 'Target kind', type: 'select', options: ['url', 'service', 'proxy'] },
  { name: 'target_value', label: 'Target', type: 'text', placeholder: 'http://127.0.0.1:4000', required: true },
  { name: 'proxy_hostnames', label: 'Proxies', type: 'list', placeholder: 'app.example.com', help: 'Empty = a global route (admin only): applies to every proxy' },
  { name: 'required_scopes', label: 'Extra scopes', type: 'list', help: 'Under a protected proxy' },
  { name: 'description', label: 'Description', type: 'text' },
  { name: 'enabled', label: 'Enabled', type: 'bool', default: true },
  { name: 'public', label: 'Public (no token needed; admin only)', type: 'bool' },
];

export async function render(main, [host]) {
  const all = await api.get('/api/v1/routes');
  const routes = host ? all.filter((r) => !r.proxy_hostnames.length || r.proxy_hostnames.includes(host)) : all;
  const again = () => render(main, host ? [host] : []);
  const columns = [
    { label: '#', value: (r) => String(routes.indexOf(r) + 1) },
    { label: 'Priority', value: (r) => String(r.priority) },
    { label: 'Match', value: (r) => h('span', badge(r.match_kind), ' ', h('span.mono', r.path_pattern)) },
    { label: 'Methods', value: (r) => (r.methods.length ? r.methods.join(', ') : 'any') },
    { label: 'Target', value: (r) => h('span', badge(r.target_kind), ' ', h('span.mono', r.target_value)) },
    { label: 'Applies to', value: (r) => (r.proxy_hostnames.length ? r.proxy_hostnames.join(', ') : badge('global', 'warn')) },
    {
      label: 'Flags',
      value: (r) =>
        h('span', r.enabled ? null : badge('disabled', 'warn'), r.public ? badge('public', 'warn') : null, r.required_scopes.length ? badge(`scopes: ${r.required_scopes.join(' ')}`) : null),
    },
    { label: 'Description', value: (r) => r.description },
    {
      label: 'Actions',
      value: (r) =>
        h(
          'div.actions',
          danger('Delete', `Delete the route ${r.id} (${r.path_pattern})?`, async () => {
            await api.del(`/api/v1/routes/${api.enc(r.id)}`);
            notice(`Route ${r.id} deleted`);
            await again();
          }),
        ),
    },
  ];
  const create = form(
    FIELDS,
    { match_kind: 'prefix', target_kind: 'url', proxy_hostnames: host ? [host] : [] },
    async (values) => {
      const r = await api.post('/api/v1/routes', values);
      notice(`Route ${r.id} created`);
      await again();
    },
    { submit: 'Create route', conflictField: 'id' },
  );
  clear(
    main,
    h(
      'div.page-head',
      h('h1', host ? h('span', h('a', { href: '#/routes' }, 'Routes'), ' / ', host) : 'Routes'),
      host ? h('a', { href: `#/proxies/${encodeURIComponent(host)}` }, `Proxy ${host}`) : null,
    ),
    disclosure('New route', create),
    card(
      host ? `Routes for ${host} (its own and global), in match order` : 'All routes, in match order',
      null,
      h('p.lead', 'Data planes try routes from top to bottom; the first match wins, else the proxy’s target.'),
      table(columns, routes, 'No routes: every request goes to its proxy’s target.'),
    ),
  );
}
