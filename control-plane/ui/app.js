// The console's shell: sign-in, navigation (hash routes, so a reload keeps the page and no
// server route is needed per page), and the page modules under pages/.

import * as api from './api.js';
import { h, clear, notice } from './dom.js';

const PAGES = [
  { path: 'overview', label: 'Overview', load: () => import('./pages/overview.js') },
  { path: 'proxies', label: 'Proxies', load: () => import('./pages/proxies.js') },
  { path: 'routes', label: 'Routes', load: () => import('./pages/routes.js') },
  { path: 'certificates', label: 'Certificates', load: () => import('./pages/certificates.js') },
  { path: 'oauth', label: 'OAuth', load: () => import('./pages/oauth.js') },
  { path: 'tokens', label: 'Tokens', load: () => import('./pages/tokens.js') },
  { path: 'services', label: 'External services', load: () => import('./pages/services.js') },
  { path: 'docker', label: 'Docker', load: () => import('./pages/docker.js') },
  { path: 'logs', label: 'Request logs', load: () => import('./pages/logs.js') },
];

const root = document.getElementById('app');
let cleanup = null;

function signInPage(message) {
  document.title = 'Sign in · Portcullis';
  const token = h('input#token', {
    type: 'password',
    name: 'token',
    autocomplete: 'off',
    required: true,
    'aria-describedby': 'token-help token-err',
  });
  const err = h('p.form-error#token-err', { role: 'alert' }, message || '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const f = h(
    'form.signin.card',
    { novalidate: true },
    h('h1', h('span.logo', { 'aria-hidden': 'true' }, '▦'), ' Portcullis'),
    h('p.lead', 'Sign in to the management console.'),
    h('label', { for: 'token' }, 'API token'),
    token,
    h(
      'small.help#token-help',
      'An API token (pcs_…) from `portcullis token create`, or the admin token printed at first start. ',
      'It is checked once and kept on the control plane; the browser only gets a session cookie.',
    ),
    err,
    h('div.actions', button),
  );
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    button.disabled = true;
    try {
      await api.signIn(token.value);
      token.value = '';
      await shell();
    } catch (e) {
      err.textContent = e.status === 401 ? 'That token was not accepted: ' + e.message : e.message;
      token.setAttribute('aria-invalid', 'true');
      token.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(root, h('main.signin-main', f));
  token.focus();
}

async function shell() {
  const s = api.currentSession();
  const nav = h(
    'nav.nav',
    { 'aria-label': 'Main' },
    h('ul', PAGES.map((p) => h('li', h('a', { href: `#/${p.path}`, 'data-page': p.path }, p.label)))),
  );
  const who = h(
    'div.who',
    h('span', { title: s.token_id }, s.token_id),
    ' ',
    h('span.badge', s.scope),
    h(
      'button.secondary.small',
      {
        type: 'button',
        onclick: async () => {
          await api.signOut().catch(() => {});
          signInPage('Signed out.');
        },
      },
      'Sign out',
    ),
  );
  const main = h('main#main', { tabindex: '-1' });
  clear(
    root,
    h('a.skip', { href: '#main' }, 'Skip to content'),
    h('header.top', h('a.brand', { href: '#/overview' }, h('span.logo', { 'aria-hidden': 'true' }, '▦'), ' Portcullis'), nav, who),
    h('div#notices', { 'aria-live': 'polite' }),
    main,
  );
  await route();
}

async function route() {
  const main = document.getElementById('main');
  if (!main) return;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const [path = 'overview', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const page = PAGES.find((p) => p.path === path) || PAGES[0];
  for (const a of document.querySelectorAll('nav.nav a')) {
    if (a.dataset.page === page.path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${page.label} · Portcullis`;
  clear(main, h('p.loading', 'Loading…'));
  try {
    const mod = await page.load();
    const c = await mod.render(main, rest.map(decodeURIComponent));
    if (typeof c === 'function') cleanup = c;
  } catch (e) {
    clear(main, h('div.card', h('h1', page.label), h('p.form-error', { role: 'alert' }, e.message)));
  }
}

window.addEventListener('hashchange', () => {
  if (document.getElementById('main')) route();
});
window.addEventListener('portcullis:signed-out', () => signInPage('Your session ended; sign in again.'));
window.addEventListener('unhandledrejection', (ev) => notice(String(ev.reason?.message || ev.reason), 'error'));

if (await api.loadSession()) await shell();
else signInPage();
