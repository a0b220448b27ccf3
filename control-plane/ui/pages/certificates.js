// Certificates: status (with the CA's error), order (ACME or a self-signed development
// certificate; several domains make a multi-domain one), upload, renew, export (the chain;
// the private key only after a confirmation, admin only), convert a staging certificate to
// production, delete. An order
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
  const order = form(
    ORDER,
    { challenge: 'http-01' },
    async (values) => {
      const c = await api.post('/api/v1/certificates', values);
      await again();
      await follow(c);
    },
    { submit: 'Order certificate', conflictField: 'name' },
  );
  const upload = form(UPLOAD, {}, async (values) => {
    const c = await api.post('/api/v1/certificates/upload', values);
    notice(`Certificate ${c.name} uploaded`);
    await again();
  }, { submit: 'Upload', conflictField: 'name' });

  // A long operation: the order runs on the control plane. Show where it is from the
  // moment it is accepted until it settles, then leave how it ended in place.
  async function follow(first) {
    const name = first.name;
    const started = Date.now();
    let c = first;
    for (let i = 0; c.status === 'pending' && i < 180; i++) {
      const target = document.getElementById('cert-progress');
      if (!target) return;
      const secs = Math.round((Date.now() - started) / 1000);
      clear(
        target,
        h(
          'section.card.progress-card',
          { 'aria-label': `Ordering ${name}` },
          h('p', h('strong', `Ordering ${name}`), ' ', certBadge(c), ` ${secs} s`),
          h('progress', { 'aria-label': `Ordering ${name}` }),
          h('p.help', c.source === 'acme' ? 'The CA is validating the domains through the data planes; this usually takes a few seconds.' : 'Issuing…'),
        ),
      );
      await new Promise((r) => setTimeout(r, 1000));
      c = await api.get(`/api/v1/certificates/${api.enc(name)}`);
    }
    await again();
    const target = document.getElementById('cert-progress');
    if (!target) return;
    const ok = c.status === 'valid';
    clear(
      target,
      h(
        `section.card.progress-card.${ok ? 'done' : 'failed'}`,
        { role: ok ? 'status' : 'alert' },
        h('p', h('strong', ok ? `Certificate ${name} is valid` : `Certificate ${name}: ${c.status}`), ' ', certBadge(c)),
        ok ? h('p.help', `Issued by ${c.issuer || 'the CA'}; expires ${time(c.not_after)}.`) : h('p.form-error', c.error || 'The order did not finish.'),
      ),
    );
  }

  // Export: the chain is public; the key leaves the control plane only once confirmed.
  function exportView(c) {
    const keyBox = h('div#cert-export-key');
    clear(
      document.getElementById('cert-progress'),
      card(
        `Export of ${c.name}`,
        null,
        h('h3', 'Certificate chain (PEM, leaf first)'),
        h('pre.log#cert-export-chain', { role: 'region', tabindex: '0', 'aria-label': `Certificate chain of ${c.name}` }, c.cert_chain_pem || 'No chain yet: the certificate is not issued.'),
        h('h3', 'Private key'),
        keyBox,
        h('div.actions', danger('Show private key', `Show the private key of ${c.name} on this screen? Anyone who sees it can impersonate ${c.domains.join(', ')}. The export is logged.`, async () => {
          const x = await api.get(`/api/v1/certificates/${api.enc(c.name)}/export?include_private_key=true`);
          clear(keyBox, h('pre.log#cert-export-private-key', { role: 'region', tabindex: '0', 'aria-label': `Private key of ${c.name}` }, x.private_key_pem));
        })),
      ),
    );
    keyBox.append(h('p.help', 'Hidden until you confirm.'));
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
            clear(document.getElementById('cert-progress'), card(`Status of ${c.name}`, null, h('pre.log', { role: 'region', tabindex: '0', 'aria-label': `Status of ${c.name}` }, JSON.stringify(s, null, 2))));
          }),
          c.source !== 'uploaded'
            ? action('Renew', async () => {
                const renewing = await api.post(`/api/v1/certificates/${api.enc(c.name)}/renew`);
                await follow({ ...c, ...renewing, status: 'pending' });
              })
            : null,
          action('Export', async () => exportView(c)),
          c.source === 'acme'
            ? danger('Convert to production', `Re-order ${c.name} from the production CA? The staging certificate stays in use until the new one is issued.`, async () => {
                const converting = await api.post(`/api/v1/certificates/${api.enc(c.name)}/convert-to-production`);
                notice(`Converting ${c.name} to production`);
                await follow({ ...c, ...converting, status: 'pending' });
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
    h('div#cert-progress'),
    disclosure('Order a certificate', order),
    disclosure('Upload a certificate', upload),
    card('Certificates', null, table(columns, certs, 'No certificates yet.')),
  );
}
