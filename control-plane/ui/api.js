// The console's only way to the control plane: fetch() on the REST API with the session
// cookie, and the session's CSRF token on every write. No secret ever goes into a URL.

let session = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || '';
    this.field = body?.field || '';
  }
}

async function parse(resp) {
  if (resp.status === 204) return null;
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: 'unexpected_answer', detail: text.slice(0, 300) };
  }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers[session.csrf_header] = session.csrf;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401 && path !== '/ui/session') {
    session = null;
    window.dispatchEvent(new Event('portcullis:signed-out'));
  }
  return parse(resp);
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body ?? {});
export const put = (path, body) => request('PUT', path, body);
export const del = (path) => request('DELETE', path);

/** The current session ({token_id, scope, csrf, csrf_header}) or null. */
export async function loadSession() {
  try {
    session = await request('GET', '/ui/session');
  } catch {
    session = null;
  }
  return session;
}

export async function signIn(token) {
  session = await request('POST', '/ui/session', { token });
  return session;
}

export async function signOut() {
  try {
    await request('DELETE', '/ui/session');
  } finally {
    session = null;
  }
}

export const currentSession = () => session;
export const isAdmin = () => session?.scope === 'admin';
export const enc = encodeURIComponent;
