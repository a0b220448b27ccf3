// Certificates: status (with the CA's error), order (ACME or a self-signed development
// certificate; several domains make a multi-domain one), upload, renew, delete. An order
// runs in the background: the page polls its status until it settles.

import * as api from '../api.js';
import { h, clear, card, table, form, danger, disclosure, notice, action, time } from '../dom.js';
import { certBadge } from './overview.js';

const ORDER = [
  { name: 'name', label: 'Name', type: 'text', placeholder: 'app-example-com', required: true },
  { name: 'domains', label: 'Domains', type: 'list', placeholder: 'app.example.com, www.example.com', required: true, help: 'Several = one multi-domain certificate' },
  { name: 'self_signed', label: 'Self-signed development certificate (no CA)', type: 'bool', help: 'For localhost names and tests; valid 90 days' },
  { name: 'email', label: 'ACME contact e-mail', type: 'text' },
  { name: 'challenge', label: 'Challenge', type: 'select', options: ['http-01', 'tls-alpn-01'] },
  { name: 'staging', label: 'Use the staging CA', type: 'bool' },
];

const UPLOAD = [
  { name: 'name', label: 'Name', type: 'text', required: true },
  { name: 'cert_chain_pem', label: 'Certificate chain (PEM, leaf first)', type: 'textarea', rows: 5 },
  { name: 'private_key_pem', label: 'Private key (PEM)', type: 'textarea', rows: 5 },
];

export async function render(main) {
  const certs = await api.get('/api/v1/certificates');
  const again = () => render(main);
  const progress = h('div', { 'aria-live': 'polite' });
  const order = form(
    ORDER,
    { challenge: 'http-01' },
    async (values) => {
      const c = await api.post('/api/v1/certificates', values);
      notice(`Certificate ${c.name} ordered`);
      await again();
      await follow(c.name);
    },
    { submit: 'Order certificate', conflictField: 'name' },
  );
  const upload = form(UPLOAD, {}, async (values) => {
    const c = await api.post('/api/v1/certificates/upload', values);
    notice(`Certificate ${c.name} uploaded`);
    await again();
  }, { submit: 'Upload', conflictField: 'name' });

  async function follow(name) {
    const target = document.getElementById('cert-progress');
    if (!target) return;
    for (let i = 0; i < 120; i++) {
      const c = await api.get(`/api/v1/certificates/${api.enc(name)}`);
      clear(target, h('p', h('progress', { 'aria-label': `Ordering ${name}` }), ' ', `${name}: `, certBadge(c), c.error ? ` ${c.error}` : ''));
      if (c.status !== 'pending') {
        await again();
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  const columns = [
    { label: 'Name', value: (c) => c.name },
    { label: 'Domains', value: (c) => c.domains.join(', ') },
    { label: 'Source', value: (c) => c.source },
    { label: 'Status', value: (c) => certBadge(c) },
    { label: 'Expires', value: (c) => time(c.not_after) },
    { label: 'Issuer', value: (c) => c.issuer || '—' },
    { label: 'CA error', value: (c) => c.error || '' },
    {
      label: 'Actions',
      value: (c) =>
        h(
          'div.actions',
          action('Status', async () => {
            const s = await api.get(`/api/v1/certificates/${api.enc(c.name)}/status`);
            clear(document.getElementById('cert-progress'), card(`Status of ${c.name}`, null, h('pre.log', JSON.stringify(s, null, 2))));
          }),
          c.source !== 'uploaded'
            ? action('Renew', async () => {
                await api.post(`/api/v1/certificates/${api.enc(c.name)}/renew`);
                notice(`Renewal of ${c.name} started`);
                await again();
                await follow(c.name);
              })
            : null,
          danger('Delete', `Delete the certificate ${c.name}? Proxies using it fall back to another covering certificate, if any.`, async () => {
            await api.del(`/api/v1/certificates/${api.enc(c.name)}`);
            notice(`Certificate ${c.name} deleted`);
            await again();
          }),
        ),
    },
  ];
  clear(
    main,
    h('div.page-head', h('h1', 'Certificates')),
    h('div#cert-progress', progress),
    disclosure('Order a certificate', order),
    disclosure('Upload a certificate', upload),
    card('Certificates', null, table(columns, certs, 'No certificates yet.')),
  );
}
