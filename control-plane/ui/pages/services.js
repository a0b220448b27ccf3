// External services: named upstreams that routes can target (`target_kind: service`).

import * as api from '../api.js';
import { h, clear, card, table, form, danger, disclosure, notice, time } from '../dom.js';

export async function render(main) {
  const services = await api.get('/api/v1/services/external');
  const again = () => render(main);
  const create = form(
    [
      { name: 'name', label: 'Name', type: 'text', required: true, placeholder: 'billing' },
      { name: 'target_url', label: 'Target URL', type: 'url', required: true, placeholder: 'http://10.0.0.5:8080' },
      { name: 'description', label: 'Description', type: 'text' },
    ],
    {},
    async (values) => {
      const s = await api.post('/api/v1/services/external', values);
      notice(`Service ${s.name} registered`);
      await again();
    },
    { submit: 'Register service', conflictField: 'name' },
  );
  clear(
    main,
    h('div.page-head', h('h1', 'External services')),
    disclosure('Register a service', create),
    card(
      'Services',
      null,
      table(
        [
          { label: 'Name', value: (s) => s.name },
          { label: 'Target', value: (s) => h('span.mono', s.target_url) },
          { label: 'Description', value: (s) => s.description },
          { label: 'Owner', value: (s) => h('span.mono', s.owner_token_id) },
          { label: 'Created', value: (s) => time(s.created_at) },
          {
            label: 'Actions',
            value: (s) =>
              danger('Delete', `Delete the service ${s.name}?`, async () => {
                await api.del(`/api/v1/services/external/${api.enc(s.name)}`);
                notice(`Service ${s.name} deleted`);
                await again();
              }),
          },
        ],
        services,
        'No external services registered.',
      ),
    ),
  );
}
