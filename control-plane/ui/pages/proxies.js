// Proxies: list with search, create, and per proxy: every field of the API, protection
// (edge auth, allowlists, identity headers), the MCP resource settings, delete.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice, action } from '../dom.js';

const num = (name, label, help) => ({ name, label, type: 'number', help, advanced: true });

/** Every ProxyInput field but the hostname. */
const FIELDS = [
  { name: 'target_url', label: 'Target URL', type: 'url', placeholder: 'http://127.0.0.1:3000', required: true },
  { name: 'enabled', label: 'Enabled', type: 'bool', default: true },
  { name: 'enable_http', label: 'Serve plain HTTP', type: 'bool', default: true },
  { name: 'enable_https', label: 'Serve HTTPS (orders a certificate)', type: 'bool' },
  { name: 'redirect_http_to_https', label: 'Redirect HTTP to HTTPS (308)', type: 'bool' },
  { name: 'preserve_host_header', label: 'Send the client’s Host upstream', type: 'bool' },
  num('hsts_max_age_secs', 'HSTS max-age (s)', '0 = no Strict-Transport-Security'),
  { name: 'certificate_name', advanced: true, label: 'Certificate', type: 'text', help: 'Name of an attached certificate; empty = any covering one' },
  num('connect_timeout_ms', 'Connect timeout (ms)', '0 = default (10 s)'),
  num('read_timeout_ms', 'Read timeout (ms)', '0 = default (60 s)'),
  num('idle_timeout_ms', 'Idle timeout (ms)', '0 = default (10 min)'),
  num('rate_limit_rps', 'Rate limit (requests/s)', '0 = off'),
  num('rate_limit_burst', 'Rate burst', '0 = the rate'),
  { name: 'rate_limit_key', advanced: true, label: 'Rate limit by', type: 'select', options: ['ip', 'subject', 'client'] },
  num('max_concurrent_requests', 'Max concurrent requests', '0 = no limit'),
  num('max_request_body_bytes', 'Max request body (bytes)', '0 = no limit'),
  { name: 'upstream_proxy_protocol', advanced: true, label: 'PROXY protocol upstream', type: 'select', options: ['off', 'v1', 'v2'] },
  { name: 'ip_allowlist', advanced: true, label: 'IP allowlist (CIDRs)', type: 'list', placeholder: '10.0.0.0/8, 2001:db8::/32', help: 'Empty = every client' },
  { name: 'custom_request_headers', advanced: true, label: 'Request headers to add', type: 'map', placeholder: 'X-Env: prod', help: 'One "Name: value" per line' },
  { name: 'custom_response_headers', advanced: true, label: 'Response headers to add', type: 'map', placeholder: 'X-Frame-Options: DENY' },
  { name: 'log_query', advanced: true, label: 'Log query strings (credential parameters removed)', type: 'bool' },
];

const AUTH_FIELDS = [
  { name: 'mode', label: 'Mode', type: 'select', options: ['forward', 'redirect', 'passthrough'], help: 'forward: bearer tokens (APIs, MCP); redirect: browser login; passthrough: never refuses' },
  { name: 'auth_host', label: 'Authorization server host', type: 'text', placeholder: 'auth.example.com', required: true },
  { name: 'required_scopes', label: 'Required scopes', type: 'list', placeholder: 'mcp' },
  { name: 'public_paths', label: 'Public paths', type: 'list', placeholder: '/health' },
  { name: 'allowed_users', label: 'Allowed users', type: 'list' },
  { name: 'allowed_orgs', label: 'Allowed GitHub orgs', type: 'list' },
  { name: 'allowed_teams', label: 'Allowed teams (org/team)', type: 'list' },
  { name: 'allowed_email_domains', label: 'Allowed e-mail domains', type: 'list' },
  { name: 'allowed_groups', label: 'Allowed groups', type: 'list' },
  { name: 'forward_token', label: 'Forward the bearer token upstream', type: 'bool' },
  { name: 'identity_headers', label: 'Identity header names', type: 'map', placeholder: 'user: X-Remote-User', help: 'Keys: user, email, subject, scopes, client-id, groups' },
];

const RESOURCE_FIELDS = [
  { name: 'endpoint', label: 'MCP endpoint path', type: 'text', placeholder: '/mcp' },
  { name: 'scopes_supported', label: 'Scopes supported', type: 'list' },
  { name: 'resource_documentation', label: 'Documentation URL', type: 'url' },
  { name: 'allowed_origins', label: 'Allowed origins (CORS)', type: 'list', placeholder: 'https://app.example.com' },
  { name: 'fields', label: 'Extra metadata fields (JSON object)', type: 'json', rows: 3 },
];

const editable = (fields) => fields.map((f) => ({ ...f, keepEmpty: true }));

export async function render(main, [host]) {
  if (host) return detail(main, host);
  const proxies = await api.get('/api/v1/proxy/targets');
  const search = h('input#proxy-search', { type: 'search', placeholder: 'hostname or target', 'aria-label': 'Search proxies' });
  const list = h('div');
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = proxies.filter((p) => !q || p.hostname.includes(q) || p.target_url.toLowerCase().includes(q));
    clear(
      list,
      table(
        [
          { label: 'Hostname', value: (p) => h('a', { href: `#/proxies/${encodeURIComponent(p.hostname)}` }, p.hostname) },
          { label: 'Target', value: (p) => h('span.mono', p.target_url) },
          {
            label: 'State',
            value: (p) => h('span', p.enabled ? badge('enabled', 'ok') : badge('disabled', 'warn'), ' ', p.enable_https ? badge('HTTPS') : null),
          },
          { label: 'Protection', value: (p) => (p.auth ? badge(p.auth.mode, 'ok') : badge('open')) },
          { label: 'Allowlist', value: (p) => (p.ip_allowlist.length ? p.ip_allowlist.join(', ') : '—') },
          { label: 'Owner', value: (p) => h('span.mono', p.owner_token_id) },
        ],
        rows,
        q ? 'No proxy matches.' : 'No proxies yet: create one below.',
      ),
    );
  };
  search.addEventListener('input', draw);
  const create = form(
    [{ name: 'hostname', label: 'Hostname', type: 'text', placeholder: 'app.example.com', required: true }, ...FIELDS],
    { rate_limit_key: 'ip', upstream_proxy_protocol: 'off' },
    async (values) => {
      const p = await api.post('/api/v1/proxy/targets', values);
      notice(`Proxy ${p.hostname} created`);
      await render(main, []);
    },
    { submit: 'Create proxy', conflictField: 'hostname', more: 'More settings: certificate, timeouts, limits, allowlist, headers' },
  );
  clear(
    main,
    h('div.page-head', h('h1', 'Proxies'), h('span.lead', `${proxies.length} in total`)),
    disclosure('New proxy', create, proxies.length === 0),
    h('div.card', h('div.toolbar', h('div.field', h('label', { for: 'proxy-search' }, 'Search'), search)), list),
  );
  draw();
}

async function detail(main, host) {
  const path = `/api/v1/proxy/targets/${api.enc(host)}`;
  const p = await api.get(path);
  const resource = await api.get(`${path}/resource`).catch(() => null);
  const again = () => detail(main, host);
  const edit = form(
    editable(FIELDS),
    p,
    async (values) => {
      await api.put(path, values);
      notice(`Proxy ${host} saved`);
      await again();
    },
    { submit: 'Save changes' },
  );
  const authForm = form(
    editable(AUTH_FIELDS),
    p.auth || { mode: 'forward' },
    async (values) => {
      await api.put(`${path}/auth`, values);
      notice(`Protection of ${host} saved`);
      await again();
    },
    { submit: p.auth ? 'Save protection' : 'Enable protection' },
  );
  const resourceForm = form(
    editable(RESOURCE_FIELDS),
    resource || {},
    async (values) => {
      await api.put(`${path}/resource`, values);
      notice(`MCP resource settings of ${host} saved`);
      await again();
    },
    { submit: 'Save resource settings' },
  );
  clear(
    main,
    h(
      'div.page-head',
      h('h1', h('a', { href: '#/proxies' }, 'Proxies'), ' / ', host),
      h(
        'div.actions',
        h('a', { href: `#/routes/${encodeURIComponent(host)}` }, 'Routes of this proxy'),
        danger('Delete proxy', `Delete the proxy ${host}? Traffic for it stops at once.`, async () => {
          await api.del(path);
          notice(`Proxy ${host} deleted`);
          location.hash = '#/proxies';
        }),
      ),
    ),
    !api.isAdmin() && p.owner_token_id !== api.currentSession()?.token_id
      ? h('p.alert.warn', { role: 'note' }, 'This proxy belongs to another token: you can see it, but only its owner or an admin may change it.')
      : null,
    card('Settings', h('span.lead', `owner ${p.owner_token_id}`), edit),
    card(
      'Protection',
      p.auth
        ? h(
            'div.actions',
            badge(`${p.auth.mode} via ${p.auth.auth_host}`, 'ok'),
            danger('Disable protection', `Disable protection of ${host}? Anyone can then reach it.`, async () => {
              await api.del(`${path}/auth`);
              notice(`Protection of ${host} disabled`);
              await again();
            }),
          )
        : badge('open: no token needed', 'warn'),
      authForm,
    ),
    card(
      'MCP resource',
      resource?.endpoint
        ? action('Clear', async () => {
            await api.del(`${path}/resource`);
            notice('Resource settings cleared');
            await again();
          })
        : null,
      h('p.lead', 'Describe a protected proxy as an MCP server (RFC 9728 metadata, CORS origins).'),
      resourceForm,
    ),
  );
}
