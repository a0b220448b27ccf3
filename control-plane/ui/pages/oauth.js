// OAuth: identity providers, login rules, registered clients, sessions (revoke one, or
// every session of a user), consents (revoke), signing-key rotation. Admin only: a `user`
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

const failed = (e) => h('p.form-error', { role: 'alert' }, `${e.message} (HTTP ${e.status})`);

export async function render(main) {
  const [idps, rules, clients, sessions, consents] = await Promise.all(
    ['idps', 'rules', 'clients', 'sessions', 'consents'].map((p) => api.get(`/api/v1/oauth/${p}`).catch((e) => e)),
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
      list(clients, [
        { label: 'Client id', value: (c) => h('span.mono', c.client_id) },
        { label: 'Name', value: (c) => h('span', c.client_name || '—', ' ', badge('self-registered, unverified', 'warn')) },
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
