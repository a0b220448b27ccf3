// OAuth: publishing the endpoints at a host (`oauth setup`), identity providers, login
// rules, scope descriptions, per-proxy settings, registered clients (register: the secret is
// shown once), sessions (revoke one, or every session of a user), consents (revoke),
// signing-key rotation. Admin only: a `user`
// token sees the API's 403 in each card.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice, action, time } from '../dom.js';

const IDP = [
  { name: 'name', label: 'Name', type: 'text', required: true, placeholder: 'github' },
  { name: 'kind', label: 'Kind', type: 'select', options: ['github', 'oidc'] },
  { name: 'client_id', label: 'Client id', type: 'text', required: true },
  { name: 'client_secret', label: 'Client secret', type: 'password', required: true, help: 'Stored sealed; never shown again' },
  { name: 'base_url', label: 'Base URL', type: 'url', help: 'OIDC issuer, or GitHub Enterprise Server' },
  { name: 'api_url', label: 'API URL', type: 'url', help: 'GitHub Enterprise Server API' },
  { name: 'scopes', label: 'Scopes', type: 'list', placeholder: 'openid, email, profile' },
];

const RULE = [
  { name: 'users', label: 'Users', type: 'list', keepEmpty: true },
  { name: 'groups', label: 'Groups (org, org/team, OIDC group)', type: 'list', keepEmpty: true },
  { name: 'email_domains', label: 'Verified e-mail domains', type: 'list', keepEmpty: true },
  { name: 'scopes', label: 'Scopes granted', type: 'list', keepEmpty: true, placeholder: 'mcp' },
  { name: 'proxy_hostname', label: 'Only for proxy', type: 'text' },
  { name: 'idp', label: 'Only through provider', type: 'text' },
];

const SETUP = [
  { name: 'hostname', label: 'Host', type: 'text', required: true, placeholder: 'auth.example.com', help: 'A proxy with HTTPS is created for it' },
  { name: 'target_url', label: 'Target URL', type: 'url', help: "Where data planes reach this control plane's HTTP listener; default its own URL" },
];

const CLIENT = [
  { name: 'client_name', label: 'Name', type: 'text', placeholder: 'My MCP client' },
  { name: 'redirect_uris', label: 'Redirect URIs', type: 'list', required: true, placeholder: 'https://app.example.com/callback' },
  { name: 'public', label: 'Public client (no secret; PKCE only)', type: 'bool' },
  { name: 'grant_types', label: 'Grant types', type: 'list', placeholder: 'authorization_code, refresh_token', help: 'Default: authorization_code, refresh_token' },
];

const SCOPE = [
  { name: 'scope', label: 'Scope', type: 'text', required: true, placeholder: 'mcp' },
  { name: 'description', label: 'Description (shown to users on the consent page)', type: 'text', required: true },
];

const PROXY_PICK = [{ name: 'hostname', label: 'Proxy hostname', type: 'text', required: true, placeholder: 'mcp.example.com' }];

const PROXY_SETTINGS = [
  { name: 'idps', label: 'Allowed identity providers', type: 'list', keepEmpty: true, help: 'Empty = all' },
  { name: 'github_client_id', label: 'GitHub app client id (override)', type: 'text', keepEmpty: true, help: 'Empty removes the override' },
  { name: 'github_client_secret', label: 'GitHub app client secret', type: 'password', help: 'Required with a client id; never shown again' },
  { name: 'metadata', label: 'Metadata overrides (JSON object)', type: 'json', keepEmpty: true, rows: 3 },
];

const failed = (e) => h('p.form-error', { role: 'alert' }, `${e.message} (HTTP ${e.status})`);

export async function render(main) {
  const [idps, rules, clients, sessions, consents, scopes] = await Promise.all(
    ['idps', 'rules', 'clients', 'sessions', 'consents', 'scopes'].map((p) => api.get(`/api/v1/oauth/${p}`).catch((e) => e)),
  );
  const again = () => render(main);
  const idpForm = form(IDP, { kind: 'github' }, async (v) => {
    await api.post('/api/v1/oauth/idps', v);
    notice(`Provider ${v.name} added`);
    await again();
  }, { submit: 'Add provider', conflictField: 'name' });
  const ruleForm = form(RULE, {}, async (v) => {
    await api.post('/api/v1/oauth/rules', v);
    notice('Login rule added');
    await again();
  }, { submit: 'Add rule' });
  const setupResult = h('div', { 'aria-live': 'polite' });
  const setupForm = form(SETUP, {}, async (v) => {
    const r = await api.post('/api/v1/oauth/setup', v);
    notice(`OAuth endpoints published at https://${r.proxy.hostname}`);
    clear(
      setupResult,
      h('p', { role: 'status' }, `Published at https://${r.proxy.hostname} → ${r.proxy.target_url}; issuer ${r.issuer}`),
      r.warning ? h('p.form-error', r.warning) : null,
    );
  }, { submit: 'Publish', conflictField: 'hostname' });
  // The secret of a confidential client exists in clear only in this answer: show it once.
  const secretBox = h('div#client-secret', { 'aria-live': 'polite' });
  const clientForm = form(CLIENT, {}, async (v) => {
    const body = { redirect_uris: v.redirect_uris || [], client_name: v.client_name, grant_types: v.grant_types };
    if (v.public) body.token_endpoint_auth_method = 'none';
    const r = await api.post('/api/v1/oauth/clients', body);
    await again();
    const box = document.getElementById('client-secret');
    if (!box) return;
    clear(
      box,
      h(
        'section.card.progress-card.done',
        { role: 'status' },
        h('p', h('strong', `Client ${r.client_name || r.client_id} registered`)),
        h('p', 'Client id: ', h('code.mono', r.client_id)),
        r.client_secret
          ? h('p', 'Client secret (shown once, copy it now): ', h('code.mono#client-secret-value', r.client_secret))
          : h('p.help', 'Public client: no secret.'),
      ),
    );
  }, { submit: 'Register client', conflictField: 'client_name' });
  const scopeForm = form(SCOPE, {}, async (v) => {
    await api.put(`/api/v1/oauth/scopes/${api.enc(v.scope)}`, { description: v.description });
    notice(`Description of ${v.scope} saved`);
    await again();
  }, { submit: 'Save description' });
  const proxyView = h('div#proxy-oauth', { 'aria-live': 'polite' });
  const showProxy = async (hostname) => {
    const st = await api.get(`/api/v1/oauth/proxies/${api.enc(hostname)}`);
    const edit = form(PROXY_SETTINGS, st, async (v) => {
      if (!v.github_client_secret) delete v.github_client_secret;
      await api.put(`/api/v1/oauth/proxies/${api.enc(st.hostname)}`, v);
      notice(`OAuth settings of ${st.hostname} saved`);
      await showProxy(st.hostname);
    }, { submit: 'Save settings' });
    clear(
      proxyView,
      h('h3', `OAuth settings of ${st.hostname}`),
      h('p', 'Providers: ', st.idps.length ? st.idps.join(', ') : 'all', ' · GitHub app: ', st.github_client_id || 'the default', ' · Metadata overrides: ', Object.keys(st.metadata).length ? Object.keys(st.metadata).join(', ') : 'none', ' · ', st.updated_at ? `changed ${time(st.updated_at)}` : 'defaults'),
      edit,
      h('div.actions', danger('Clear settings', `Clear the OAuth settings of ${st.hostname}? It goes back to every provider, the default GitHub app and no metadata overrides.`, async () => {
        await api.del(`/api/v1/oauth/proxies/${api.enc(st.hostname)}`);
        notice(`OAuth settings of ${st.hostname} cleared`);
        await showProxy(st.hostname);
      })),
    );
  };
  const proxyPick = form(PROXY_PICK, {}, (v) => showProxy(v.hostname), { submit: 'Show settings' });
  const list = (data, cols, empty) => (data instanceof Error ? failed(data) : table(cols, data, empty));
  clear(
    main,
    h(
      'div.page-head',
      h('h1', 'OAuth'),
      action('Rotate signing keys', async () => {
        const r = await api.post('/api/v1/oauth/keys/rotate');
        notice(`New signing key ${r.kid}`);
      }),
    ),
    disclosure('Publish the OAuth endpoints at a host', h('div', setupForm, setupResult)),
    card(
      'Identity providers',
      null,
      disclosure('Add a provider', idpForm),
      list(idps, [
        { label: 'Name', value: (i) => i.name },
        { label: 'Kind', value: (i) => badge(i.kind) },
        { label: 'Client id', value: (i) => h('span.mono', i.client_id) },
        { label: 'Base URL', value: (i) => i.base_url || '—' },
        { label: 'Scopes', value: (i) => i.scopes.join(' ') },
        { label: 'Actions', value: (i) => danger('Delete', `Delete the provider ${i.name}? Nobody can log in through it any more.`, async () => {
          await api.del(`/api/v1/oauth/idps/${api.enc(i.name)}`);
          notice(`Provider ${i.name} deleted`);
          await again();
        }) },
      ], 'No identity provider: add GitHub or an OpenID Connect provider.'),
    ),
    card(
      'Login rules',
      null,
      h('p.lead', 'Who may log in, and with which scopes. No rule, no login.'),
      disclosure('Add a rule', ruleForm),
      list(rules, [
        { label: 'Who', value: (r) => [...r.users.map((u) => `user ${u}`), ...r.groups.map((g) => `group ${g}`), ...r.email_domains.map((d) => `@${d}`)].join(', ') },
        { label: 'Scopes', value: (r) => r.scopes.join(' ') },
        { label: 'Proxy', value: (r) => r.proxy_hostname || 'any' },
        { label: 'Provider', value: (r) => r.idp || 'any' },
        { label: 'Actions', value: (r) => danger('Delete', 'Delete this login rule?', async () => {
          await api.del(`/api/v1/oauth/rules/${api.enc(r.id)}`);
          notice('Rule deleted');
          await again();
        }) },
      ], 'No login rules: nobody can log in.'),
    ),
    card(
      'Scope descriptions',
      null,
      h('p.lead', 'What each scope allows, in words for the consent page.'),
      disclosure('Set a description', scopeForm),
      list(scopes, [
        { label: 'Scope', value: (x) => h('span.mono', x.scope) },
        { label: 'Description', value: (x) => x.description || '—' },
        { label: 'Source', value: (x) => badge(x.source, x.source === 'custom' ? 'ok' : '') },
        { label: 'Actions', value: (x) => (x.source === 'custom'
          ? danger('Delete', `Delete the description of ${x.scope}? The built-in one, if any, is shown again.`, async () => {
            await api.del(`/api/v1/oauth/scopes/${api.enc(x.scope)}`);
            notice(`Description of ${x.scope} deleted`);
            await again();
          })
          : '') },
      ], 'No scopes.'),
    ),
    card(
      'Per-proxy OAuth settings',
      null,
      h('p.lead', 'Which providers a proxy offers, its own GitHub app, metadata overrides.'),
      proxyPick,
      proxyView,
    ),
    card(
      'Sessions',
      null,
      list(sessions, [
        { label: 'User', value: (s) => h('span', s.login || s.sub, ' ', h('span.mono', `(${s.sub})`)) },
        { label: 'Client', value: (s) => h('span.mono', s.client_id) },
        { label: 'Scopes', value: (s) => s.scopes.join(' ') },
        { label: 'Resources', value: (s) => s.resources.join(', ') },
        { label: 'Started', value: (s) => time(s.created_at) },
        { label: 'Refresh until', value: (s) => time(s.refresh_expires_at) },
        { label: 'Actions', value: (s) => h('div.actions',
          danger('Revoke', `Revoke this session of ${s.login || s.sub}? Its tokens stop working on every data plane.`, async () => {
            await api.del(`/api/v1/oauth/sessions/${api.enc(s.id)}`);
            notice('Session revoked');
            await again();
          }),
          danger('Revoke all of user', `Revoke every session and token of ${s.login || s.sub}?`, async () => {
            await api.del(`/api/v1/oauth/users/${api.enc(s.sub)}/sessions`);
            notice(`Every session of ${s.login || s.sub} revoked`);
            await again();
          })) },
      ], 'No active sessions.'),
    ),
    card(
      'Consents',
      null,
      list(consents, [
        { label: 'User', value: (c) => h('span.mono', c.sub) },
        { label: 'Client', value: (c) => h('span.mono', c.client_id) },
        { label: 'Resource', value: (c) => c.resource },
        { label: 'Scopes', value: (c) => c.scopes.join(' ') },
        { label: 'Given', value: (c) => time(c.created_at) },
        { label: 'Actions', value: (c) => danger('Revoke', `Revoke the consent of ${c.sub} for ${c.client_id}? They will be asked again.`, async () => {
          await api.del(`/api/v1/oauth/consents?sub=${api.enc(c.sub)}&client_id=${api.enc(c.client_id)}`);
          notice('Consent revoked');
          await again();
        }) },
      ], 'No consents given.'),
    ),
    card(
      'Clients',
      null,
      disclosure('Register a client', clientForm),
      secretBox,
      list(clients, [
        { label: 'Client id', value: (c) => h('span.mono', c.client_id) },
        { label: 'Name', value: (c) => h('span', c.client_name || '—', ' ', c.admin_registered ? badge('registered by an admin', 'ok') : badge('self-registered, unverified', 'warn')) },
        { label: 'Redirect URIs', value: (c) => c.redirect_uris.join(' ') },
        { label: 'Auth', value: (c) => c.token_endpoint_auth_method },
        { label: 'Registered', value: (c) => time(c.created_at) },
        { label: 'Actions', value: (c) => danger('Delete', `Delete the client ${c.client_id}? Every token it holds is revoked.`, async () => {
          await api.del(`/api/v1/oauth/clients/${api.enc(c.client_id)}`);
          notice('Client deleted');
          await again();
        }) },
      ], 'No registered clients.'),
    ),
  );
}
