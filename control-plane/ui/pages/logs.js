// Request logs: search with the API's filters, live follow (Server-Sent Events), stats
// with bar charts. The SSE stream is a same-origin GET, authenticated by the session cookie.

import * as api from '../api.js';
import { h, clear, card, table, badge, form, action } from '../dom.js';

const FILTERS = [
  { name: 'since', label: 'Since', type: 'text', placeholder: '2h' },
  { name: 'until', label: 'Until', type: 'text', placeholder: '10m', help: 'An age or Unix seconds, like Since' },
  { name: 'host', label: 'Host', type: 'text' },
  { name: 'ip', label: 'Client IP', type: 'text' },
  { name: 'user', label: 'User', type: 'text' },
  { name: 'status', label: 'Status', type: 'text', placeholder: '404 or 5xx' },
  { name: 'method', label: 'Method', type: 'text', placeholder: 'GET' },
  { name: 'path', label: 'Path prefix', type: 'text' },
  { name: 'request_id', label: 'Request id', type: 'text' },
  { name: 'client_id', label: 'OAuth client id', type: 'text' },
  { name: 'min_duration', label: 'Slower than', type: 'text', placeholder: '250ms' },
  { name: 'limit', label: 'Limit', type: 'number', help: 'At most 1000' },
];

const columns = [
  { label: 'Time', value: (r) => h('time.nowrap', { datetime: r.time, title: r.time }, r.time.slice(5, 19).replace('T', ' ')) },
  { label: 'Status', value: (r) => badge(String(r.status), r.status >= 500 ? 'bad' : r.status >= 400 ? 'warn' : 'ok') },
  { label: 'Host', value: (r) => r.host },
  { label: 'Request', value: (r) => h('span.mono', `${r.method} ${r.path}`) },
  { label: 'Duration', value: (r) => `${(r.duration_micros / 1000).toFixed(1)} ms` },
  { label: 'Client', value: (r) => r.client_ip },
  { label: 'User', value: (r) => r.user || '' },
  { label: 'Auth', value: (r) => r.auth + (r.auth_reason ? ` (${r.auth_reason})` : '') },
  { label: 'Request id', value: (r) => h('span.mono', r.request_id) },
];

function query(values) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== '') q.set(k, String(v));
  return q.toString();
}

function bars(title, counts) {
  const max = Math.max(1, ...counts.map((c) => c.count));
  return h(
    'div.chart',
    h('h3', title),
    counts.length
      ? h('ul.bars', counts.map((c) => {
          const bar = h('span.bar');
          bar.style.width = `${Math.max(2, (100 * c.count) / max)}%`;
          return h('li', h('span.bar-label', c.key || '—'), h('span.bar-track', bar), h('span.bar-count', String(c.count)));
        }))
      : h('p.empty', 'No data.'),
  );
}

export async function render(main) {
  let source = null;
  let filters = { since: '1h' };
  const results = h('div');
  const stats = h('div');
  const live = h('div', h('p.lead', 'Follow streams new requests matching the filters as they arrive.'));
  const stop = () => {
    source?.close();
    source = null;
  };
  // `cursor`: the next, older page of the same search (the API's `next_cursor`).
  async function search(values, cursor) {
    filters = values;
    const page = await api.get(`/api/v1/logs?${query({ ...values, cursor })}`);
    clear(
      results,
      table(columns, page.items, 'No matching requests.'),
      page.next_cursor ? h('div.actions', action('Older records', async () => search(values, page.next_cursor))) : null,
    );
    if (cursor) return;
    const s = await api.get(`/api/v1/logs/stats?${query({ since: values.since, host: values.host })}`);
    clear(
      stats,
      h('div.grid',
        h('div', h('div.stat-label', 'Requests'), h('div.stat', String(s.total))),
        h('div', h('div.stat-label', 'p50 / p95 / p99'), h('div.stat', [s.p50_duration_micros, s.p95_duration_micros, s.p99_duration_micros].map((x) => (x / 1000).toFixed(1)).join(' / ') + ' ms')),
        h('div', h('div.stat-label', 'Dropped records'), h('div.stat', String(s.dropped)))),
      h('div.grid.charts', bars('Status classes', s.by_status_class), bars('Top hosts', s.top_hosts), bars('Top paths', s.top_paths), bars('Top client IPs', s.top_client_ips),
        bars('Top users', s.top_users), bars('Unique visitors by host', s.unique_visitors)),
      s.truncated ? h('p.help', 'More records matched than one call examines: these counts are of the newest.') : null,
    );
  }
  const rows = [];
  function follow() {
    stop();
    rows.length = 0;
    const { since, limit, ...rest } = filters;
    source = new EventSource(`/api/v1/logs/follow?${query(rest)}`);
    clear(live, h('p.lead', 'Following… new requests appear here.'));
    source.onmessage = (ev) => {
      rows.unshift(JSON.parse(ev.data));
      rows.length = Math.min(rows.length, 200);
      clear(live, table(columns, rows));
    };
    source.addEventListener('lagged', () => clear(live, h('p.form-error', 'Too slow to follow; some records were skipped. Follow again.')));
    source.onerror = () => {
      if (source?.readyState === EventSource.CLOSED) clear(live, h('p.form-error', 'The stream ended.'));
    };
  }
  clear(
    main,
    h('div.page-head', h('h1', 'Request logs')),
    card('Filters', null, form(FILTERS, filters, search, { submit: 'Search' })),
    card('Live', h('div.actions', action('Follow', async () => follow()), action('Stop', async () => {
      stop();
      clear(live, h('p.lead', 'Stopped.'));
    })), live),
    card('Results', null, results),
    card('Stats', null, stats),
  );
  await search(filters);
  return stop;
}
