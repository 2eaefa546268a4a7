// Ward's public API, as the web app uses it. Tokens live only in this module's memory: never
// in localStorage, sessionStorage, cookies or URLs. A reload forgets them (sign in again).

let tokens = null; // { access_token, refresh_token, device_id, session_id }
let refreshing = null;

/** An error answer from the API, with a message fit to show a person. */
export class ApiError extends Error {
  constructor(status, problem) {
    const title = problem && typeof problem.title === 'string' ? problem.title : '';
    const detail = problem && typeof problem.detail === 'string' ? problem.detail : '';
    super(title || `Request failed (${status})`);
    this.status = status;
    this.code = problem && problem.code;
    this.retryAfter = problem && problem.retry_after;
    const sentence = (s) => (s && !/[.!?]$/.test(s) ? s + '.' : s);
    this.userMessage = [sentence(title), sentence(detail && detail[0].toUpperCase() + detail.slice(1))].filter(Boolean).join(' ') ||
      `The server refused the request (${status}).`;
  }
}

export function setTokens(t) {
  tokens = t ? { ...t } : null;
}

export function hasTokens() {
  return tokens !== null;
}

export function accessToken() {
  return tokens && tokens.access_token;
}

export function deviceId() {
  return tokens && tokens.device_id;
}

/** Called when the session is gone (revoked, expired, user disabled). */
export let onSessionEnded = () => {};
export function setOnSessionEnded(f) {
  onSessionEnded = f;
}

async function raw(method, path, body, token, asFile, withCookies) {
  const headers = { accept: asFile ? '*/*' : 'application/json' };
  const upload = typeof Blob !== 'undefined' && body instanceof Blob;
  if (upload) {
    // A file's bytes as the body, with its own type; the name in a header, never the URL.
    headers['content-type'] = body.type || 'application/octet-stream';
    if (body.name) headers['x-file-name'] = encodeURIComponent(body.name);
  } else if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch('/api/v1' + path, {
      method, headers, body: body === undefined ? undefined : upload ? body : JSON.stringify(body),
      // Cookies only where the server binds a step to this browser (single sign-on hand-over).
      cache: 'no-store', credentials: withCookies ? 'same-origin' : 'omit', redirect: 'error',
    });
  } catch {
    throw new ApiError(0, { title: 'Ward cannot be reached', detail: 'check the network connection and try again' });
  }
  if (res.status === 204) return null;
  if (asFile && res.ok) {
    const cd = res.headers.get('content-disposition') || '';
    const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
    const plain = /filename="([^"]+)"/.exec(cd);
    let filename = 'ward-download';
    try { filename = star ? decodeURIComponent(star[1]) : plain ? plain[1] : filename; } catch { /* keep the default */ }
    return { blob: await res.blob(), filename };
  }
  let data = null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

async function refresh() {
  if (!tokens) throw new ApiError(401, { title: 'Signed out' });
  if (!refreshing) {
    const t = tokens;
    refreshing = raw('POST', '/auth/refresh', { refresh_token: t.refresh_token, device_id: t.device_id })
      .then((n) => { if (tokens === t) setTokens(n); })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** An authenticated call; an expired access token is refreshed once. */
export async function call(method, path, body, asFile) {
  try {
    return await raw(method, path, body, accessToken(), asFile);
  } catch (e) {
    if (e instanceof ApiError && tokens && ['session_ended', 'invalid_token', 'account_disabled'].includes(e.code)) {
      onSessionEnded('ended');
      throw e;
    }
    if (!(e instanceof ApiError) || e.code !== 'token_expired' || !tokens) throw e;
    try {
      await refresh();
    } catch {
      onSessionEnded('expired');
      throw e;
    }
    try {
      return await raw(method, path, body, accessToken(), asFile);
    } catch (e2) {
      if (e2 instanceof ApiError && e2.status === 401) onSessionEnded('expired');
      throw e2;
    }
  }
}

/** An unauthenticated call (sign-in). */
export function anonymous(method, path, body) {
  return raw(method, path, body, null);
}

/** An unauthenticated call that sends this origin's cookies (the single sign-on hand-over,
 *  which only the browser holding the callback's HttpOnly cookie can redeem). */
export function anonymousWithCookies(method, path, body) {
  return raw(method, path, body, null, false, true);
}

export const get = (p) => call('GET', p);
export const post = (p, b) => call('POST', p, b === undefined ? {} : b);
export const del = (p) => call('DELETE', p);
/** A file the API sends (an export): `{ blob, filename }`, or an ApiError. */
export const file = (p) => call('GET', p, undefined, true);
/** A file the API makes on request (the evidence bundle): `{ blob, filename }`. */
export const postFile = (p) => call('POST', p, {}, true);
/** Uploads a File (its bytes as the body, its type as Content-Type). */
export const upload = (p, f) => call('POST', p, f);

/**
 * The session's real-time stream. Authenticates with its first frame (browsers cannot set
 * headers on a WebSocket; the token never goes in the URL), reconnects with backoff, and
 * acknowledges each event. onEnded is called when the server ends the session (close 4001).
 */
export function openStream({ onEvent, onReady, onEnded, onState }) {
  let ws = null;
  let stopped = false;
  let delay = 500;
  const connect = () => {
    if (stopped || !tokens) return;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/stream';
    ws = new WebSocket(url);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', access_token: accessToken() }));
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.type === 'ready') { delay = 500; onState && onState('live'); onReady && onReady(); return; }
      if (f.type === 'event') {
        onEvent(f);
        ws.send(JSON.stringify({ type: 'ack', conversation_id: f.conversation_id, seq: f.seq }));
      }
    };
    ws.onclose = async (c) => {
      ws = null;
      if (stopped) return;
      onState && onState('offline');
      if (c.code === 4001) { onEnded && onEnded(); return; }
      if (c.code === 4401) {
        // The access token expired: refresh and reconnect; a refused refresh ends the session.
        try { await refresh(); } catch { onEnded && onEnded(); return; }
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  connect();
  return { close() { stopped = true; if (ws) ws.close(1000); } };
}
