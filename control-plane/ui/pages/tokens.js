// API tokens: list, create (the secret is shown once), delete. Creating tokens is an
// admin's job; a `user` token sees the API's 403.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, danger, disclosure, notice, time } from '../dom.js';

export async function render(main) {
  const tokens = await api.get('/api/v1/tokens');
  const again = () => render(main);
  const shown = h('div', { 'aria-live': 'polite' });
  const create = form(
    [
      { name: 'name', label: 'Name', type: 'text', required: true, placeholder: 'ci-deploy' },
      { name: 'scope', label: 'Scope', type: 'select', options: ['user', 'admin', 'dataplane'] },
    ],
    { scope: 'user' },
    async (values) => {
      const t = await api.post('/api/v1/tokens', values);
      await again();
      clear(
        document.getElementById('token-secret'),
        card(
          `Token ${t.token.name} created`,
          null,
          h('p', 'Copy the secret now: it is never shown again.'),
          h('code.secret', t.secret),
        ),
      );
    },
    { submit: 'Create token', conflictField: 'name' },
  );
  const me = api.currentSession()?.token_id;
  clear(
    main,
    h('div.page-head', h('h1', 'API tokens')),
    h('div#token-secret', shown),
    disclosure('New token', create),
    card(
      'Tokens',
      null,
      table(
        [
          { label: 'Id', value: (t) => h('span.mono', t.id) },
          { label: 'Name', value: (t) => h('span', t.name, t.id === me ? ' ' : null, t.id === me ? badge('this session') : null) },
          { label: 'Scope', value: (t) => badge(t.scope, t.scope === 'admin' ? 'warn' : '') },
          { label: 'Created', value: (t) => time(t.created_at) },
          { label: 'Last used', value: (t) => time(t.last_used_at) },
          { label: 'Created by', value: (t) => h('span.mono', t.created_by || 'bootstrap') },
          {
            label: 'Actions',
            value: (t) =>
              danger('Delete', `Delete the token ${t.name} (${t.id})? Everything using it loses access at once.`, async () => {
                await api.del(`/api/v1/tokens/${api.enc(t.id)}`);
                notice(`Token ${t.name} deleted`);
                await again();
              }),
          },
        ],
        tokens,
      ),
    ),
  );
}
