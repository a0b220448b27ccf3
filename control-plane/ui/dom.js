// DOM helpers: elements built with textContent only (no innerHTML, so no markup from the
// API is ever interpreted), tables, forms that show the API's error next to the field it
// names, and a confirmation dialog for destructive actions.

import { ApiError } from './api.js';

/** h('tag.class#id', {attr: v, onclick: f}, ...children) */
export function h(spec, attrs, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/i);
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const time = (secs) =>
  secs ? new Date(secs * 1000).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—';

export function badge(text, kind = '') {
  return h(`span.badge${kind ? '.' + kind : ''}`, text);
}

/** A section card with a heading and optional actions. */
export function card(title, actions, ...body) {
  return h(
    'section.card',
    h('div.card-head', h('h2', title), h('div.actions', actions || [])),
    ...body,
  );
}

/** Columns: [{label, value: row => string|Node}]. */
export function table(columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p.empty', empty);
  return h(
    'div.table-wrap',
    { tabindex: '0', role: 'region', 'aria-label': 'table' },
    h(
      'table',
      h('thead', h('tr', columns.map((c) => h('th', { scope: 'col' }, c.label)))),
      h(
        'tbody',
        rows.map((r) => h('tr', columns.map((c) => h('td', { 'data-label': c.label }, c.value(r))))),
      ),
    ),
  );
}

/** Shows a message at the top of the page for a few seconds. */
export function notice(text, kind = 'ok') {
  const box = document.getElementById('notices');
  const el = h(`div.notice.${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 10000 : 4000);
}

/** Asks before a destructive action; resolves true when confirmed. */
export function confirmAction(message, confirmLabel = 'Delete') {
  return new Promise((resolve) => {
    const dlg = h(
      'dialog.confirm',
      { 'aria-labelledby': 'confirm-title' },
      h('h2#confirm-title', 'Are you sure?'),
      h('p', message),
      h(
        'div.actions',
        h('button.secondary', { type: 'button', onclick: () => done(false) }, 'Cancel'),
        h('button.danger', { type: 'button', onclick: () => done(true) }, confirmLabel),
      ),
    );
    function done(ok) {
      dlg.close();
      dlg.remove();
      resolve(ok);
    }
    dlg.addEventListener('cancel', () => done(false));
    document.body.append(dlg);
    dlg.showModal();
  });
}

let uid = 0;

/**
 * A form from field specs: {name, label, type, options, help, placeholder, required}.
 * Types: text, url, number, bool, select, list (comma/newline separated → array),
 * map (lines `Key: value` → object), textarea, password, json, file (→ a File or nothing).
 * onSubmit(values) may throw an ApiError: its detail is shown next to the field it names.
 */
export function form(fields, initial, onSubmit, { submit = 'Save', conflictField, more } = {}) {
  const id = `f${++uid}`;
  const inputs = {};
  const errors = {};
  const formError = h('p.form-error', { role: 'alert' });
  const rows = fields.map((f) => {
    const fid = `${id}-${f.name}`;
    const v = initial?.[f.name];
    let input;
    if (f.type === 'bool') {
      input = h('input', { type: 'checkbox', id: fid, name: f.name, checked: Boolean(v ?? f.default) });
    } else if (f.type === 'select') {
      input = h(
        'select',
        { id: fid, name: f.name },
        f.options.map((o) => h('option', { value: o, selected: (v ?? f.default) === o }, o || '(none)')),
      );
    } else if (f.type === 'file') {
      input = h('input', { type: 'file', id: fid, name: f.name, accept: f.accept });
    } else if (['list', 'map', 'textarea', 'json'].includes(f.type)) {
      input = h('textarea', { id: fid, name: f.name, rows: f.rows || 2, placeholder: f.placeholder });
      input.value = toText(f, v);
    } else {
      input = h('input', {
        id: fid,
        name: f.name,
        type: f.type === 'number' ? 'number' : f.type === 'password' ? 'password' : 'text',
        inputmode: f.type === 'url' ? 'url' : undefined,
        placeholder: f.placeholder,
        required: f.required,
        readonly: f.readonly,
        autocomplete: 'off',
        min: f.type === 'number' ? '0' : undefined,
      });
      input.value = v === undefined || v === null ? '' : String(v);
    }
    const err = h('span.field-error', { id: `${fid}-err`, role: 'alert' });
    input.setAttribute('aria-describedby', `${fid}-err${f.help ? ` ${fid}-help` : ''}`);
    inputs[f.name] = input;
    errors[f.name] = err;
    const help = f.help ? h('small.help', { id: `${fid}-help` }, f.help) : null;
    if (f.type === 'bool') {
      return h('div.field.check', input, h('label', { for: fid }, f.label), help, err);
    }
    return h('div.field', h('label', { for: fid }, f.label), input, help, err);
  });
  const button = h('button', { type: 'submit' }, submit);
  // With `more`, fields marked `advanced` wait behind a disclosure of that title.
  const basic = more ? rows.filter((_, i) => !fields[i].advanced) : rows;
  const advanced = more ? rows.filter((_, i) => fields[i].advanced) : [];
  const el = h(
    'form.form',
    { novalidate: true },
    h('div.fields', basic),
    advanced.length ? h('details.more', h('summary', more), h('div.fields', advanced)) : null,
    formError,
    h('div.actions', button),
  );
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError.textContent = '';
    for (const e of Object.values(errors)) e.textContent = '';
    for (const i of Object.values(inputs)) i.removeAttribute('aria-invalid');
    let values;
    try {
      values = {};
      for (const f of fields) {
        if (f.readonly && f.skipReadonly) continue;
        const val = fromInput(f, inputs[f.name]);
        if (val !== undefined) values[f.name] = val;
      }
    } catch (e) {
      showError(e);
      return;
    }
    button.disabled = true;
    el.setAttribute('aria-busy', 'true');
    try {
      await onSubmit(values);
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
      el.removeAttribute('aria-busy');
    }
  });
  function showError(e) {
    let name = e.field || '';
    if (!name && e instanceof ApiError && e.code === 'already_exists') name = conflictField || '';
    const key = Object.keys(inputs).find(
      (k) => name === k || name.startsWith(`${k}.`) || name.startsWith(`${k}[`),
    );
    const text = e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : e.message;
    if (key) {
      errors[key].textContent = text;
      const hidden = inputs[key].closest('details');
      if (hidden) hidden.open = true;
      inputs[key].setAttribute('aria-invalid', 'true');
      inputs[key].focus();
    } else {
      formError.textContent = text;
    }
  }
  return el;
}

function toText(f, v) {
  if (v === undefined || v === null) return '';
  if (f.type === 'list') return v.join(', ');
  if (f.type === 'map') return Object.entries(v).map(([k, x]) => `${k}: ${x}`).join('\n');
  if (f.type === 'json') return Object.keys(v).length ? JSON.stringify(v, null, 2) : '';
  return String(v);
}

class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function fromInput(f, input) {
  const raw = input.type === 'checkbox' ? input.checked : input.value;
  switch (f.type) {
    case 'bool':
      return raw;
    case 'file':
      return input.files[0] || undefined;
    case 'number': {
      if (raw.trim() === '') return f.keepEmpty ? 0 : undefined;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 0) throw new FieldError(f.name, `${f.label}: a whole number ≥ 0`);
      return n;
    }
    case 'list': {
      const items = raw.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
      return items.length || f.keepEmpty ? items : undefined;
    }
    case 'map': {
      const out = {};
      for (const line of raw.split('\n').map((s) => s.trim()).filter(Boolean)) {
        const at = line.indexOf(':');
        if (at < 1) throw new FieldError(f.name, `${f.label}: write one "Name: value" per line`);
        out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      return Object.keys(out).length || f.keepEmpty ? out : undefined;
    }
    case 'json': {
      if (!raw.trim()) return f.keepEmpty ? {} : undefined;
      try {
        return JSON.parse(raw);
      } catch {
        throw new FieldError(f.name, `${f.label}: not valid JSON`);
      }
    }
    default:
      if (raw === '' && !f.keepEmpty) return undefined;
      return raw;
  }
}

/** A button that runs an async action, disabled while it runs; errors become notices. */
export function action(label, fn, cls = 'secondary') {
  const b = h(`button.${cls}`, { type: 'button' }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await fn();
    } catch (e) {
      notice(e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e.message || e), 'error');
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** A destructive action behind a confirmation. */
export function danger(label, message, fn) {
  return action(label, async () => {
    if (await confirmAction(message, label)) await fn();
  }, 'danger');
}

/** Collapsible block (a details element) holding a form. */
export function disclosure(summary, body, open = false) {
  return h('details.disclosure', { open }, h('summary', summary), body);
}
