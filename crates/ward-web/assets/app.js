// Ward's web app: sign-in, the clinician client, the patient portal and the admin console.
// Plain ES modules, no framework, no build step. Navigation uses the URL hash with ids only
// (never names); page titles never carry PHI; tokens stay in memory (see api.js).

import * as api from './api.js';
import * as webauthn from './webauthn.js';
import { field, h, messageBox, mount, showError, showInfo, localDay, submitForm, time } from './dom.js';

const main = document.getElementById('main');
const bar = document.getElementById('bar');
const nav = document.getElementById('nav');
const live = document.getElementById('live');

const PRIORITIES = [['routine', 'Routine'], ['urgent', 'Urgent'], ['stat', 'STAT']];
const REASONS = [['consult', 'Consult'], ['coverage', 'Coverage'], ['handoff', 'Handoff'], ['coordination', 'Care coordination'], ['other', 'Other']];
const ROLES = [['clinician', 'Clinician'], ['nurse', 'Nurse'], ['staff', 'Staff'], ['admin', 'Admin'], ['compliance_officer', 'Compliance officer'], ['patient', 'Patient']];
const ATTACHMENT_TYPES = 'image/jpeg,image/png,image/webp,application/pdf';
const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// Everything below is PHI or session state: lock() drops all of it.
let me = null;
let stream = null;
let idle = null;
let names = new Map(); // user id -> display name
let list = null; // conversation summaries, newest first
let hot = new Map(); // conversation id -> highest priority of unread messages seen here
let open = null; // { id, view, messages: Map<seq, message>, root }
let renderSeq = 0;
let directory = null; // the staff directory (GET /users), fetched once per sign-in
let files = new Map(); // attachment id -> { url (blob:), filename, type }, opened on request
let bgPatients = new Map(); // patient id -> { display_name, mrn } found for a break-glass request

/** The directory, loaded on first use (each load is an audited directory read). */
function people() {
  if (!directory) directory = api.get('/users?limit=200').catch((e) => { directory = null; throw e; });
  return directory;
}

function announce(text) {
  live.textContent = '';
  setTimeout(() => { live.textContent = text; }, 30);
}

function setTitle(page) {
  // Never PHI: only the kind of page.
  document.title = page ? `${page} · Ward` : 'Ward';
}

function focusHeading(root) {
  const h1 = root.querySelector('h1, h2');
  if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus({ preventScroll: true }); }
}

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

function signInPage(notice) {
  setTitle('Sign in');
  pendingDeviceKey = null;
  bar.hidden = true;
  const msg = messageBox();
  const login = field('Login name', { name: 'login', required: true, autocomplete: 'username' });
  const password = field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'signin-h' },
    h('h1', { id: 'signin-h' }, 'Sign in to Ward'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    login, password, msg,
    h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
      webauthn.supported() ? h('button', { type: 'button', id: 'passkey-signin', onclick: () => passkeySignIn(form, msg) }, 'Sign in with a passkey') : null,
      h('button', { type: 'button', id: 'sso-signin', onclick: () => ssoStartPage() }, 'Sign in with single sign-on')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!login.input.value.trim() || !password.input.value) {
      showError(msg, { userMessage: 'Enter your login name and password.' });
      return;
    }
    await submitForm(form, msg, async () => {
      const r = await passwordSignIn(login.input.value.trim(), password.input.value);
      if (r.status === 'mfa_required') mfaPage(r.mfa_token);
      else await signedIn(r.tokens);
    }, { onError: () => {
      password.input.value = '';
      password.input.focus();
    } });
  });
  mount(main, form);
  login.input.focus();
}

/** Passwordless sign-in: the authenticator picks the account (a discoverable credential). */
function passkeySignIn(form, msg) {
  return submitForm(form, msg, async () => {
    const o = await api.anonymous('POST', '/auth/passkey/options');
    const credential = await webauthn.get(o.options);
    const t = await api.anonymous('POST', '/auth/passkey', { ceremony_id: o.ceremony_id, credential, device: { name: 'Web browser', platform: 'web' } });
    await signedIn(t);
  });
}

function mfaPage(mfaToken) {
  setTitle('Verification code');
  const msg = messageBox();
  let recovery = false;
  const code = field('6-digit code from your authenticator app', { name: 'code', required: true, autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: 64 });
  const toggle = h('button', { type: 'button', class: 'link' }, 'Use a recovery code instead');
  toggle.addEventListener('click', () => {
    recovery = !recovery;
    code.querySelector('label').textContent = recovery ? 'Recovery code' : '6-digit code from your authenticator app';
    code.input.setAttribute('inputmode', recovery ? 'text' : 'numeric');
    toggle.textContent = recovery ? 'Use an authenticator code instead' : 'Use a recovery code instead';
    code.input.focus();
  });
  const key = webauthn.supported() ? h('button', { type: 'button', id: 'mfa-key' }, 'Use a security key or passkey') : null;
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Verify it is you'), code, toggle, msg, h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Verify'), key));
  if (key) {
    key.addEventListener('click', () => submitForm(form, msg, async () => {
      const o = await api.anonymous('POST', '/auth/mfa/webauthn/options', { mfa_token: mfaToken });
      const credential = await webauthn.get(o.options);
      await signedIn(await api.anonymous('POST', '/auth/mfa/webauthn', { mfa_token: mfaToken, ceremony_id: o.ceremony_id, credential }));
    }));
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = code.input.value.trim();
    if (!recovery && !/^\d{6}$/.test(v)) {
      showError(msg, { userMessage: 'Enter the 6 digits your authenticator app shows.' });
      return;
    }
    if (!v) { showError(msg, { userMessage: 'Enter a recovery code.' }); return; }
    await submitForm(form, msg, async () => {
      const t = await api.anonymous('POST', '/auth/mfa', recovery ? { mfa_token: mfaToken, recovery_code: v } : { mfa_token: mfaToken, code: v });
      await signedIn(t);
    }, { onError: (e) => {
      if (deviceRefusedAtMfa(e)) return;
      if (e.code === 'invalid_mfa_code' && /expired|unknown/.test(e.userMessage)) setTimeout(() => signInPage('The sign-in attempt expired. Sign in again.'), 1500);
    } });
  });
  mount(main, form);
  code.input.focus();
}

async function signedIn(tokens) {
  rememberDevice(tokens);
  api.setTokens(tokens);
  me = await api.get('/me');
  if (me.restriction === 'password_change') return passwordChangePage();
  if (me.restriction === 'mfa_enrollment') return enrolPage();
  start();
}

function passwordChangePage() {
  setTitle('Choose a password');
  const msg = messageBox();
  const cur = field('One-time password', { name: 'current', type: 'password', required: true, autocomplete: 'current-password' });
  const next = field('New password', { name: 'new', type: 'password', required: true, autocomplete: 'new-password' });
  const again = field('New password again', { name: 'again', type: 'password', required: true, autocomplete: 'new-password' });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Choose your password'),
    h('p', {}, 'Your password was set by an administrator and works only once. Choose your own to continue.'),
    cur, next, again, msg, h('button', { type: 'submit', class: 'primary' }, 'Save password'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!cur.input.value || !next.input.value) { showError(msg, { userMessage: 'Fill in every field.' }); return; }
    if (next.input.value !== again.input.value) { showError(msg, { userMessage: 'The two new passwords differ.' }); return; }
    await submitForm(form, msg, async () => {
      await api.post('/me/password', { current_password: cur.input.value, new_password: next.input.value });
      me = await api.get('/me');
      if (me.restriction === 'mfa_enrollment') enrolPage();
      else start();
    });
  });
  mount(main, form);
  cur.input.focus();
}

function enrolPage() {
  setTitle('Set up two-step sign-in');
  const msg = messageBox();
  const pw = field('Your password', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Set up two-step sign-in'),
    h('p', {}, 'Your organisation requires a second factor for your role. Confirm your password to get a secret for your authenticator app, or use a security key or passkey instead.'),
    pw, msg, h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Continue with an authenticator app'),
      webauthn.supported() ? h('button', { type: 'button', id: 'enrol-key' }, 'Use a security key or passkey') : null));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!pw.input.value) { showError(msg, { userMessage: 'Enter your password.' }); return; }
    await submitForm(form, msg, async () => {
      const r = await api.post('/me/mfa/totp', { password: pw.input.value });
      enrolConfirmPage(r.secret);
    });
  });
  const key = form.querySelector('#enrol-key');
  if (key) {
    key.addEventListener('click', () => {
      if (!pw.input.value) { showError(msg, { userMessage: 'Enter your password.' }); return; }
      // Registering the first second factor lifts the enrolment restriction.
      submitForm(form, msg, async () => {
        const o = await api.post('/me/webauthn/registrations', { password: pw.input.value });
        const credential = await webauthn.create(o.options);
        const r = await api.post('/me/webauthn/credentials', { ceremony_id: o.ceremony_id, label: 'Security key', credential });
        recoveryCodesPage(r.recovery_codes || [], 'Your key is added (named "Security key"; rename it under Account).');
      }, { onError: () => { pw.input.value = ''; } });
    });
  }
  mount(main, form);
  pw.input.focus();
}

/** The recovery codes, shown once, then on to the app. */
function recoveryCodesPage(codes, lead) {
  const done = h('button', { type: 'button', class: 'primary' }, 'I have saved them: continue');
  done.addEventListener('click', async () => { me = await api.get('/me'); start(); });
  mount(main, h('section', { class: 'card narrow' },
    h('h1', {}, 'Recovery codes'),
    h('p', {}, lead, ' Each code signs you in once if you lose it. Keep them somewhere safe: they are shown only now.'),
    h('ul', { class: 'codes' }, codes.map((c) => h('li', {}, c))), done));
  done.focus();
}

function enrolConfirmPage(secret) {
  const msg = messageBox();
  const code = field('6-digit code from the app', { name: 'code', required: true, inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6 });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Add Ward to your authenticator app'),
    h('p', {}, 'Enter this secret in your authenticator app (time-based, 6 digits, 30 seconds):'),
    h('p', { class: 'secret', id: 'totp-secret' }, secret.replace(/(.{4})/g, '$1 ').trim()),
    code, msg, h('button', { type: 'submit', class: 'primary' }, 'Confirm'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!/^\d{6}$/.test(code.input.value.trim())) { showError(msg, { userMessage: 'Enter the 6 digits the app shows.' }); return; }
    await submitForm(form, msg, async () => {
      const r = await api.post('/me/mfa/totp/confirm', { code: code.input.value.trim() });
      const done = h('button', { type: 'button', class: 'primary' }, 'I have saved them: continue');
      done.addEventListener('click', async () => { me = await api.get('/me'); start(); });
      mount(main, h('section', { class: 'card narrow' },
        h('h1', {}, 'Recovery codes'),
        h('p', {}, 'Each code signs you in once if you lose your phone. Keep them somewhere safe: they are shown only now.'),
        h('ul', { class: 'codes' }, r.recovery_codes.map((c) => h('li', {}, c))), done));
      done.focus();
    });
  });
  mount(main, form);
  code.input.focus();
}

// ---------------------------------------------------------------------------------------------
// Session: start, idle lock, sign-out
// ---------------------------------------------------------------------------------------------

function start() {
  bar.hidden = false;
  const links = [['#/', 'Messages']];
  if (me.user.role === 'patient') links.push(['#/consent', 'Consent']);
  if (me.user.role !== 'patient') links.push(['#/patients', 'Patients'], ['#/policies', 'Policies']);
  if (me.user.role === 'clinician' || me.user.role === 'nurse') links.push(['#/break-glass', 'Emergency access']);
  if (me.user.role === 'admin') links.push(['#/admin/users', 'Users'], ['#/admin/templates', 'Templates'], ['#/admin/contacts', 'Contacts'], ['#/admin/roster', 'Roster']);
  if (me.user.role === 'admin' || me.user.role === 'compliance_officer') {
    links.push(['#/admin/devices', 'Devices'], ['#/admin/policies', 'Settings'], ['#/admin/audit', 'Audit'], ['#/admin/alerts', 'Alerts'], ['#/admin/registers', 'Registers'], ['#/admin/incidents', 'Incidents'], ['#/admin/access-reviews', 'Access reviews'], ['#/admin/keys', 'Keys'], ['#/admin/provisioning', 'Provisioning']);
  }
  if (me.user.role === 'compliance_officer') links.push(['#/admin/break-glass', 'Break-glass reviews']);
  // A manager with accounts delegated to them in an open access review.
  if (!isReviewer() && me.access_reviews_to_decide > 0) links.push(['#/admin/access-reviews', `Access reviews (${me.access_reviews_to_decide})`]);
  links.push(['#/account', 'Account'], ['#/sessions', 'Sessions']);
  mount(nav, h('ul', {}, links.map(([href, text]) => h('li', {}, h('a', { href }, text)))),
    h('span', { class: 'who' }, h('span', { class: 'sr-only' }, 'Signed in as '), me.user.display_name),
    h('span', { class: 'conn', id: 'conn', role: 'status' }, 'Connecting'));
  names.set(me.user.id, me.user.display_name);
  startIdleTimer();
  stream = api.openStream({
    onEvent,
    onReady: () => { if (list) refreshList(); if (open) reloadOpen(); },
    onEnded: () => lock('Your session was ended. Sign in again.'),
    onState: (s) => { const c = document.getElementById('conn'); if (c) c.textContent = s === 'live' ? 'Live' : 'Reconnecting'; },
  });
  if (location.hash === '' || location.hash === '#') location.hash = '#/';
  else route();
}

const ACTIVITY = ['keydown', 'pointerdown', 'wheel', 'touchstart'];
// The lock compares wall-clock time with the last activity, on a short interval and whenever
// the page comes back into view: a single long timer can be held up (a suspended laptop, a
// throttled background tab), and PHI must not outlive the idle timeout on screen.
function startIdleTimer() {
  const ms = Math.max(60, me.org.idle_timeout_secs || 900) * 1000;
  let last = Date.now();
  const reset = () => { last = Date.now(); };
  const check = () => {
    if (Date.now() - last >= ms) lock('Ward locked after ' + Math.round(ms / 60000) + ' minutes without activity. Sign in again to continue.');
  };
  const timer = setInterval(check, Math.min(15_000, ms / 4));
  for (const e of ACTIVITY) document.addEventListener(e, reset, { passive: true, capture: true });
  document.addEventListener('visibilitychange', check);
  window.addEventListener('focus', check);
  idle = {
    stop() {
      clearInterval(timer);
      for (const e of ACTIVITY) document.removeEventListener(e, reset, { capture: true });
      document.removeEventListener('visibilitychange', check);
      window.removeEventListener('focus', check);
    },
  };
}

/**
 * Asks in an in-page dialog and resolves to true when the person confirms. A native confirm()
 * or alert() would stop the page's timers, and with them the idle lock, while it is open.
 */
function ask(question, confirmLabel, cancellable = true) {
  return new Promise((resolve) => {
    const text = h('p', { id: 'ask-text' }, question);
    const yes = h('button', { type: 'button', class: 'primary' }, confirmLabel);
    const no = cancellable ? h('button', { type: 'button' }, 'Cancel') : null;
    const dlg = h('dialog', { class: 'card ask', 'aria-labelledby': 'ask-text' }, text, h('div', { class: 'actions' }, yes, no));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    yes.addEventListener('click', () => done(true));
    if (no) no.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
    (no || yes).focus();
  });
}

/** Clears every trace of the session from the page and memory, ends it, and asks to sign in. */
async function lock(notice) {
  if (!api.hasTokens()) return;
  const token = api.accessToken();
  if (idle) idle.stop();
  if (stream) stream.close();
  idle = stream = null;
  me = null; list = null; open = null; names = new Map(); hot = new Map(); directory = null; bgPatients = new Map();
  forgetSearch();
  // Responses still in flight must not render into the signed-out page.
  renderSeq++;
  for (const d of document.querySelectorAll('dialog')) d.remove();
  for (const f of files.values()) URL.revokeObjectURL(f.url);
  files = new Map();
  api.setTokens(null);
  mount(main);
  mount(nav);
  live.textContent = '';
  if (location.hash !== '' && location.hash !== '#') history.replaceState(null, '', location.pathname);
  signInPage(notice);
  // Best effort: the server ends an idle session on its own as well.
  if (token) fetch('/api/v1/auth/logout', { method: 'POST', headers: { authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' }).catch(() => {});
}

api.setOnSessionEnded(() => lock('Your session has ended. Sign in again.'));
document.getElementById('sign-out').addEventListener('click', () => lock('You signed out.'));

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

window.addEventListener('hashchange', () => { if (me && !me.restriction) route(); });
// The skip link moves focus to the content; it is not a route.
document.querySelector('a.skip').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  for (const a of nav.querySelectorAll('a')) {
    const here = a.getAttribute('href') === '#/' + (parts[0] === 'c' || parts[0] === 'new' ? '' : parts.join('/').split('/').slice(0, 2).join('/'));
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (parts.length === 0) return messagesPage(null);
  if (parts[0] === 'c' && ID.test(parts[1] || '')) return messagesPage(parts[1]);
  if (parts[0] === 'new') return newConversationPage();
  if (parts[0] === 'sessions') return sessionsPage();
  if (parts[0] === 'account' && !parts[1]) return accountPage();
  if (parts[0] === 'consent' && me.user.role === 'patient') return consentPage();
  if (parts[0] === 'admin' && parts[1] === 'templates' && me.user.role === 'admin' && !parts[2]) return templatesPage();
  if (parts[0] === 'admin' && parts[1] === 'users' && me.user.role === 'admin') {
    return ID.test(parts[2] || '') ? adminUserPage(parts[2]) : adminUsersPage();
  }
  const staff = me.user.role === 'admin' || me.user.role === 'compliance_officer';
  if (parts[0] === 'admin' && parts[1] === 'policies' && staff && !parts[2]) return policiesPage();
  if (parts[0] === 'admin' && parts[1] === 'devices' && staff && !parts[2]) return devicesPage();
  if (parts[0] === 'admin' && parts[1] === 'devices' && staff && parts[2] === 'reports' && !parts[3]) return deviceReportsPage();
  if (parts[0] === 'admin' && parts[1] === 'audit' && staff && !parts[2]) return auditPage();
  if (parts[0] === 'admin' && parts[1] === 'registers' && staff && !parts[2]) return registersPage();
  if (parts[0] === 'admin' && parts[1] === 'keys' && staff && !parts[2]) return keysPage();
  if (parts[0] === 'admin' && parts[1] === 'provisioning' && staff && !parts[2]) return provisioningPage();
  if (parts[0] === 'admin' && parts[1] === 'incidents' && staff) return ID.test(parts[2] || '') ? incidentPage(parts[2]) : parts[2] ? notFound() : incidentsPage();
  // Delegates (any workforce account) see the accounts given to them; the server decides.
  if (parts[0] === 'admin' && parts[1] === 'access-reviews' && me.user.role !== 'patient') return ID.test(parts[2] || '') ? accessReviewPage(parts[2]) : parts[2] ? notFound() : accessReviewsPage();
  if (parts[0] === 'policies' && me.user.role !== 'patient' && !parts[1]) return ackPoliciesPage();
  if (parts[0] === 'admin' && parts[1] === 'alerts' && staff && !parts[2]) return alertsPage();
  if (parts[0] === 'admin' && parts[1] === 'contacts' && me.user.role === 'admin' && !parts[2]) return adminContactsPage();
  if (parts[0] === 'admin' && parts[1] === 'roster' && me.user.role === 'admin' && !parts[2]) return rosterPage();
  if (parts[0] === 'admin' && parts[1] === 'break-glass' && me.user.role === 'compliance_officer' && !parts[2]) return breakGlassReviewsPage();
  if (parts[0] === 'break-glass' && (me.user.role === 'clinician' || me.user.role === 'nurse')) {
    if (!parts[1]) return breakGlassPage();
    if (ID.test(parts[1]) && (!parts[2] || (ID.test(parts[2]) && !parts[3]))) return grantPage(parts[1], parts[2]);
  }
  if (parts[0] === 'patients' && me.user.role !== 'patient' && ID.test(parts[1] || '') && parts[2] === 'contacts' && !parts[3]) return patientContactsPage(parts[1]);
  if (parts[0] === 'notices' && me.user.role === 'patient' && ID.test(parts[1] || '') && !parts[2]) return noticePage(parts[1]);
  if (parts[0] === 'patients' && me.user.role !== 'patient') return !parts[1] ? patientSearchPage() : ID.test(parts[1]) && !parts[2] ? patientRecordPage(parts[1]) : notFound();
  notFound();
}

function notFound() {
  setTitle('Not found');
  mount(main, h('section', { class: 'card' }, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Back to messages'))));
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

function convName(c) {
  if (c.title) return c.title;
  if (c.withheld) return 'Conversation';
  const v = open && open.id === c.id ? open.view : null;
  if (v) return memberNames(v) || 'Conversation';
  return c.kind === 'direct' ? 'Direct conversation' : c.kind === 'patient' ? 'Patient conversation' : 'Group conversation';
}

function memberNames(view) {
  return view.members.filter((m) => m.user_id !== me.user.id).map((m) => m.display_name).join(', ');
}

const RANK = { routine: 0, urgent: 1, stat: 2 };
function higher(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return RANK[b] > RANK[a] ? b : a;
}

function badge(priority) {
  if (priority === 'stat') return h('span', { class: 'badge stat' }, 'STAT');
  if (priority === 'urgent') return h('span', { class: 'badge urgent' }, 'Urgent');
  return null;
}

async function messagesPage(id) {
  setTitle(id ? 'Conversation' : 'Messages');
  const mine = ++renderSeq;
  const listEl = h('section', { class: 'convlist', 'aria-labelledby': 'convlist-h' },
    h('div', { class: 'listhead' }, h('h1', { id: 'convlist-h' }, me.user.role === 'patient' ? 'Your care team' : 'Conversations'),
      me.user.role === 'patient' ? null : h('a', { href: '#/new', class: 'button' }, 'New')),
    listFilter(),
    h('ul', { id: 'convs', class: 'convs' }, h('li', { class: 'muted' }, 'Loading…')));
  const convEl = h('section', { class: 'conv', id: 'conv', 'aria-label': 'Conversation' },
    id ? h('p', { class: 'muted' }, 'Loading…') : h('p', { class: 'muted empty' }, 'Choose a conversation.'));
  mount(main, h('div', { class: 'split' + (id ? ' has-open' : '') }, listEl, convEl));
  if (!id) open = null;
  const work = [refreshList()];
  if (id) work.push(openConversation(id, convEl, mine));
  await Promise.all(work);
  if (!id) focusHeading(listEl);
}

async function refreshList() {
  try {
    const page = await api.get('/conversations?limit=100');
    list = page.items;
    renderList();
    if (performance.getEntriesByName('ward:list-rendered').length === 0) performance.mark('ward:list-rendered');
  } catch (e) {
    const ul = document.getElementById('convs');
    if (ul) mount(ul, h('li', { class: 'form-message error' }, e.userMessage || 'Could not load conversations.'));
  }
}

function renderList() {
  const ul = document.getElementById('convs');
  if (!ul || !list) return;
  if (list.length === 0) {
    mount(ul, h('li', { class: 'muted' }, me.user.role === 'patient' ? 'No messages with your care team yet.' : 'No conversations yet.'));
    return;
  }
  const shown = filteredList();
  if (shown.length === 0) { mount(ul, h('li', { class: 'muted' }, 'No conversation matches the filter.')); return; }
  mount(ul, shown.map((c) => {
    const unread = open && open.id === c.id ? 0 : c.unread;
    // The server's highest unread priority as of the last load, raised by live arrivals since.
    const pr = unread > 0 ? higher(c.unread_priority, hot.get(c.id)) : null;
    return h('li', { class: 'convitem' + (unread > 0 ? ' unread' : '') + (pr === 'stat' ? ' has-stat' : '') },
      h('a', { href: '#/c/' + c.id, 'aria-current': open && open.id === c.id ? 'true' : null, dataset: { id: c.id } },
        h('span', { class: 'cname' }, convName(c)),
        c.patient_id ? h('span', { class: 'tag' }, 'Patient') : null,
        badge(pr),
        unread > 0 ? h('span', { class: 'count', 'aria-label': unread + ' unread' }, String(unread)) : null));
  }));
}

async function openConversation(id, el, mine) {
  try {
    const [view, page] = await Promise.all([api.get('/conversations/' + id), api.get('/conversations/' + id + '/messages?limit=100')]);
    if (mine !== renderSeq) return;
    open = { id, view, messages: new Map(page.items.map((m) => [m.seq, m])), root: el, correcting: null };
    for (const m of view.members) names.set(m.user_id, m.display_name);
    hot.delete(id);
    const listed = list && list.find((x) => x.id === id);
    if (listed) { listed.unread = 0; listed.unread_priority = null; }
    renderConversation();
    renderList();
    markRead();
    focusHeading(el);
  } catch (e) {
    if (mine !== renderSeq) return;
    mount(el, h('div', { class: 'card' }, h('h2', {}, 'This conversation cannot be shown'), h('p', { class: 'form-message error' }, e.userMessage),
      h('a', { href: '#/' }, 'Back to conversations')));
  }
}

async function reloadOpen() {
  if (!open) return;
  const o = open;
  try {
    const [view, page] = await Promise.all([api.get('/conversations/' + o.id), api.get('/conversations/' + o.id + '/messages?limit=100')]);
    if (open !== o) return;
    o.view = view;
    for (const m of page.items) o.messages.set(m.seq, m);
    renderConversation();
  } catch { /* the next event or reconnect tries again */ }
}

function markRead() {
  if (!open) return;
  const last = Math.max(0, ...open.messages.keys());
  if (last > 0) api.post('/conversations/' + open.id + '/receipts', { kind: 'read', up_to_seq: last }).catch(() => {});
}

function receiptText(m) {
  const others = open.view.members.filter((x) => x.user_id !== me.user.id);
  if (others.length === 0) return '';
  const read = others.filter((x) => x.read_seq >= m.seq);
  const delivered = others.filter((x) => x.delivered_seq >= m.seq || x.read_seq >= m.seq);
  if (read.length === others.length) return others.length === 1 ? 'Read' : 'Read by all';
  if (read.length > 0) return `Read by ${read.map((x) => x.display_name).join(', ')}`;
  if (delivered.length > 0) return delivered.length === others.length ? 'Delivered' : `Delivered to ${delivered.length} of ${others.length}`;
  return 'Sent';
}

function renderConversation() {
  const o = open;
  const v = o.view;
  const s = v.summary || v;
  const header = h('div', { class: 'convhead' },
    h('a', { href: '#/', class: 'back' }, h('span', { 'aria-hidden': 'true' }, '‹ '), 'Conversations'),
    h('h2', { id: 'conv-h' }, convName({ ...s, id: o.id })),
    v.patient ? h('p', { class: 'patient', 'aria-label': 'Patient' },
      h('span', { class: 'tag' }, 'Patient'), ' ', v.patient.display_name, ' · MRN ', v.patient.mrn,
      me.user.role !== 'patient' && s.patient_id ? [' ', h('a', { href: '#/patients/' + s.patient_id, id: 'patient-record-link' }, 'Patient record')] : null) : null,
    me.user.role !== 'patient' && s.patient_id ? patientLinks(s.patient_id) : null,
    s.beyond_care_team ? h('p', { class: 'notice' }, 'Minimum necessary: this conversation includes people outside the patient\'s care team. Share only what they need.') : null,
    me.user.role === 'patient' ? null : membersPanel(v, s),
    me.user.role !== 'patient' && s.patient_id ? careTeamPanel(s.patient_id) : null,
    me.user.role === 'patient' ? null : escalationsPanel(),
    findBar());
  const msgs = [...o.messages.values()].sort((a, b) => a.seq - b.seq);
  const corrected = new Set(msgs.filter((m) => m.corrects).map((m) => m.corrects));
  const ol = h('ol', { class: 'messages', id: 'messages', 'aria-label': 'Messages' }, msgs.map((m) => {
    const mineMsg = m.sender_id === me.user.id;
    const recalled = !!m.recalled_at;
    const at = new Date(m.created_at).toLocaleTimeString();
    const canForward = me.user.role !== 'patient' && !recalled && !m.shredded && !m.withheld;
    const canReport = me.user.role !== 'patient' && !m.shredded;
    const actions = (mineMsg && !recalled && !m.shredded) || canForward || canReport ? h('div', { class: 'actions' },
      mineMsg && !recalled && !m.shredded ? [
        h('button', { type: 'button', class: 'link', onclick: () => recall(m), 'aria-label': 'Recall message sent at ' + at }, 'Recall'),
        h('button', { type: 'button', class: 'link', onclick: () => startCorrection(m), 'aria-label': 'Correct message sent at ' + at }, 'Correct')] : null,
      canForward ? h('button', { type: 'button', class: 'link', onclick: () => forwardDialog(m), 'aria-label': 'Forward message sent at ' + at }, 'Forward') : null,
      canReport ? h('button', { type: 'button', class: 'link', onclick: () => reportMisdirected(m), 'aria-label': 'Report misdirected: the message sent at ' + at }, 'Report misdirected') : null) : null;
    return h('li', { class: 'msg' + (mineMsg ? ' mine' : '') + (m.priority === 'stat' ? ' stat' : m.priority === 'urgent' ? ' urgent' : '') + (recalled ? ' recalled' : ''), dataset: { seq: m.seq, id: m.id } },
      h('div', { class: 'meta' }, h('span', { class: 'sender' }, mineMsg ? 'You' : names.get(m.sender_id) || 'Former member'), ' ', time(m.created_at), ' ', badge(m.priority),
        m.corrects ? h('span', { class: 'tag' }, 'Correction') : null, corrected.has(m.id) && !recalled ? h('span', { class: 'tag' }, 'Corrected below') : null),
      h('p', { class: 'body' }, recalled ? 'Message recalled by its sender.' : m.withheld ? 'Content withheld on this device.' : m.shredded ? 'Content removed (retention).' : m.body),
      !recalled && !m.withheld && !m.shredded && m.attachments && m.attachments.length ? attachmentList(m) : null,
      mineMsg ? h('p', { class: 'receipt' }, receiptText(m)) : null,
      actions);
  }));
  if (msgs.length === 0) ol.append(h('li', { class: 'muted' }, 'No messages yet.'));
  mount(o.root, header, ol, composer());
  ol.scrollTop = ol.scrollHeight;
  afterConversationRender();
}

/** A message's attachments: opened on request (each download is audited), images shown. */
function attachmentList(m) {
  return h('ul', { class: 'attachments', 'aria-label': 'Attachments' }, m.attachments.map((id, i) => {
    const li = h('li', {});
    const show = (f, opened) => {
      const img = f.type.startsWith('image/') ? h('img', { src: f.url, alt: 'Attached image ' + f.filename, class: 'preview' }) : null;
      // Just opened: keep it in view once it has its height.
      if (img && opened) img.addEventListener('load', () => li.scrollIntoView({ block: 'nearest' }));
      mount(li, img, h('a', { href: f.url, download: f.filename, class: 'button' }, 'Save ', f.filename));
    };
    const cached = files.get(id);
    if (cached) show(cached);
    else {
      const b = h('button', { type: 'button', 'aria-label': `Open attachment ${i + 1} of the message sent at ${new Date(m.created_at).toLocaleTimeString()}` }, 'Open attachment', m.attachments.length > 1 ? ' ' + (i + 1) : '');
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          const r = await api.file('/conversations/' + m.conversation_id + '/attachments/' + id);
          const f = { url: URL.createObjectURL(r.blob), filename: r.filename, type: r.blob.type || '' };
          files.set(id, f);
          show(f, true);
        } catch (e) {
          b.disabled = false;
          li.append(h('p', { class: 'form-message error', role: 'alert' }, e.userMessage || 'The attachment cannot be opened.'));
        }
      });
      li.append(b);
    }
    return li;
  }));
}

function composer() {
  const o = open;
  const msg = messageBox();
  const body = field(o.correcting ? 'Corrected message' : 'Message', { name: 'body', tag: 'textarea', required: true, rows: 2 });
  const pr = field('Priority', { name: 'priority', tag: 'select', options: PRIORITIES, value: 'routine' });
  pr.input.addEventListener('change', () => form.classList.toggle('stat', pr.input.value === 'stat'));
  // Attachments go with new messages (a correction repeats the text only).
  const file = o.correcting ? null : h('input', { type: 'file', id: 'f-file', name: 'file', accept: ATTACHMENT_TYPES });
  const attach = file ? h('div', { class: 'field attach' }, h('label', { for: 'f-file' }, 'Attach a file (optional; photo or PDF)'), file) : null;
  const cancel = o.correcting ? h('button', { type: 'button', class: 'link', onclick: () => { o.correcting = null; renderConversation(); } }, 'Cancel correction') : null;
  const form = h('form', { class: 'composer', novalidate: true, 'aria-label': 'Send a message' },
    o.correcting ? h('p', { class: 'notice' }, 'Correcting your message sent at ', time(o.correcting.created_at), '.') : null,
    body, attach, h('div', { class: 'row' }, pr, h('button', { type: 'submit', class: 'primary' }, o.correcting ? 'Send correction' : 'Send'), cancel), msg);
  body.input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = body.input.value;
    if (!text.trim()) { showError(msg, { userMessage: 'Write a message first.' }); body.input.focus(); return; }
    const req = { client_txn_id: crypto.randomUUID(), body: text, priority: pr.input.value };
    if (o.correcting) req.corrects = o.correcting.id;
    await submitForm(form, msg, async () => {
      const chosen = file && file.files[0];
      if (chosen) {
        // Uploaded first; the message then refers to it. A refused file sends nothing.
        const a = await api.upload('/conversations/' + o.id + '/attachments', chosen);
        req.attachments = [a.id];
      }
      const m = await api.post('/conversations/' + o.id + '/messages', req);
      if (open !== o) return;
      o.messages.set(m.seq, m);
      o.correcting = null;
      renderConversation();
      announce(m.priority === 'stat' ? 'STAT message sent' : 'Message sent');
      const again = o.root.querySelector('textarea');
      if (again) again.focus();
    }, { keep: true });
  });
  return form;
}

async function recall(m) {
  if (!(await ask('Recall this message? Its text disappears for everyone in the conversation.', 'Recall message'))) return;
  try {
    const r = await api.post('/conversations/' + open.id + '/messages/' + m.id + '/recall');
    if (open) { open.messages.set(r.seq, r); renderConversation(); announce('Message recalled'); }
  } catch (e) {
    await ask(e.userMessage, 'OK', false);
  }
}

/** Reports a message as sent to the wrong people: a breach incident opens for compliance. */
async function reportMisdirected(m) {
  if (!(await ask('Report this message as sent to the wrong people? A breach incident opens for the compliance officers, linked to this message.', 'Report misdirected'))) return;
  try {
    await api.post(`/conversations/${open.id}/messages/${m.id}/report-misdirected`);
    announce('Reported; an incident is open');
    await ask('Reported. The compliance officers have an incident to assess.', 'OK', false);
  } catch (e) {
    await ask(e.userMessage, 'OK', false);
  }
}

const PURPOSES = [['', 'None (only within the patient\'s care team)'], ['treatment', 'Treatment'], ['payment', 'Payment'], ['operations', 'Health care operations']];

/**
 * Forwards a message into another of one's conversations. A patient's message reaching anyone
 * outside the care team is a disclosure: it needs a permitted purpose or the id of a recorded
 * patient authorization, and is listed in the patient's accounting of disclosures.
 */
function forwardDialog(m) {
  const o = open;
  const patient = !!(o.view.summary || o.view).patient_id;
  const msg = messageBox();
  const targets = (list || []).filter((c) => c.id !== o.id && !c.withheld);
  const target = field('Forward to', { name: 'fwd_target', tag: 'select', options: [['', targets.length ? 'Choose a conversation' : 'No other conversation'], ...targets.map((c) => [c.id, convName(c)])] });
  const note = field('Note above the forwarded text (optional)', { name: 'fwd_note', maxlength: 2000 });
  const purpose = patient ? field('Purpose of the disclosure', { name: 'fwd_purpose', tag: 'select', options: PURPOSES }) : null;
  const auth = patient ? field('Or the id of the patient\'s authorization', { name: 'fwd_auth', maxlength: 36 }) : null;
  const record = patient ? authorizationForm((o.view.summary || o.view).patient_id, (id) => { auth.input.value = id; purpose.input.value = ''; }) : null;
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const form = h('form', { method: 'dialog', novalidate: true },
    h('h2', { id: 'fwd-h' }, 'Forward this message'),
    patient ? h('p', { class: 'notice' }, 'This is a patient\'s message. Forwarding it to anyone outside their care team is a disclosure: give its purpose or the patient\'s authorization. It is recorded in the patient\'s accounting of disclosures.') : null,
    target, note, purpose, auth, msg,
    h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Forward'), cancel));
  const dlg = h('dialog', { 'aria-labelledby': 'fwd-h', class: 'card' }, form, record);
  const done = () => { dlg.close(); dlg.remove(); };
  cancel.addEventListener('click', done);
  dlg.addEventListener('cancel', done);
  // One transaction id per dialog: a retry after an answer that was lost is the same forward,
  // not a second disclosure (the server deduplicates on it).
  const txn = crypto.randomUUID();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!target.input.value) { showError(msg, { userMessage: 'Choose the conversation to forward to.' }); target.input.focus(); return; }
    const a = auth ? auth.input.value.trim().toLowerCase() : '';
    if (a && !ID.test(a)) { showError(msg, { userMessage: 'An authorization id looks like 8-4-4-4-12 letters and digits.' }); auth.input.focus(); return; }
    if (a && purpose.input.value) { showError(msg, { userMessage: 'Give a purpose or an authorization, not both.' }); return; }
    const req = { target_conversation_id: target.input.value, client_txn_id: txn };
    if (note.input.value.trim()) req.note = note.input.value.trim();
    if (purpose && purpose.input.value) req.purpose = purpose.input.value;
    if (a) req.authorization_id = a;
    await submitForm(form, msg, async () => {
      await api.post(`/conversations/${o.id}/messages/${m.id}/forward`, req);
      done();
      announce('Message forwarded');
    }, { keep: true });
  });
  document.body.append(dlg);
  dlg.showModal();
  target.input.focus();
}

/**
 * Records a patient's signed authorization (HIPAA 164.508: recipient, purpose, expiry) and
 * hands its id to `use`. Its own form, beside the forward form (forms do not nest).
 */
function authorizationForm(patientId, use) {
  const msg = messageBox();
  const recipient = field('Recipient, as on the signed form', { name: 'auth_recipient', maxlength: 500 });
  const purpose = field('Purpose, as on the signed form', { name: 'auth_purpose', maxlength: 500 });
  const expires = field('Expires on', { name: 'auth_expires', type: 'date' });
  const form = h('form', { novalidate: true, id: 'record-auth' }, recipient, purpose, expires, msg, h('button', { type: 'submit' }, 'Record authorization'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!recipient.input.value.trim() || !purpose.input.value.trim()) { showError(msg, { userMessage: 'Copy the recipient and the purpose from the signed form.' }); return; }
    if (!DAY.test(expires.input.value)) { showError(msg, { userMessage: 'Choose the day the authorization expires.' }); expires.input.focus(); return; }
    // The end of that day, local time.
    const end = new Date(expires.input.value + 'T23:59:59');
    if (end.getTime() <= Date.now()) { showError(msg, { userMessage: 'The authorization has already expired.' }); expires.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const a = await api.post('/patients/' + patientId + '/authorizations', { recipient: recipient.input.value.trim(), purpose: purpose.input.value.trim(), expires_at: end.toISOString() });
      use(a.id);
      showInfo(msg, 'Authorization recorded; its id is filled in above.');
    });
  });
  return h('details', { class: 'record-auth' }, h('summary', {}, 'Record a patient authorization'), form);
}

function startCorrection(m) {
  open.correcting = m;
  renderConversation();
  const t = open.root.querySelector('textarea');
  t.value = m.body || '';
  t.focus();
}

function membersPanel(v, s) {
  const isOwner = s.my_role === 'owner';
  const det = h('details', { class: 'members', open: open.membersOpen, ontoggle: () => { if (open) open.membersOpen = det.open; } },
    h('summary', {}, `Members (${v.members.length})`),
    h('ul', {}, v.members.map((m) => h('li', {},
      h('span', {}, m.display_name, m.user_id === me.user.id ? ' (you)' : ''), ' ',
      h('span', { class: 'muted' }, m.role === 'owner' ? 'owner' : m.user_role.replace('_', ' ')),
      m.reason ? h('span', { class: 'tag' }, 'Reason: ' + m.reason) : null,
      (isOwner && m.user_id !== me.user.id) || (!isOwner && m.user_id === me.user.id && s.kind !== 'direct')
        ? h('button', { type: 'button', class: 'link', onclick: () => removeMember(m), 'aria-label': m.user_id === me.user.id ? 'Leave conversation' : 'Remove ' + m.display_name }, m.user_id === me.user.id ? 'Leave' : 'Remove')
        : null))),
    isOwner && s.kind !== 'direct' ? addMemberForm(v, s) : null);
  return det;
}

function addMemberForm(v, s) {
  const msg = messageBox();
  const who = field('Add a member', { name: 'member', tag: 'select', options: [['', 'Loading people…']] });
  const reasonCode = field('Reason (required for people outside the patient\'s care team)', { name: 'reason', tag: 'select', options: [['', 'No reason needed'], ...REASONS] });
  const note = field('Reason note (optional)', { name: 'note', maxlength: 500 });
  const form = h('form', { class: 'addmember', novalidate: true },
    who, s.patient_id ? [reasonCode, note] : null, msg, h('button', { type: 'submit' }, 'Add'));
  people().then((p) => {
    const present = new Set(v.members.map((m) => m.user_id));
    const opts = p.items.filter((u) => !present.has(u.id) && !u.disabled).map((u) => [u.id, `${u.display_name} (${u.role.replace('_', ' ')})`]);
    mount(who.input, h('option', { value: '' }, 'Choose a person'), opts.map(([val, t]) => h('option', { value: val }, t)));
  }).catch((e) => mount(who.input, h('option', { value: '' }, e.userMessage)));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!who.input.value) { showError(msg, { userMessage: 'Choose the person to add.' }); return; }
    const req = { user_id: who.input.value };
    if (s.patient_id && reasonCode.input.value) req.reason = { code: reasonCode.input.value, note: note.input.value || undefined };
    await submitForm(form, msg, async () => {
      await api.post('/conversations/' + open.id + '/members', req);
      announce('Member added');
      await reloadOpen();
    }, { keep: true });
  });
  return form;
}

async function removeMember(m) {
  const self = m.user_id === me.user.id;
  if (!(await ask(self ? 'Leave this conversation?' : 'Remove this member from the conversation?', self ? 'Leave' : 'Remove member'))) return;
  try {
    await api.del('/conversations/' + open.id + '/members/' + m.user_id);
    if (self) { location.hash = '#/'; } else { await reloadOpen(); }
  } catch (e) {
    await ask(e.userMessage, 'OK', false);
  }
}

/**
 * A browser notification for a message that is not on screen: "New message" and the
 * conversation id, never the sender, title, patient or text (the operating system may show,
 * log or sync notifications). Only with the permission the person granted on the account page.
 */
function notifyNewMessage(conversationId) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification('New message', { body: 'Conversation ' + conversationId, tag: 'ward-' + conversationId });
    n.onclick = () => { window.focus(); location.hash = '#/c/' + conversationId; n.close(); };
  } catch {
    // Some browsers allow notifications only from a service worker; the in-page badge remains.
  }
}

/** The account page's notification switch: permission is asked only from this click. */
function notificationsCard() {
  const msg = messageBox();
  const state = () => (!('Notification' in window) ? 'unsupported' : Notification.permission);
  const words = {
    unsupported: 'This browser cannot show notifications.',
    granted: 'Notifications are on. They say "New message" and the conversation number only.',
    denied: 'Notifications are blocked in this browser\'s site settings.',
    default: 'Get a notification when a message arrives in a conversation that is not on screen. It says "New message" and the conversation number only.',
  };
  const text = h('p', { id: 'notify-state' }, words[state()]);
  const button = state() === 'default' ? h('button', { type: 'button', id: 'enable-notifications' }, 'Enable notifications') : null;
  if (button) {
    button.addEventListener('click', async () => {
      try {
        await Notification.requestPermission();
      } catch (e) {
        showError(msg, e);
      }
      text.textContent = words[state()];
      if (state() !== 'default') button.remove();
    });
  }
  return h('section', { class: 'card', 'aria-labelledby': 'notify-h' }, h('h2', { id: 'notify-h' }, 'Notifications'), text, msg, button);
}

function onEvent(f) {
  const c = list && list.find((x) => x.id === f.conversation_id);
  const isOpen = open && open.id === f.conversation_id;
  if (f.kind === 'message') {
    const m = f.message;
    if (m.sender_id !== me.user.id) {
      if (isOpen && document.visibilityState === 'visible') {
        api.post('/conversations/' + f.conversation_id + '/receipts', { kind: 'read', up_to_seq: m.seq }).catch(() => {});
      } else {
        api.post('/conversations/' + f.conversation_id + '/receipts', { kind: 'delivered', up_to_seq: m.seq }).catch(() => {});
        hot.set(f.conversation_id, higher(hot.get(f.conversation_id), m.priority));
        if (c) c.unread += 1;
        notifyNewMessage(f.conversation_id);
      }
      announce(m.priority === 'stat' ? 'New STAT message' : 'New message');
    }
    if (!c) refreshList();
    else { list = [c, ...list.filter((x) => x !== c)]; renderList(); }
    if (isOpen) { open.messages.set(m.seq, m); renderConversation(); }
  } else if (f.kind === 'recall') {
    if (isOpen) {
      for (const m of open.messages.values()) if (m.id === f.message_id) m.recalled_at = f.at, m.body = null;
      renderConversation();
    }
  } else if (f.kind === 'receipt') {
    if (isOpen) {
      const mem = open.view.members.find((x) => x.user_id === f.user_id);
      if (mem) {
        if (f.receipt === 'read') mem.read_seq = Math.max(mem.read_seq, f.up_to_seq);
        else mem.delivered_seq = Math.max(mem.delivered_seq, f.up_to_seq);
        for (const p of open.root.querySelectorAll('li.msg.mine')) {
          const m = open.messages.get(Number(p.dataset.seq));
          const r = p.querySelector('.receipt');
          if (m && r) r.textContent = receiptText(m);
        }
      }
    }
  } else {
    if (f.kind === 'member_removed' && f.user_id === me.user.id) {
      if (isOpen) { open = null; location.hash = '#/'; }
      refreshList();
      return;
    }
    if (isOpen) reloadOpen();
    if (!c) refreshList();
  }
}

async function newConversationPage() {
  setTitle('New conversation');
  open = null;
  const msg = messageBox();
  const kind = field('Kind', { name: 'kind', tag: 'select', options: [['direct', 'Direct (one person)'], ['group', 'Group']] });
  const title = field('Title (groups only)', { name: 'title' });
  const peopleBox = h('fieldset', { class: 'people' }, h('legend', {}, 'Members'), h('p', { class: 'muted' }, 'Loading people…'));
  const form = h('form', { class: 'card', novalidate: true },
    h('h1', {}, 'New conversation'), kind, title, peopleBox, msg,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Start'), h('a', { href: '#/' }, 'Cancel')));
  mount(main, form);
  focusHeading(form);
  try {
    const p = await people();
    const others = p.items.filter((u) => u.id !== me.user.id && !u.disabled);
    mount(peopleBox, h('legend', {}, 'Members'), others.length === 0 ? h('p', { class: 'muted' }, 'No one else is here yet.') : others.map((u) =>
      h('div', { class: 'check' }, h('input', { type: 'checkbox', id: 'm-' + u.id, value: u.id }),
        h('label', { for: 'm-' + u.id }, `${u.display_name} (${u.role.replace('_', ' ')})`))));
  } catch (e) {
    showError(msg, e);
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const members = [...peopleBox.querySelectorAll('input:checked')].map((i) => ({ user_id: i.value }));
    if (members.length === 0) { showError(msg, { userMessage: 'Choose at least one member.' }); return; }
    if (kind.input.value === 'direct' && members.length !== 1) { showError(msg, { userMessage: 'A direct conversation has exactly one other person. Choose one, or make it a group.' }); return; }
    const req = { kind: kind.input.value, members };
    if (kind.input.value !== 'direct' && title.input.value.trim()) req.title = title.input.value.trim();
    await submitForm(form, msg, async () => {
      const c = await api.post('/conversations', req);
      location.hash = '#/c/' + c.id;
    }, { keep: true });
  });
}

// ---------------------------------------------------------------------------------------------
// On call and escalations: who on the patient's care team is told when an urgent or STAT
// message stays unread, and what escalation did for this conversation's messages
// ---------------------------------------------------------------------------------------------

/**
 * A collapsible panel of the open conversation whose content loads when it is opened (each
 * load may be an audited read) and is kept across re-renders until it is closed. `render`
 * gets the loaded data and a function that loads it again.
 */
function lazyPanel(key, summary, load, render) {
  const o = open;
  const body = h('div', { class: 'panel-body' });
  const det = h('details', { class: 'panel', id: key, open: o[key] ? true : null }, h('summary', {}, summary), body);
  const fill = async (fresh) => {
    if (fresh || !o[key + 'Data']) {
      mount(body, h('p', { class: 'muted' }, 'Loading…'));
      try { o[key + 'Data'] = await load(); } catch (e) { mount(body, h('p', { class: 'form-message error' }, e.userMessage)); return; }
    }
    if (open === o) mount(body, render(o[key + 'Data'], () => fill(true)));
  };
  det.addEventListener('toggle', () => {
    // (a panel rendered open fires a toggle too: nothing changed then)
    if (det.open === !!o[key]) return;
    o[key] = det.open;
    if (det.open) fill(true); else o[key + 'Data'] = null;
  });
  if (o[key]) fill(false);
  return det;
}

function careTeamPanel(patientId) {
  const msg = messageBox();
  const load = async () => {
    const [p, dir] = await Promise.all([api.get('/patients/' + patientId), people().catch(() => null)]);
    return { p, dir };
  };
  return lazyPanel('careTeam', 'Care team and on call', load, ({ p, dir }, refill) => {
    if (p.care_team.length === 0) return h('p', { class: 'muted' }, 'The patient has no care team.');
    const onCall = new Set(p.on_call || []);
    return [h('p', { class: 'muted' }, 'On-call members are told when an urgent or STAT message about the patient stays unread.'), msg,
      h('ul', { class: 'oncall' }, p.care_team.map((uid) => {
        const id = 'oncall-' + uid;
        const box = h('input', { type: 'checkbox', id, checked: onCall.has(uid) });
        box.addEventListener('change', async () => {
          box.disabled = true;
          try {
            await api.call('PUT', `/patients/${patientId}/care-team/${uid}/on-call`, { on_call: box.checked });
            announce(box.checked ? 'On call' : 'Off call');
            await refill();
          } catch (e) {
            box.checked = !box.checked;
            box.disabled = false;
            showError(msg, e);
          }
        });
        return h('li', { class: 'check' }, box, h('label', { for: id }, personName(dir, uid), uid === me.user.id ? ' (you)' : '', ' on call'));
      }))];
  });
}

// ---------------------------------------------------------------------------------------------
// Patient records: search by MRN, the record with its care team and attached groups
// ---------------------------------------------------------------------------------------------

/** Patient search (workforce): the MRN goes in the body, and the record opens by its id only. */
function patientSearchPage() {
  setTitle('Patients');
  open = null;
  const msg = messageBox();
  const mrn = field('Patient MRN', { name: 'patient_mrn', required: true, maxlength: 64 });
  const form = h('form', { id: 'patient-search', novalidate: true, 'aria-labelledby': 'patient-search-h' },
    h('h2', { id: 'patient-search-h' }, 'Find a patient'),
    h('p', { class: 'muted' }, 'Exact medical record number. Each search is recorded in the audit log.'),
    mrn, msg, h('button', { type: 'submit' }, 'Open record'));
  const creator = me.user.role === 'admin' || me.user.role === 'clinician' || me.user.role === 'nurse';
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Patients'), h('section', { class: 'card' }, form),
    creator ? newPatientForm() : null);
  mount(main, root);
  focusHeading(root);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const m = mrn.input.value.trim();
    if (!m) { showError(msg, { userMessage: 'Enter the patient\'s MRN.' }); mrn.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const p = await api.post('/patients/search', { mrn: m });
      location.hash = '#/patients/' + p.id;
    }, { onError: (e) => { if (e.status === 404) showError(msg, { userMessage: 'No patient has that MRN in this organisation.' }); } });
  });
}

/** A new patient record (admins, clinicians, nurses): MRN and name; a clinician or nurse
 * creating it starts on its care team. Opens the record by its id. */
function newPatientForm() {
  const msg = messageBox();
  const mrn = field('Medical record number', { name: 'new_mrn', required: true, maxlength: 64 });
  const name = field('Patient name', { name: 'new_patient_name', required: true, maxlength: 200 });
  const form = h('form', { class: 'card', id: 'patient-new', novalidate: true, 'aria-labelledby': 'patient-new-h' },
    h('h2', { id: 'patient-new-h' }, 'New patient record'),
    h('p', { class: 'muted' }, me.user.role === 'admin' ? 'Add the care team on the record once it exists.' : 'You start on its care team.'),
    h('div', { class: 'row wrap' }, mrn, name), msg, h('button', { type: 'submit', class: 'primary' }, 'Create record'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const m = mrn.input.value.trim();
    const n = name.input.value.trim();
    if (!m) { showError(msg, { userMessage: 'Enter the medical record number.' }); mrn.input.focus(); return; }
    if (!n) { showError(msg, { userMessage: 'Enter the patient\'s name.' }); name.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const team = me.user.role === 'admin' ? [] : [me.user.id];
      const p = await api.post('/patients', { mrn: m, display_name: n, care_team: team });
      location.hash = '#/patients/' + p.id;
    });
  });
  return form;
}

/** What else the record offers, by role (the API decides again): consent (the care team and
 * admins record it, compliance officers read it), a PHI-free notice and a portal sign-in link
 * (the care team), the restricted flag and the record's export (admins, compliance officers). */
function patientActionSections(p, show) {
  const role = me.user.role;
  const onTeam = p.care_team.includes(me.user.id);
  const team = (role === 'clinician' || role === 'nurse' || role === 'staff') && onTeam;
  const auditor = role === 'admin' || role === 'compliance_officer';
  const out = [];
  if (team || auditor) out.push(patientConsentSection(p.id, team || role === 'admin'));
  if (team) out.push(patientNoticeSection(p.id), portalLinkSection(p.id));
  if (auditor) out.push(patientRecordAdminSection(p, show));
  return out;
}

/** The patient's consent per channel; recorded on the patient's word by whoever may. */
function patientConsentSection(pid, mayRecord) {
  const msg = messageBox();
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const sec = h('section', { class: 'card', id: 'patient-consent', 'aria-labelledby': 'pconsent-h' }, h('h2', { id: 'pconsent-h' }, 'Consent'),
    h('p', { class: 'muted' }, mayRecord ? 'Record what the patient tells you; the patient can change it in the portal too.' : 'Read only.'), msg, list);
  const load = async (notice) => {
    try {
      const st = await api.get(`/patients/${pid}/consents`);
      const current = new Set(st.current.map((c) => c.channel));
      mount(list, h('ul', { class: 'plain' }, CHANNELS.map(([ch, label]) => {
        const on = current.has(ch);
        const b = mayRecord ? h('button', { type: 'button', 'aria-label': (on ? 'Withdraw consent: ' : 'Record consent: ') + label }, on ? 'Withdraw' : 'Record consent') : null;
        if (b) b.addEventListener('click', async () => {
          b.disabled = true;
          try {
            if (on) {
              await api.post(`/patients/${pid}/consents/revoke`, { channel: ch });
            } else {
              const req = { channel: ch };
              if (ch === 'unsecured_phi') {
                if (!(await ask('Read this to the patient: unencrypted email and text messages can be read by anyone who sees their inbox or phone, or intercepts them. Record consent only if the patient still insists on receiving health details that way.', 'The patient insists'))) { b.disabled = false; return; }
                req.warning_version = WARNING_VERSION;
                req.patient_insists = true;
              }
              await api.post(`/patients/${pid}/consents`, req);
            }
            await load(on ? `Consent withdrawn: ${label}.` : `Consent recorded: ${label}.`);
          } catch (e) {
            b.disabled = false;
            showError(msg, e);
          }
        });
        return h('li', { class: 'consent' }, h('div', {}, h('strong', {}, label), ': ', on ? 'allowed' : 'not allowed'), b);
      })));
      if (notice) { showInfo(msg, notice); announce(notice); }
    } catch (e) {
      mount(list);
      showError(msg, e);
    }
  };
  load();
  return sec;
}

/** A PHI-free notice from one of the organisation's templates (the content policy and the
 * patient's consent and verified contacts are checked by the server). */
function patientNoticeSection(pid) {
  const msg = messageBox();
  const template = field('Template', { name: 'notice_template', tag: 'select', options: [['', 'Loading…']] });
  const values = [['first_name', 'First name'], ['date', 'Date'], ['time', 'Time'], ['location_name', 'Location'], ['portal_link', 'Portal link (https://…)']]
    .map(([k, label]) => [k, field(label + ' (if the template uses it)', { name: 'notice_' + k, maxlength: 200 })]);
  const form = h('form', { class: 'card', id: 'patient-notice', novalidate: true, 'aria-labelledby': 'pnotice-h' },
    h('h2', { id: 'pnotice-h' }, 'Send a notice'),
    h('p', { class: 'muted' }, 'Reminders and "you have a message" notices carry no clinical detail: the server refuses text that does, and sends only on a channel the patient agreed to.'),
    template, h('div', { class: 'row wrap' }, ...values.map(([, f]) => f)), msg, h('button', { type: 'submit' }, 'Send notice'));
  let templates = [];
  api.get('/org/notice-templates').then((r) => {
    templates = r.items;
    const opts = [['', templates.length ? 'Choose a template' : 'No templates: an admin adds them']].concat(templates.map((t) => [t.id, `${t.name} (${t.channel})`]));
    template.input.replaceChildren(...opts.map(([v, t]) => h('option', { value: v }, t)));
  }).catch((e) => showError(msg, e));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = templates.find((x) => x.id === template.input.value);
    if (!t) { showError(msg, { userMessage: 'Choose the template to send.' }); template.input.focus(); return; }
    const v = {};
    for (const [k, f] of values) { const x = f.input.value.trim(); if (x) v[k] = x; }
    await submitForm(form, msg, async () => {
      await api.post(`/patients/${pid}/notices`, { template_id: t.id, channel: t.channel, values: v });
      showInfo(msg, 'Notice queued for delivery.');
      announce('Notice queued for delivery.');
    });
  });
  return form;
}

/** A one-time portal sign-in link for the patient, shown once to pass on (in a notice's
 * portal link, say). Never kept by the page. */
function portalLinkSection(pid) {
  const msg = messageBox();
  const out = h('div', {});
  const b = h('button', { type: 'button', id: 'portal-link' }, 'Create a sign-in link');
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      const r = await api.post(`/patients/${pid}/portal-link`);
      const input = h('input', { id: 'portal-link-url', readonly: true, value: r.url, 'aria-label': 'One-time sign-in link' });
      mount(out, h('p', {}, `Works once, until ${new Date(r.expires_at).toLocaleString()}. Pass it to the patient only; it is not shown again.`), input);
      input.select();
    } catch (e) {
      showError(msg, e);
    } finally {
      b.disabled = false;
    }
  });
  return h('section', { class: 'card', id: 'portal-link-section', 'aria-labelledby': 'plink-h' }, h('h2', { id: 'plink-h' }, 'Portal sign-in link'),
    h('p', { class: 'muted' }, 'For a patient with a portal account: a link that signs them in once, instead of a password.'), msg, b, out);
}

/** Admins and compliance officers: the restricted flag (every access raises an alert) and the
 * record's export (its conversations as a zip archive, audited). */
function patientRecordAdminSection(p, show) {
  const msg = messageBox();
  const flag = h('input', { type: 'checkbox', id: 'patient-restricted', checked: !!p.restricted });
  flag.addEventListener('change', async () => {
    flag.disabled = true;
    try {
      show(await api.call('PUT', `/patients/${p.id}/restricted`, { restricted: flag.checked }));
      announce(flag.checked ? 'The record is restricted.' : 'The record is no longer restricted.');
    } catch (e) {
      flag.checked = !flag.checked;
      flag.disabled = false;
      showError(msg, e);
    }
  });
  const exp = h('button', { type: 'button', id: 'patient-export' }, 'Export the record');
  exp.addEventListener('click', async () => {
    exp.disabled = true;
    try {
      const f = await api.postFile(`/patients/${p.id}/export`);
      save(f);
      showInfo(msg, `Record downloaded: ${f.filename}.`);
    } catch (e) {
      showError(msg, e);
    } finally {
      exp.disabled = false;
    }
  });
  return h('section', { class: 'card', id: 'patient-admin', 'aria-labelledby': 'padmin-h' }, h('h2', { id: 'padmin-h' }, 'Record controls'), msg,
    h('div', { class: 'check' }, flag, h('label', { for: 'patient-restricted' }, 'Restricted record (a staff member or a public figure): every access raises an alert')),
    h('p', {}, exp, ' ', h('span', { class: 'muted' }, 'Its conversations as readable transcripts, for the patient\'s right of access; the export is audited.')));
}

/** Whether the signed-in user may change this patient's care team (the API decides again). */
function mayEditCareTeam(p) {
  const role = me.user.role;
  return role === 'admin' || ((role === 'clinician' || role === 'nurse') && p.care_team.includes(me.user.id));
}

/** A patient record: the reference, the care team (direct members, members through groups,
 * on call) and the SCIM groups attached to it. No PHI in the title or the address. */
async function patientRecordPage(id) {
  setTitle('Patient record');
  open = null;
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Patient record'), h('p', { class: 'muted' }, 'Loading…'));
  mount(main, root);
  focusHeading(root);
  const teamGroups = me.user.role === 'admin' || me.user.role === 'clinician' || me.user.role === 'nurse';
  let p; let dir; let groups;
  try {
    [p, dir, groups] = await Promise.all([api.get('/patients/' + id), people().catch(() => null), teamGroups ? api.get('/groups').catch(() => []) : []]);
  } catch (e) {
    mount(root, h('h1', { class: 'pagehead' }, 'Patient record'),
      h('p', { class: 'form-message error', role: 'alert' }, e.status === 404 ? 'This patient record cannot be found.' : e.userMessage),
      h('p', {}, h('a', { href: '#/patients' }, 'Find a patient')));
    return;
  }
  if (!location.hash.endsWith(id)) return; // navigated away meanwhile
  const show = (next) => { p = next; render(); };
  const reload = async () => show(await api.get('/patients/' + id));
  const render = () => {
    const edit = mayEditCareTeam(p);
    mount(root, h('h1', { class: 'pagehead' }, 'Patient record'),
      h('section', { class: 'card', id: 'patient-ref', 'aria-label': 'Patient' },
        h('p', { class: 'patient' }, h('span', { class: 'tag' }, 'Patient'), ' ', h('strong', {}, p.display_name), ' · MRN ', p.mrn,
          p.restricted ? [' ', h('span', { class: 'tag' }, 'Restricted')] : null),
        h('p', {}, h('a', { href: `#/patients/${id}/contacts` }, 'Patient contacts'), ' · ', h('a', { href: '#/patients' }, 'Find another patient'))),
      careTeamSection(p, dir, edit, show, reload),
      // A patient's own record carries no group data (the server hides it).
      me.user.role === 'patient' ? null : attachedGroupsSection(p, groups, edit, show),
      ...patientActionSections(p, show));
  };
  render();
}

function careTeamSection(p, dir, edit, show, reload) {
  const msg = messageBox();
  const onCall = new Set(p.on_call || []);
  const groupName = new Map(p.care_team_groups.map((g) => [g.id, g.display_name]));
  const putDirect = async (team, done) => {
    try { show(await api.call('PUT', `/patients/${p.id}/care-team`, { care_team: team })); announce(done); } catch (e) { showError(msg, e); }
  };
  const members = p.care_team_members || p.care_team.map((u) => ({ user_id: u, direct: true, via_groups: [] }));
  const list = members.length === 0 ? h('p', { class: 'muted', id: 'no-care-team' }, 'The care team is empty.')
    : h('ul', { class: 'plain care-team', id: 'care-team' }, members.map((m) => {
      const name = personName(dir, m.user_id);
      const box = h('input', { type: 'checkbox', id: 'rec-oncall-' + m.user_id, checked: onCall.has(m.user_id), disabled: !edit });
      box.addEventListener('change', async () => {
        box.disabled = true;
        try {
          await api.call('PUT', `/patients/${p.id}/care-team/${m.user_id}/on-call`, { on_call: box.checked });
          announce(box.checked ? 'On call' : 'Off call');
          await reload();
        } catch (e) { box.checked = !box.checked; box.disabled = false; showError(msg, e); }
      });
      const via = m.via_groups.map((g) => groupName.get(g) || 'a group');
      return h('li', { dataset: { user: m.user_id } },
        h('span', { class: 'name' }, name, m.user_id === me.user.id ? ' (you)' : ''), ' ',
        m.direct ? h('span', { class: 'tag' }, 'Direct') : null, ' ',
        dir && dir.items.some((u) => u.id === m.user_id && u.disabled) ? h('span', { class: 'tag' }, 'Account disabled') : null, ' ',
        via.length ? h('span', { class: 'tag via' }, 'Via group: ' + via.join(', ')) : null, ' ',
        h('span', { class: 'check' }, box, h('label', { for: box.id }, 'On call', h('span', { class: 'sr-only' }, ': ' + name))), ' ',
        edit && m.direct ? h('button', { type: 'button', class: 'link', 'aria-label': 'Remove ' + name + ' from the care team',
          onclick: () => putDirect(p.direct_care_team.filter((u) => u !== m.user_id), 'Removed from the care team') }, 'Remove') : null,
        !m.direct ? h('span', { class: 'muted' }, ' (change the group, or detach it, to remove)') : null);
    }));
  let add = null;
  if (edit) {
    const who = field('Add a member', { name: 'care_member', tag: 'select', id: 'care-member', options: [['', 'Choose a person']] });
    const direct = new Set(p.direct_care_team);
    const opts = dir ? dir.items.filter((u) => !direct.has(u.id) && !u.disabled && u.role !== 'patient') : [];
    mount(who.input, h('option', { value: '' }, 'Choose a person'), opts.map((u) => h('option', { value: u.id }, `${u.display_name} (${u.role.replace('_', ' ')})`)));
    const addMsg = messageBox();
    add = h('form', { id: 'care-team-add', novalidate: true }, h('div', { class: 'row wrap' }, who, h('button', { type: 'submit' }, 'Add')), addMsg);
    add.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!who.input.value) { showError(addMsg, { userMessage: 'Choose the person to add.' }); who.input.focus(); return; }
      await submitForm(add, addMsg, async () => {
        show(await api.call('PUT', `/patients/${p.id}/care-team`, { care_team: [...p.direct_care_team, who.input.value] }));
        announce('Added to the care team');
      });
    });
  }
  return h('section', { class: 'card', 'aria-labelledby': 'care-team-h' }, h('h2', { id: 'care-team-h' }, 'Care team'),
    h('p', { class: 'muted' }, 'Direct members are named here; members via a group follow the identity provider\'s group. On-call members are told when an urgent or STAT message about the patient stays unread.'),
    msg, list, add);
}

function attachedGroupsSection(p, groups, edit, show) {
  const msg = messageBox();
  const attached = p.care_team_groups.map((g) => g.id);
  const put = async (ids, done) => {
    show(await api.call('PUT', `/patients/${p.id}/care-team/groups`, { group_ids: ids }));
    announce(done);
  };
  const list = p.care_team_groups.length === 0 ? h('p', { class: 'muted', id: 'no-groups' }, 'No group is attached.')
    : h('ul', { class: 'plain', id: 'care-team-groups' }, p.care_team_groups.map((g) => h('li', { dataset: { id: g.id } },
      h('span', { class: 'name' }, g.display_name), ' ', h('span', { class: 'muted' }, `${g.member_count ?? g.members.length} ${(g.member_count ?? g.members.length) === 1 ? 'member' : 'members'} on the care team`), ' ',
      edit ? h('button', { type: 'button', class: 'link', 'aria-label': 'Detach ' + g.display_name,
        onclick: async () => { try { await put(attached.filter((x) => x !== g.id), 'Group detached'); } catch (e) { showError(msg, e); } } }, 'Detach') : null)));
  let form = null;
  if (edit) {
    const free = groups.filter((g) => !attached.includes(g.id));
    const pick = field('Attach a group', { name: 'care_group', tag: 'select', id: 'care-group', options: [] });
    mount(pick.input, h('option', { value: '' }, free.length ? 'Choose a group' : 'No other group'), free.map((g) => h('option', { value: g.id }, `${g.display_name} (${g.members} ${g.members === 1 ? 'member' : 'members'})`)));
    const formMsg = messageBox();
    form = h('form', { id: 'care-group-attach', novalidate: true }, h('div', { class: 'row wrap' }, pick, h('button', { type: 'submit' }, 'Attach')), formMsg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!pick.input.value) { showError(formMsg, { userMessage: 'Choose the group to attach.' }); pick.input.focus(); return; }
      await submitForm(form, formMsg, () => put([...attached, pick.input.value], 'Group attached'));
    });
  }
  return h('section', { class: 'card', 'aria-labelledby': 'care-groups-h' }, h('h2', { id: 'care-groups-h' }, 'Groups on the care team'),
    h('p', { class: 'muted' }, 'Every active member of an attached group is on the care team, and joins or leaves it as the identity provider changes the group. The identity provider never learns which patients a group is attached to.'),
    msg, list, form);
}

const ESC_STEPS = { 1: 'its recipients were told again', 2: 'the on-call care team was told' };
const ESC_OUTCOMES = { notified: '', no_one: ': nobody to tell', no_device: ': nobody had a device to tell' };

function escalationsPanel() {
  const o = open;
  return lazyPanel('escalations', 'Escalations', () => api.get(`/conversations/${o.id}/escalations`), (steps) => {
    if (steps.length === 0) return h('p', { class: 'muted' }, 'No urgent or STAT message here has been escalated.');
    const byId = new Map([...o.messages.values()].map((m) => [m.id, m]));
    return h('ul', { class: 'escalations' }, steps.map((e) => {
      const m = byId.get(e.message_id);
      const what = m ? [m.priority === 'stat' ? 'STAT' : 'Urgent', ' message of ', new Date(m.created_at).toLocaleTimeString()] : ['An earlier message'];
      return h('li', { dataset: { message: e.message_id, step: e.step } }, what, ' unread: ', ESC_STEPS[e.step] || 'step ' + e.step, ESC_OUTCOMES[e.outcome] ?? '',
        e.outcome === 'notified' ? ` (${e.people} ${e.people === 1 ? 'person' : 'people'}, ${e.devices} ${e.devices === 1 ? 'device' : 'devices'})` : '',
        ' at ', new Date(e.at).toLocaleTimeString());
    }));
  });
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

function sessionTable(sessions, onRevoke) {
  return h('table', { class: 'table' },
    h('caption', { class: 'sr-only' }, 'Sessions'),
    h('thead', {}, h('tr', {}, ['Device', 'Signed in', 'Last active', 'Address', onRevoke ? '' : null].filter((t) => t !== null)
      .map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Action'))))),
    h('tbody', {}, sessions.map((s) => h('tr', {},
      h('td', {}, s.device_name, ' ', h('span', { class: 'muted' }, s.device_platform), s.current ? h('span', { class: 'tag' }, 'This session') : null),
      h('td', {}, new Date(s.created_at).toLocaleString()),
      h('td', {}, new Date(s.last_active_at).toLocaleString()),
      h('td', {}, s.source_ip || '–'),
      onRevoke && h('td', {}, h('button', { type: 'button', onclick: () => onRevoke(s), 'aria-label': (s.current ? 'Sign out' : 'Revoke') + ' session on ' + s.device_name + ' from ' + new Date(s.created_at).toLocaleString() }, s.current ? 'Sign out' : 'Revoke'))))));
}

async function sessionsPage() {
  setTitle('Sessions');
  open = null;
  const msg = messageBox();
  const root = h('section', { class: 'card' }, h('h1', {}, 'Your sessions'), h('p', {}, 'Everywhere you are signed in. Revoke any you do not recognise.'), msg);
  mount(main, root, myDevicesCard());
  focusHeading(root);
  try {
    const list = await api.get('/me/sessions');
    root.append(sessionTable(list, async (s) => {
      if (s.current) return lock('You signed out.');
      try { await api.del('/me/sessions/' + s.id); announce('Session revoked'); sessionsPage(); } catch (e) { showError(msg, e); }
    }));
  } catch (e) {
    showError(msg, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Account: security keys and passkeys
// ---------------------------------------------------------------------------------------------

async function accountPage(info) {
  if (!api.hasTokens()) return; // a response that came back after the idle lock
  setTitle('Account');
  open = null;
  const mine = ++renderSeq;
  const msg = messageBox();
  const card = h('section', { class: 'card', 'aria-labelledby': 'keys-h' }, h('h2', { id: 'keys-h' }, 'Security keys and passkeys'),
    h('p', { class: 'muted' }, 'A security key or passkey proves it is you with a touch, a PIN or your fingerprint. It works as the second step after your password, and a passkey also signs you in without one.'),
    msg, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Your account'), card, notificationsCard(), contactsCard(), passwordCard(), authenticatorCard());
  mount(main, root);
  focusHeading(root);
  try {
    // Whether a second factor exists decides what adding a key asks for.
    const [fresh, keys] = await Promise.all([api.get('/me'), api.get('/me/webauthn/credentials')]);
    if (mine !== renderSeq) return;
    me.user = fresh.user;
    card.lastChild.remove();
    card.append(keys.length === 0 ? h('p', { id: 'no-keys' }, 'No security keys or passkeys yet.') : h('ul', { class: 'plain keys', id: 'keys' }, keys.map((k) => keyItem(k, msg))),
      addKeyForm());
    if (info) showInfo(msg, info);
  } catch (e) {
    showError(msg, e);
  }
}

function keyItem(k, msg) {
  const label = field('Name', { name: 'key_label_' + k.id, id: 'key-label-' + k.id, value: k.label, maxlength: 64 });
  const rename = h('form', { class: 'row wrap', novalidate: true, 'aria-label': 'Rename ' + k.label }, label, h('button', { type: 'submit' }, 'Rename'));
  rename.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = label.input.value.trim();
    if (!v) { showError(msg, { userMessage: 'Give the key a name, such as "YubiKey" or "work laptop".' }); label.input.focus(); return; }
    await submitForm(rename, msg, async () => {
      await api.call('PATCH', '/me/webauthn/credentials/' + k.id, { label: v });
      await accountPage('Renamed to ' + v + '.');
    }, { keep: true });
  });
  const remove = h('button', { type: 'button', class: 'danger', 'aria-label': 'Remove ' + k.label }, 'Remove');
  remove.addEventListener('click', async () => {
    if (!(await ask(`Remove "${k.label}"? It will no longer sign you in.`, 'Remove key'))) return;
    try {
      await stepped(() => api.del('/me/webauthn/credentials/' + k.id));
      await accountPage('Removed: ' + k.label + '.');
    } catch (e) {
      showError(msg, e);
    }
  });
  return h('li', { class: 'key', dataset: { id: k.id } },
    h('p', {}, h('strong', {}, k.label), ' ', k.clone_suspected_at ? h('span', { class: 'state blocked' }, 'Refused: possible copy') : null),
    h('p', { class: 'muted' }, 'Added ', new Date(k.created_at).toLocaleString(), ' · ', k.last_used_at ? 'last used ' + new Date(k.last_used_at).toLocaleString() : 'not used yet',
      k.transports.length ? ' · ' + k.transports.join(', ') : ''),
    h('div', { class: 'row wrap' }, rename, remove));
}

function addKeyForm() {
  const msg = messageBox();
  const label = field('Name for the new key', { name: 'new_key_label', maxlength: 64 });
  // The first second factor needs the password; later ones a recent step-up instead.
  const first = !me.user.mfa_enabled;
  const pw = first ? field('Your password', { name: 'new_key_password', type: 'password', autocomplete: 'current-password' }) : null;
  const form = h('form', { novalidate: true, id: 'add-key', 'aria-labelledby': 'addkey-h' }, h('h3', { id: 'addkey-h' }, 'Add a security key or passkey'),
    h('div', { class: 'row wrap' }, label, pw), msg, h('button', { type: 'submit', class: 'primary' }, 'Add key'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = label.input.value.trim();
    if (!name) { showError(msg, { userMessage: 'Give the key a name, such as "YubiKey" or "work laptop".' }); label.input.focus(); return; }
    if (pw && !pw.input.value) { showError(msg, { userMessage: 'Enter your password to add your first key.' }); pw.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const o = await stepped(() => api.post('/me/webauthn/registrations', pw ? { password: pw.input.value } : {}));
      const credential = await webauthn.create(o.options);
      const r = await api.post('/me/webauthn/credentials', { ceremony_id: o.ceremony_id, label: name, credential });
      // The idle lock may have come while the key was being touched: show no codes then.
      if (!api.hasTokens()) return;
      if (!r.recovery_codes) return accountPage('Added: ' + r.credential.label + '.');
      const done = h('button', { type: 'button', class: 'primary' }, 'I have saved them: continue');
      done.addEventListener('click', () => accountPage('Added: ' + r.credential.label + '.'));
      mount(main, h('section', { class: 'card narrow' },
        h('h1', {}, 'Recovery codes'),
        h('p', {}, 'Your key is added. Each code below signs you in once if you lose it. Keep them somewhere safe: they are shown only now.'),
        h('ul', { class: 'codes', id: 'key-recovery-codes' }, r.recovery_codes.map((c) => h('li', {}, c))), done));
      done.focus();
    }, { onError: () => { if (pw) pw.input.value = ''; } });
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Patient portal: consent
// ---------------------------------------------------------------------------------------------

const CHANNELS = [
  ['portal', 'This patient portal', 'Messages with your care team here, and notifications that carry no health details.'],
  ['sms_notices', 'Text message notices', 'Reminders and "you have a message" notices by SMS, without health details.'],
  ['email_notices', 'Email notices', 'Reminders and "you have a message" notices by email, without health details.'],
  ['unsecured_phi', 'Health details by unencrypted email or SMS', 'Only if you insist: others who can see your email or phone could read them.'],
];
const WARNING_VERSION = 'web-1';

async function consentPage(info) {
  setTitle('Consent');
  open = null;
  const msg = messageBox();
  const root = h('section', { class: 'card' }, h('h1', {}, 'How we may contact you'),
    h('p', {}, 'Choose how your care team may reach you. You can change your mind at any time.'), msg);
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  const pid = me.user.patient_id;
  if (!pid) { showError(msg, { userMessage: 'This account is not linked to a patient record.' }); return; }
  let state;
  try { state = await api.get('/patients/' + pid + '/consents'); } catch (e) { showError(msg, e); return; }
  const current = new Set(state.current.map((c) => c.channel));
  root.append(h('ul', { class: 'plain' }, CHANNELS.map(([ch, label, about]) => {
    const on = current.has(ch);
    return h('li', { class: 'consent' }, h('div', {}, h('strong', {}, label), ': ', on ? 'allowed' : 'not allowed', h('br'), h('span', { class: 'muted' }, about)),
      h('button', { type: 'button', onclick: () => changeConsent(pid, ch, !on, msg), 'aria-label': (on ? 'Withdraw consent: ' : 'Allow: ') + label }, on ? 'Withdraw' : 'Allow'));
  })));
  main.append(patientContactsCard(pid, true));
}

async function changeConsent(pid, channel, allow, msg) {
  try {
    if (allow) {
      const req = { channel };
      if (channel === 'unsecured_phi') {
        if (!(await ask('Unencrypted email and text messages can be read by anyone who sees your inbox or phone, or intercepts them. Do you still want your health details sent that way?', 'Send them that way'))) return;
        req.warning_version = WARNING_VERSION;
        req.patient_insists = true;
      }
      await api.post('/patients/' + pid + '/consents', req);
    } else {
      await api.post('/patients/' + pid + '/consents/revoke', { channel });
    }
    await consentPage(allow ? 'Consent recorded.' : 'Consent withdrawn.');
  } catch (e) {
    showError(msg, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Step-up: sensitive actions ask for the second factor again
// ---------------------------------------------------------------------------------------------

/** Runs f; if the server asks for a step-up, asks for a code, verifies it, and runs f again. */
async function stepped(f) {
  try {
    return await f();
  } catch (e) {
    if (e.code !== 'step_up_required') throw e;
    if (!(await stepUpDialog())) throw e;
    return f();
  }
}

function stepUpDialog() {
  return new Promise((resolve) => {
    const msg = messageBox();
    let recovery = false;
    const code = field('6-digit code from your authenticator app', { name: 'stepup', required: true, inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 64 });
    const toggle = h('button', { type: 'button', class: 'link' }, 'Use a recovery code instead');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const key = webauthn.supported() ? h('button', { type: 'button', id: 'stepup-key' }, 'Use a security key or passkey') : null;
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', { id: 'stepup-h' }, 'Confirm it is you'),
      h('p', {}, 'This action needs your second factor again.'), code, toggle, msg,
      h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Verify'), key, cancel));
    if (key) {
      key.addEventListener('click', () => submitForm(form, msg, async () => {
        const o = await api.post('/me/step-up/webauthn/options');
        const credential = await webauthn.get(o.options);
        await api.post('/me/step-up/webauthn', { ceremony_id: o.ceremony_id, credential });
        done(true);
      }, { keep: true }));
    }
    const dlg = h('dialog', { 'aria-labelledby': 'stepup-h', class: 'card' }, form);
    const done = (ok) => { dlg.close(); dlg.remove(); resolve(ok); };
    toggle.addEventListener('click', () => {
      recovery = !recovery;
      code.querySelector('label').textContent = recovery ? 'Recovery code' : '6-digit code from your authenticator app';
      toggle.textContent = recovery ? 'Use an authenticator code instead' : 'Use a recovery code instead';
      code.input.focus();
    });
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', () => done(false));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const v = code.input.value.trim();
      if (!v || (!recovery && !/^\d{6}$/.test(v))) { showError(msg, { userMessage: recovery ? 'Enter a recovery code.' : 'Enter the 6 digits your authenticator app shows.' }); return; }
      await submitForm(form, msg, async () => {
        await api.post('/me/step-up', recovery ? { recovery_code: v } : { code: v });
        done(true);
      }, { keep: true });
    });
    document.body.append(dlg);
    dlg.showModal();
    code.input.focus();
  });
}

// ---------------------------------------------------------------------------------------------
// Admin console
// ---------------------------------------------------------------------------------------------

async function adminUsersPage() {
  setTitle('Users');
  open = null;
  const msg = messageBox();
  const login = field('Login name', { name: 'login', required: true });
  const display = field('Display name', { name: 'display_name', required: true, maxlength: 200 });
  const role = field('Role', { name: 'role', tag: 'select', options: ROLES.filter(([r]) => r !== 'patient') });
  const created = h('div', { id: 'created', role: 'status' });
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'newuser-h' },
    h('h2', { id: 'newuser-h' }, 'Add a user'), h('div', { class: 'row wrap' }, login, display, role), msg,
    h('button', { type: 'submit', class: 'primary' }, 'Add user'), created);
  const tableBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Users'), form, h('section', { class: 'card', 'aria-label': 'All users' }, tableBox));
  mount(main, root);
  focusHeading(root);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!login.input.value.trim() || !display.input.value.trim()) { showError(msg, { userMessage: 'Enter a login name and a display name.' }); return; }
    await submitForm(form, msg, async () => {
      const r = await stepped(() => api.post('/users', { login: login.input.value.trim(), display_name: display.input.value.trim(), role: role.input.value }));
      msg.className = 'form-message';
      msg.textContent = '';
      mount(created, h('p', { class: 'notice' }, `Account ${r.user.login} created. One-time password (shown once; give it to the person securely): `,
        h('code', { class: 'secret' }, r.one_time_password)));
      login.input.value = display.input.value = '';
      await loadUsers(tableBox);
    });
  });
  await loadUsers(tableBox);
}

async function loadUsers(box) {
  try {
    directory = null;
    const p = await people();
    mount(box, h('table', { class: 'table' }, h('caption', {}, 'All users'),
      h('thead', {}, h('tr', {}, ['Name', 'Login', 'Role', 'Status', 'Two-step'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, p.items.map((u) => h('tr', { class: u.disabled ? 'disabled' : '' },
        h('td', {}, h('a', { href: '#/admin/users/' + u.id }, u.display_name)), h('td', {}, u.login), h('td', {}, u.role.replace('_', ' ')),
        h('td', {}, u.disabled ? 'Disabled' : 'Active'), h('td', {}, u.mfa_enabled ? 'On' : 'Off'))))));
  } catch (e) {
    mount(box, h('p', { class: 'form-message error' }, e.userMessage));
  }
}

async function adminUserPage(id) {
  setTitle('User');
  open = null;
  const msg = messageBox();
  const root = h('section', { class: 'card' }, h('p', {}, h('a', { href: '#/admin/users' }, '‹ All users')), msg);
  mount(main, root);
  let u;
  try { u = await api.get('/users/' + id); } catch (e) { showError(msg, e); return; }
  const role = field('Role', { name: 'role', tag: 'select', options: ROLES, value: u.role });
  const roleForm = h('form', { class: 'row', novalidate: true }, role, h('button', { type: 'submit' }, 'Change role'));
  roleForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await stepped(() => api.call('PATCH', '/users/' + id, { role: role.input.value })); showInfo(msg, 'Role changed.'); } catch (e) { showError(msg, e); }
  });
  const toggle = h('button', { type: 'button', class: u.disabled ? 'primary' : 'danger' }, u.disabled ? 'Enable account' : 'Disable account');
  toggle.addEventListener('click', async () => {
    if (!u.disabled && !(await ask('Disable this account? Every session of it ends at once.', 'Disable'))) return;
    try { await stepped(() => api.post('/users/' + id + (u.disabled ? '/enable' : '/disable'))); await adminUserPage(id); announce(u.disabled ? 'Account enabled' : 'Account disabled'); } catch (e) { showError(msg, e); }
  });
  const reset = h('button', { type: 'button' }, 'Reset password');
  const out = h('div', { role: 'status' });
  reset.addEventListener('click', async () => {
    if (!(await ask('Reset the password? The account gets a one-time password and every session ends.', 'Reset'))) return;
    try { const r = await stepped(() => api.post('/users/' + id + '/password-reset')); mount(out, h('p', { class: 'notice' }, 'One-time password (shown once): ', h('code', { class: 'secret' }, r.one_time_password))); } catch (e) { showError(msg, e); }
  });
  const sessions = h('div', {});
  const devices = h('div', { id: 'user-devices' });
  loadDevices(devices, msg, id);
  root.append(h('h1', {}, u.display_name), h('p', {}, u.login, ' · ', u.disabled ? 'Disabled' : 'Active', ' · two-step sign-in ', u.mfa_enabled ? 'on' : 'off'),
    roleForm, h('div', { class: 'row' }, toggle, reset), out, u.role === 'patient' ? null : userSsoSection(id), h('h2', {}, 'Sessions'), sessions, h('h2', {}, 'Devices'), devices);
  focusHeading(root);
  try {
    const list = await api.get('/users/' + id + '/sessions');
    if (list.length === 0) mount(sessions, h('p', { class: 'muted' }, 'No live sessions.'));
    else {
      const all = h('button', { type: 'button', class: 'danger' }, 'Revoke all sessions');
      all.addEventListener('click', async () => {
        try { await stepped(() => api.del('/users/' + id + '/sessions')); announce('Sessions revoked'); await adminUserPage(id); } catch (e) { showError(msg, e); }
      });
      mount(sessions, sessionTable(list.map((s) => ({ ...s, current: false })), null), all);
    }
  } catch (e) {
    showError(msg, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Notice templates: the text of SMS, email and push notices to patients
// ---------------------------------------------------------------------------------------------

const NOTICE_CHANNELS = [['sms', 'SMS'], ['email', 'Email'], ['push', 'Push notification']];
const TEMPLATE_FIELDS = ['first_name', 'date', 'time', 'location_name', 'portal_link'];

async function templatesPage(info) {
  if (!api.hasTokens()) return; // a response that came back after the idle lock
  setTitle('Templates');
  open = null;
  const msg = messageBox();
  const listBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Notice templates'),
    h('section', { class: 'card', id: 'templates', 'aria-label': 'Templates' },
      h('p', { class: 'muted' }, 'The only texts Ward sends patients outside the portal. The outbound content policy refuses clinical detail (diagnoses, medications, results and the like): a notice says there is something to see, the portal shows it.'),
      msg, listBox),
    templateForm(null));
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  try {
    const r = await api.get('/org/notice-templates');
    mount(listBox, r.items.length === 0 ? h('p', { id: 'no-templates' }, 'No templates yet.') : h('ul', { class: 'plain' }, r.items.map((t) =>
      h('li', { class: 'template', dataset: { id: t.id } }, h('details', {},
        h('summary', {}, t.name, ' ', h('span', { class: 'tag' }, (NOTICE_CHANNELS.find(([c]) => c === t.channel) || [null, t.channel])[1])),
        h('p', { class: 'note' }, t.body),
        h('p', { class: 'muted' }, 'Changed ', new Date(t.updated_at).toLocaleString()),
        templateForm(t))))));
  } catch (e) {
    mount(listBox);
    showError(msg, e);
  }
}

/** The form for a new template (`t` null) or for changing one. */
function templateForm(t) {
  const msg = messageBox();
  const key = t ? t.id : 'new';
  const name = field('Name', { name: 'tpl_name_' + key, maxlength: 100, value: t ? t.name : undefined });
  const channel = field('Channel', { name: 'tpl_channel_' + key, tag: 'select', options: NOTICE_CHANNELS, value: t ? t.channel : 'sms' });
  const body = field('Text (at most 1600 bytes)', { name: 'tpl_body_' + key, tag: 'textarea', rows: 3 });
  if (t) body.input.value = t.body;
  const form = h('form', { class: t ? '' : 'card', novalidate: true, id: 'tpl-' + key, 'aria-label': t ? 'Change template ' + t.name : null, 'aria-labelledby': t ? null : 'newtpl-h' },
    t ? null : h('h2', { id: 'newtpl-h' }, 'Add a template'),
    h('p', { class: 'muted' }, 'Fields in braces are filled in per notice: ', TEMPLATE_FIELDS.map((f) => '{' + f + '}').join(', '), '.'),
    h('div', { class: 'row wrap' }, name, channel), body, msg,
    h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, t ? 'Save changes' : 'Add template'),
      t ? h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!(await ask(`Delete the template "${t.name}"? Notices already queued keep their text.`, 'Delete template'))) return;
        try { await api.del('/org/notice-templates/' + t.id); await templatesPage('Template deleted.'); } catch (e) { showError(msg, e); }
      } }, 'Delete') : null));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!name.input.value.trim() || !body.input.value.trim()) { showError(msg, { userMessage: 'A template needs a name and its text.' }); return; }
    if (new TextEncoder().encode(body.input.value).length > 1600) { showError(msg, { userMessage: 'The text is longer than 1600 bytes.' }); body.input.focus(); return; }
    const req = { name: name.input.value.trim(), channel: channel.input.value, body: body.input.value };
    await submitForm(form, msg, async () => {
      if (t) await api.call('PUT', '/org/notice-templates/' + t.id, req);
      else await api.post('/org/notice-templates', req);
      await templatesPage(t ? 'Template saved.' : 'Template added.');
    }, { keep: true });
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Organisation policies: second factor, idle timeout, retention, legal holds
// ---------------------------------------------------------------------------------------------

const HOLD_KINDS = [['user', 'A user'], ['patient', 'A patient'], ['conversation', 'A conversation']];

/** A name for a user id from the directory, or a short form of the id. */
function personName(dir, id) {
  const u = dir && dir.items.find((x) => x.id === id);
  return u ? u.display_name : 'User ' + String(id).slice(0, 8);
}

async function policiesPage() {
  setTitle('Settings');
  open = null;
  const admin = me.user.role === 'admin';
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Organisation settings'));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  if (admin) root.append(await orgPolicyForm());
  root.append(await retentionForm(), await shredsSection(), await holdsSection(dir), await contactPolicyForm());
}

async function orgPolicyForm() {
  const msg = messageBox();
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'orgpol-h', id: 'org-policy' }, h('h2', { id: 'orgpol-h' }, 'Sign-in'), msg);
  let org;
  try { org = await api.get('/org'); } catch (e) { showError(msg, e); return form; }
  const required = new Set(org.mfa_required_roles);
  const roles = h('fieldset', {}, h('legend', {}, 'Roles that must use two-step sign-in'),
    ROLES.map(([r, label]) => h('div', { class: 'check' }, h('input', { type: 'checkbox', id: 'mfa-' + r, value: r, checked: required.has(r) }),
      h('label', { for: 'mfa-' + r }, label))));
  const idleMin = field('Idle timeout (minutes, 1 to 1440)', { name: 'idle_minutes', inputmode: 'numeric', value: String(Math.round(org.idle_timeout_secs / 60)), maxlength: 5 });
  form.append(h('p', { class: 'muted' }, 'People in these roles set up an authenticator app at their next sign-in. Idle sessions are locked and ended after the timeout.'),
    roles, idleMin, h('button', { type: 'submit', class: 'primary' }, 'Save sign-in policy'));
  form.insertBefore(msg, form.lastChild);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = idleMin.input.value.trim();
    const minutes = Number(v);
    if (!/^\d+$/.test(v) || minutes < 1 || minutes > 1440) { showError(msg, { userMessage: 'The idle timeout must be a whole number of minutes from 1 to 1440.' }); idleMin.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const r = await api.call('PUT', '/org/policy', { mfa_required_roles: [...roles.querySelectorAll('input:checked')].map((i) => i.value), idle_timeout_secs: minutes * 60 });
      showInfo(msg, `Saved. Two-step sign-in is required for ${r.mfa_required_roles.length === 0 ? 'no role' : r.mfa_required_roles.map((x) => x.replace('_', ' ')).join(', ')}; idle timeout ${Math.round(r.idle_timeout_secs / 60)} minutes.`);
    });
  });
  return form;
}

async function retentionForm() {
  const msg = messageBox();
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'ret-h', id: 'retention' }, h('h2', { id: 'ret-h' }, 'Retention'));
  let pol;
  try { pol = await api.get('/org/retention'); } catch (e) { form.append(msg); showError(msg, e); return form; }
  const fields = [['patient', 'Patient conversations (days)'], ['group', 'Group conversations (days)'], ['direct', 'Direct conversations (days)']]
    .map(([k, label]) => [k, field(label, { name: 'ret_' + k, inputmode: 'numeric', value: String(pol[k]), maxlength: 6 })]);
  form.append(h('p', { class: 'muted' }, 'Messages older than this are destroyed (crypto-shredded) unless a legal hold covers them. HIPAA asks for six years (2192 days) of patient records.'),
    h('div', { class: 'row wrap' }, fields.map(([, f]) => f)), msg, h('button', { type: 'submit', class: 'primary' }, 'Save retention'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, f] of fields) {
      const v = f.input.value.trim();
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 36500) { showError(msg, { userMessage: 'Each period is a whole number of days from 1 to 36500 (100 years).' }); f.input.focus(); return; }
      body[k] = Number(v);
    }
    await submitForm(form, msg, async () => {
      await api.call('PUT', '/org/retention', body);
      showInfo(msg, 'Retention saved.');
    });
  });
  return form;
}

async function holdsSection(dir) {
  const msg = messageBox();
  const kind = field('Hold on', { name: 'hold_kind', tag: 'select', options: HOLD_KINDS });
  const person = field('Person', { name: 'hold_user', tag: 'select', options: [['', 'Choose…'], ...((dir && dir.items) || []).map((u) => [u.id, `${u.display_name} (${u.role.replace('_', ' ')})`])] });
  const subject = field('Patient or conversation id', { name: 'hold_subject', maxlength: 36 });
  const reason = field('Legal matter (no patient information)', { name: 'hold_reason', maxlength: 500 });
  subject.hidden = true;
  kind.input.addEventListener('change', () => { const u = kind.input.value === 'user'; person.hidden = !u; subject.hidden = u; });
  const listBox = h('div', {});
  const form = h('form', { novalidate: true, 'aria-labelledby': 'newhold-h' }, h('h3', { id: 'newhold-h' }, 'Place a hold'),
    h('div', { class: 'row wrap' }, kind, person, subject), reason, msg, h('button', { type: 'submit', class: 'primary' }, 'Place hold'));
  const section = h('section', { class: 'card', 'aria-labelledby': 'holds-h', id: 'holds' }, h('h2', { id: 'holds-h' }, 'Legal holds'),
    h('p', { class: 'muted' }, 'While a hold stands, nothing it covers is destroyed, whatever the retention period.'), listBox, form);
  const load = async () => {
    try {
      const r = await api.get('/legal-holds');
      if (r.items.length === 0) { mount(listBox, h('p', { class: 'muted' }, 'No legal holds.')); return; }
      mount(listBox, h('table', { class: 'table' }, h('caption', { class: 'sr-only' }, 'Legal holds'),
        h('thead', {}, h('tr', {}, ['On', 'Matter', 'Placed', 'Status', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Action'))))),
        h('tbody', {}, r.items.map((x) => h('tr', { class: x.active ? '' : 'disabled' },
          h('td', {}, x.subject_kind === 'user' ? personName(dir, x.subject_id) : `${x.subject_kind === 'patient' ? 'Patient' : 'Conversation'} ${x.subject_id.slice(0, 8)}`),
          h('td', {}, x.reason),
          h('td', {}, new Date(x.placed_at).toLocaleString(), ' by ', personName(dir, x.placed_by)),
          h('td', {}, x.active ? 'In force' : 'Released ' + new Date(x.released_at).toLocaleString()),
          h('td', {}, x.active ? h('button', { type: 'button', 'aria-label': 'Release hold: ' + x.reason, onclick: async () => {
            if (!(await ask('Release this legal hold? Data it covered becomes subject to retention again.', 'Release hold'))) return;
            try { await api.post('/legal-holds/' + x.id + '/release'); announce('Hold released'); await load(); } catch (e) { showError(msg, e); }
          } }, 'Release') : null))))));
    } catch (e) {
      mount(listBox, h('p', { class: 'form-message error' }, e.userMessage));
    }
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const k = kind.input.value;
    const id = k === 'user' ? person.input.value : subject.input.value.trim().toLowerCase();
    if (!ID.test(id)) { showError(msg, { userMessage: k === 'user' ? 'Choose the person to hold.' : 'Enter the id of the patient or conversation (as shown in its address).' }); return; }
    if (!reason.input.value.trim()) { showError(msg, { userMessage: 'Name the legal matter the hold is for.' }); reason.input.focus(); return; }
    await submitForm(form, msg, async () => {
      await api.post('/legal-holds', { subject_kind: k, subject_id: id, reason: reason.input.value.trim() });
      showInfo(msg, 'Hold placed.');
      reason.input.value = '';
      await load();
    }, { onError: (e) => {
      if (e.status === 404) showError(msg, { userMessage: `Not found: no ${k} in this organisation has that id.` });
    } });
  });
  await load();
  return section;
}

// ---------------------------------------------------------------------------------------------
// Devices: posture, remote wipe and its evidence
// ---------------------------------------------------------------------------------------------

const DEVICE_STATES = { compliant: 'Compliant', warn: 'Warning', in_grace: 'In grace period', block_phi: 'Blocked from PHI' };

function itemLabel(id) {
  const s = String(id).replace(/_/g, ' ');
  return s[0].toUpperCase() + s.slice(1);
}

function failingItems(d) {
  const items = (d.evaluation && d.evaluation.items) || [];
  return items.filter((i) => i.failing).map((i) => itemLabel(i.item));
}

function deviceStatus(d) {
  if (d.revoked_at) return h('span', { class: 'state blocked' }, 'Revoked');
  if (!d.state) return h('span', { class: 'state' }, 'Not registered');
  return h('span', { class: 'state ' + (d.state === 'compliant' ? 'ok' : d.state === 'block_phi' ? 'blocked' : 'warn') }, DEVICE_STATES[d.state] || d.state);
}

function wipeStatus(w) {
  if (w.acknowledged_at) return 'Acknowledged by the device ' + new Date(w.acknowledged_at).toLocaleString();
  if (w.closed_reason === 'no_wipe_channel') return 'Closed: the device never registered, so no wipe can reach it; its sessions ended';
  if (w.closed_reason) return 'Closed: ' + w.closed_reason.replace(/_/g, ' ');
  const s = w.delivered_at ? 'Delivered ' + new Date(w.delivered_at).toLocaleString() + ', awaiting acknowledgement' : 'Requested, waiting for the device';
  return w.overdue ? s + ' (overdue)' : s;
}

/** The devices table; `owner` false leaves out the owner column (a user's own page). */
function deviceTable(devices, dir, wipes, { owner, onWipe }) {
  const cols = ['Device', owner ? 'Owner' : null, 'Posture', 'Failing settings', 'Last seen', 'Wipe', onWipe ? '' : null].filter((t) => t !== null);
  return h('table', { class: 'table devices' }, h('caption', { class: 'sr-only' }, 'Devices'),
    h('thead', {}, h('tr', {}, cols.map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Action'))))),
    h('tbody', {}, devices.map((d) => {
      const failing = failingItems(d);
      const w = wipes.find((x) => x.device_id === d.id);
      return h('tr', { dataset: { id: d.id } },
        h('td', {}, d.name, ' ', h('span', { class: 'muted' }, d.registration && d.registration.model ? d.registration.model : d.platform)),
        owner ? h('td', {}, h('a', { href: '#/admin/users/' + d.user_id }, personName(dir, d.user_id))) : null,
        h('td', {}, deviceStatus(d)),
        h('td', { class: 'failing' }, failing.length ? failing.join(', ') : h('span', { class: 'muted' }, 'None')),
        h('td', {}, new Date(d.last_seen_at).toLocaleString()),
        h('td', { class: 'wipe-status' }, w ? wipeStatus(w) : h('span', { class: 'muted' }, '–')),
        onWipe ? h('td', {}, d.revoked_at ? null : h('button', { type: 'button', class: 'danger', 'aria-label': 'Wipe ' + d.name + ' of ' + personName(dir, d.user_id), onclick: () => onWipe(d) }, 'Wipe')) : null);
    })));
}

/** Asks for the reason of a wipe; resolves to the reason or null. */
function wipeDialog(d, who) {
  return new Promise((resolve) => {
    const msg = messageBox();
    const reason = field('Reason (for the record; no patient information)', { name: 'wipe_reason', maxlength: 500 });
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', { id: 'wipe-h' }, 'Wipe this device?'),
      h('p', {}, `Ward's data on ${d.name} (${who}) is erased at the device's next contact, and its sessions end now.`), reason, msg,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'danger' }, 'Wipe device'), cancel));
    const dlg = h('dialog', { 'aria-labelledby': 'wipe-h', class: 'card' }, form);
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    cancel.addEventListener('click', () => done(null));
    dlg.addEventListener('cancel', () => done(null));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = reason.input.value.trim();
      if (!v) { showError(msg, { userMessage: 'Give a reason for the wipe, such as "reported lost".' }); reason.input.focus(); return; }
      done(v);
    });
    document.body.append(dlg);
    dlg.showModal();
    reason.input.focus();
  });
}

/** Loads devices and wipes into `box`, with wipe buttons for admins; `user` narrows to one user. */
async function loadDevices(box, msg, user) {
  try {
    const [devices, wipes, dir] = await Promise.all([api.get('/devices'), api.get('/device-wipes'), people().catch(() => null)]);
    // Blocked and warned devices first; revoked ones last.
    const rank = (d) => (d.revoked_at ? 5 : { block_phi: 0, in_grace: 1, warn: 2, compliant: 3 }[d.state] ?? 4);
    const mine = (user ? devices.filter((d) => d.user_id === user) : devices).slice().sort((a, b) => rank(a) - rank(b));
    if (mine.length === 0) { mount(box, h('p', { class: 'muted' }, user ? 'No devices.' : 'No devices yet.')); return; }
    const onWipe = me.user.role === 'admin' ? async (d) => {
      const reason = await wipeDialog(d, personName(dir, d.user_id));
      if (!reason) return;
      try {
        await stepped(() => api.post('/devices/' + d.id + '/wipe', { reason }));
        await loadDevices(box, msg, user);
        showInfo(msg, 'Wipe requested. The device erases Ward\'s data at its next contact.');
      } catch (e) {
        showError(msg, e);
      }
    } : null;
    mount(box, deviceTable(mine, dir, wipes, { owner: !user, onWipe }));
  } catch (e) {
    showError(msg, e);
  }
}

async function devicesPage() {
  setTitle('Devices');
  open = null;
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = h('button', { type: 'button' }, 'Refresh');
  const root = h('section', { class: 'card' }, h('h1', {}, 'Devices'),
    h('p', { class: 'muted' }, 'Every device that signed in, with its posture now. A blocked device receives no message content until the failing settings are fixed.'),
    msg, box, h('div', { class: 'row' }, refresh, h('a', { href: '#/admin/devices/reports', class: 'button' }, 'Compliance reports')));
  refresh.addEventListener('click', () => loadDevices(box, msg, null));
  mount(main, root);
  focusHeading(root);
  await loadDevices(box, msg, null);
}

// ---------------------------------------------------------------------------------------------
// Audit: access reports, accounting of disclosures, export, the signed checkpoint
// ---------------------------------------------------------------------------------------------

/** Two date fields (inclusive days) as the API's from/to query (Unix ms, `to` exclusive). */
function period(fromField, toField) {
  const day = (v) => (v ? new Date(v + 'T00:00:00').getTime() : null);
  const from = day(fromField.input.value);
  const to = day(toField.input.value);
  if ((fromField.input.value && Number.isNaN(from)) || (toField.input.value && Number.isNaN(to))) return { error: 'Enter the dates as the date picker shows them.' };
  if (from !== null && to !== null && from > to) return { error: 'The first day must not be after the last day.' };
  const q = [];
  if (from !== null) q.push('from=' + from);
  if (to !== null) q.push('to=' + (to + 86_400_000));
  return { query: q.join('&') };
}

function when(ms) {
  return new Date(ms).toLocaleString();
}

function eventTable(caption, items, cols) {
  return h('table', { class: 'table' }, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, cols.map(([t]) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, items.map((x) => h('tr', {}, cols.map(([, f]) => h('td', {}, f(x)))))));
}

async function auditPage() {
  setTitle('Audit');
  open = null;
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Audit'));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  root.append(checkpointCard(), accessReportForm(dir), patientAuditForm(dir), exportForm(dir), evidenceForm());
}

function checkpointCard() {
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const card = h('section', { class: 'card', id: 'checkpoint', 'aria-labelledby': 'cp-h' }, h('h2', { id: 'cp-h' }, 'Latest signed checkpoint'), msg, box);
  Promise.all([api.get('/audit/checkpoint'), api.get('/audit/verifier-key')]).then(async ([cp, vk]) => {
    const v = await checkNote(cp, vk.vkey);
    mount(box,
      h('p', {}, `The server signed the log of ${cp.origin} at ${cp.size.toLocaleString()} events. Every event up to there is fixed: changing or removing one changes the root below and breaks the signature.`),
      h('p', { id: 'cp-verdict' }, h('span', { class: 'state ' + (v.ok ? 'ok' : 'blocked') }, v.ok ? 'Signature valid' : 'Not verified'),
        v.ok ? ': this browser checked the note against the log\'s verifier key.' : ': ' + v.why),
      h('dl', { class: 'facts' }, h('dt', {}, 'Events covered'), h('dd', { id: 'cp-size' }, String(cp.size)), h('dt', {}, 'Root hash'), h('dd', {}, h('code', { class: 'secret' }, cp.root)),
        h('dt', {}, 'Verifier key'), h('dd', {}, h('code', { class: 'secret', id: 'cp-vkey' }, vk.vkey))),
      h('p', { class: 'notice' }, 'The key above comes from the same server, so compare it with the copy you keep elsewhere (the server writes it to audit/verifier.vkey at its first start). To check the whole log against it offline: ', h('code', {}, 'ward audit verify --vkey verifier.vkey'), '.'),
      h('details', {}, h('summary', {}, 'Signed note'), h('pre', { class: 'note' }, cp.note)));
  }).catch((e) => { mount(box); showError(msg, e); });
  return card;
}

const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');

/**
 * Checks a checkpoint's signed note (C2SP signed-note and tlog-checkpoint) with a verifier key
 * `<name>+<8 hex key id>+<base64(0x01 || Ed25519 key)>`: the key id, the Ed25519 signature
 * over the note's text, and that the text says what the API's fields say.
 */
async function checkNote(cp, vkey) {
  try {
    // The name and id hold no '+'; the base64 key may.
    const [name, id] = vkey.split('+', 2);
    const b64 = vkey.slice(name.length + id.length + 2);
    const key = bytes(b64);
    if (key.length !== 33 || key[0] !== 1) return { ok: false, why: 'the verifier key is not an Ed25519 key.' };
    const enc = new TextEncoder();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array([...enc.encode(name), 0x0a, ...key])));
    if (hex(digest.slice(0, 4)) !== id) return { ok: false, why: 'the verifier key\'s id does not match the key.' };
    const cut = cp.note.indexOf('\n\n');
    const text = cp.note.slice(0, cut + 1);
    if (cut < 0) return { ok: false, why: 'the note carries no signature.' };
    // During a key rotation one note may carry two signatures under the same name: take the
    // one whose key hash is this key's.
    const sig = cp.note.slice(cut + 2).split('\n')
      .filter((l) => l.startsWith('\u2014 ' + name + ' '))
      .map((l) => bytes(l.slice(l.lastIndexOf(' ') + 1)))
      .find((b) => hex(b.slice(0, 4)) === id);
    if (!sig) return { ok: false, why: 'the note carries no signature by this key.' };
    const pub = await crypto.subtle.importKey('raw', key.slice(1), { name: 'Ed25519' }, false, ['verify']);
    if (!(await crypto.subtle.verify({ name: 'Ed25519' }, pub, sig.slice(4), enc.encode(text)))) return { ok: false, why: 'the signature does not match the note.' };
    const [origin, size, root] = text.split('\n');
    if (origin !== cp.origin || size !== String(cp.size) || root !== cp.root) return { ok: false, why: 'the signed note does not say what the checkpoint\'s fields say.' };
    return { ok: true };
  } catch {
    return { ok: false, why: 'the key or signature could not be read, or this browser cannot check Ed25519 signatures; use ward audit verify.' };
  }
}

/** Admins and compliance officers: the key provider and its KEK versions (no key material). */
async function keysPage() {
  setTitle('Keys');
  open = null;
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', { class: 'card' }, h('h1', {}, 'Encryption keys'),
    h('p', { class: 'muted' }, 'Message content and files are sealed under data keys, and data keys under a key-encryption key (KEK) held by the key provider. Rotating the KEK (ward keys rotate) rewraps every data key without re-encrypting content. Ids and dates only: no key ever leaves the server. Each view is recorded.'),
    msg, box);
  mount(main, root);
  focusHeading(root);
  try {
    const inv = await api.get('/keys');
    const PROVIDERS = { file: 'Key file on the server', pkcs11: 'Hardware security module (PKCS #11)', kms: 'Cloud key management service', memory: 'In memory (tests only)' };
    mount(box, h('dl', { class: 'facts' }, h('dt', {}, 'Key provider'), h('dd', { id: 'key-provider' }, PROVIDERS[inv.provider] || inv.provider)),
      inv.keks.length === 0 ? h('p', {}, 'The provider lists no KEK.') : eventTable('KEK versions', inv.keks, [
        ['KEK', (k) => h('code', {}, k.kek_id)], ['Created', (k) => (k.created_at ? new Date(k.created_at).toLocaleString() : 'Not known')],
        ['In use', (k) => (k.current ? h('span', { class: 'state ok' }, 'Current: new keys are wrapped under it') : 'Older version')]]));
  } catch (e) {
    mount(box);
    showError(msg, e);
  }
}

function accessReportForm(dir) {
  const msg = messageBox();
  const user = field('Person', { name: 'report_user', tag: 'select', options: [['', 'Choose…'], ...((dir && dir.items) || []).map((u) => [u.id, `${u.display_name} (${u.role.replace('_', ' ')})`])] });
  const from = field('First day', { name: 'report_from', type: 'date' });
  const to = field('Last day', { name: 'report_to', type: 'date' });
  const out = h('div', { id: 'report-out' });
  const form = h('form', { class: 'card', novalidate: true, id: 'access-report', 'aria-labelledby': 'ar-h' }, h('h2', { id: 'ar-h' }, 'Access report for a person'),
    h('p', { class: 'muted' }, 'Everything one person read and did over a period. Reading the report is itself recorded.'),
    h('div', { class: 'row wrap' }, user, from, to), msg, h('button', { type: 'submit', class: 'primary' }, 'Show report'), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!ID.test(user.input.value)) { showError(msg, { userMessage: 'Choose the person to report on.' }); return; }
    const p = period(from, to);
    if (p.error) { showError(msg, { userMessage: p.error }); return; }
    await submitForm(form, msg, async () => {
      const r = await api.get(`/users/${user.input.value}/access-report?limit=100${p.query ? '&' + p.query : ''}`);
      msg.className = 'form-message'; msg.textContent = '';
      mount(out,
        h('p', { id: 'report-summary', role: 'status' }, `${r.summary.total} events, naming ${r.summary.patients} patient${r.summary.patients === 1 ? '' : 's'}.`),
        r.summary.by_action.length ? eventTable('By action', r.summary.by_action, [['Action', (x) => h('code', {}, x.action)], ['Outcome', (x) => x.outcome], ['Count', (x) => String(x.count)]]) : null,
        r.items.length ? eventTable(r.next_cursor ? 'Events (the first 100)' : 'Events', r.items, [
          ['When', (x) => when(x.occurred_at)], ['Action', (x) => h('code', {}, x.action)], ['Outcome', (x) => x.outcome],
          ['Record', (x) => (x.target_type ? `${x.target_type} ${String(x.target_id || '').slice(0, 8)}` : '–')],
          ['Patient', (x) => (x.patient_id ? x.patient_id.slice(0, 8) : '–')], ['Address', (x) => x.source_ip || '–'], ['Proof', proveButton]]) : null);
    }, { onError: () => mount(out) });
  });
  return form;
}

function patientAuditForm(dir) {
  const msg = messageBox();
  const pid = field('Patient MRN or id', { name: 'audit_patient', maxlength: 64 });
  const out = h('div', { id: 'patient-out' });
  const form = h('form', { class: 'card', novalidate: true, id: 'patient-audit', 'aria-labelledby': 'pa-h' }, h('h2', { id: 'pa-h' }, 'A patient\'s disclosures and accesses'),
    h('p', { class: 'muted' }, 'The accounting of disclosures (HIPAA 164.528): when the patient\'s information reached someone outside their care team, to whom and why; every recorded access naming the patient; and their consent records.'),
    pid, msg, h('button', { type: 'submit', class: 'primary' }, 'Show'), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = pid.input.value.trim();
    if (!v) { showError(msg, { userMessage: 'Enter the patient\'s MRN or id.' }); return; }
    await submitForm(form, msg, async () => {
      let id = v.toLowerCase();
      let label = 'Patient ' + id.slice(0, 8);
      if (!ID.test(id)) {
        try {
          const p = await api.post('/patients/search', { mrn: v });
          id = p.id;
          label = `${p.display_name} · MRN ${p.mrn}`;
        } catch (e) {
          if (e.status === 404) throw { userMessage: 'No patient in this organisation has that MRN.' };
          throw e;
        }
      }
      let disc;
      try { disc = await api.get(`/patients/${id}/disclosures?limit=200`); } catch (e) {
        if (e.status === 404) throw { userMessage: 'No patient in this organisation has that id.' };
        throw e;
      }
      const [acc, consents] = await Promise.all([api.get(`/audit/events?patient=${id}&limit=200`), api.get(`/patients/${id}/consents`)]);
      msg.className = 'form-message'; msg.textContent = '';
      mount(out, h('h3', {}, label),
        disc.items.length === 0 ? h('p', { id: 'no-disclosures' }, 'No disclosures recorded.') : eventTable('Disclosures', disc.items, [
          ['Date', (x) => when(x.occurred_at)], ['To', (x) => (x.recipient_kind === 'operator' ? 'The server operator' : personName(dir, x.recipient_id))],
          ['Purpose', (x) => x.purpose_statement], ['By', (x) => (x.disclosed_by ? personName(dir, x.disclosed_by) : 'The server operator')]]),
        acc.items.length === 0 ? h('p', {}, 'No accesses recorded.') : eventTable(acc.next_cursor ? 'Accesses (the first 200)' : 'Accesses', acc.items, [
          ['When', (x) => when(x.occurred_at)], ['Who', (x) => (x.actor_user_id ? personName(dir, x.actor_user_id) : 'The server')],
          ['Action', (x) => h('code', {}, x.action)], ['Outcome', (x) => x.outcome]]),
        consents.history.length === 0 ? h('p', { id: 'no-consents' }, 'No consent recorded.') : eventTable('Consent records, newest first', consents.history, [
          ['Channel', (x) => (CHANNELS.find(([c]) => c === x.channel) || [null, x.channel])[1]],
          ['Recorded', (x) => [new Date(x.recorded_at).toLocaleString(), ' by ', personName(dir, x.recorded_by)]],
          ['Warning shown', (x) => (x.warning_version ? `version ${x.warning_version}${x.patient_insists ? ', patient insisted' : ''}` : '–')],
          ['State', (x) => (x.current ? h('span', { class: 'state ok' }, 'In force') : [x.end_reason === 'superseded' ? 'Superseded ' : 'Withdrawn ', new Date(x.revoked_at).toLocaleString(),
            x.revoked_by ? [' by ', personName(dir, x.revoked_by)] : null])]]));
    }, { onError: () => mount(out) });
  });
  return form;
}

function exportForm() {
  const msg = messageBox();
  const format = field('Format', { name: 'export_format', tag: 'select', options: [['fhir-ndjson', 'FHIR AuditEvent, NDJSON'], ['fhir-bundle', 'FHIR Bundle (JSON)'], ['csv', 'CSV (spreadsheet)']] });
  const from = field('First day', { name: 'export_from', type: 'date' });
  const to = field('Last day', { name: 'export_to', type: 'date' });
  const form = h('form', { class: 'card', novalidate: true, id: 'export', 'aria-labelledby': 'ex-h' }, h('h2', { id: 'ex-h' }, 'Export the audit log'),
    h('p', { class: 'muted' }, 'The organisation\'s events as a file. Exporting needs your second factor again and is itself recorded.'),
    h('div', { class: 'row wrap' }, format, from, to), msg, h('button', { type: 'submit', class: 'primary' }, 'Download export'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const p = period(from, to);
    if (p.error) { showError(msg, { userMessage: p.error }); return; }
    await submitForm(form, msg, async () => {
      const f = await stepped(() => api.file(`/audit/export?format=${format.input.value}${p.query ? '&' + p.query : ''}`));
      save(f);
      showInfo(msg, `Export downloaded: ${f.filename} (${Math.max(1, Math.round(f.blob.size / 1024))} KB).`);
    });
  });
  return form;
}

/** Saves a file the API sent under its name, through a short-lived blob: link. */
function save(f) {
  const url = URL.createObjectURL(f.blob);
  const a = h('a', { href: url, download: f.filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function evidenceForm() {
  const msg = messageBox();
  const form = h('form', { class: 'card', novalidate: true, id: 'evidence', 'aria-labelledby': 'ev-h' }, h('h2', { id: 'ev-h' }, 'Evidence bundle for an auditor'),
    h('p', { class: 'muted' }, 'A signed archive: the control map, each control\'s live export (policies, registers, incidents, keys, access reviews) and the latest audit checkpoint, with a manifest of hashes signed by the server. It needs your second factor again and is itself recorded.'),
    msg, h('button', { type: 'submit', class: 'primary' }, 'Download evidence bundle'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await submitForm(form, msg, async () => {
      const f = await stepped(() => api.postFile('/evidence/export'));
      save(f);
      showInfo(msg, `Evidence bundle downloaded: ${f.filename} (${Math.max(1, Math.round(f.blob.size / 1024))} KB).`);
    });
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Compliance: policies to acknowledge, the vendor and risk registers, breach incidents
// ---------------------------------------------------------------------------------------------

const POLICY_KINDS = [['acceptable_use', 'Acceptable use'], ['device_checklist', 'Device checklist'], ['byod_wipe_authority', 'Personal device wipe authority'], ['other', 'Other']];
const BAA_STATUSES = [['none', 'None'], ['requested', 'Requested'], ['signed', 'Signed'], ['terminated', 'Terminated']];
const BAA_EXPIRY = { active: 'In force', expiring_soon: 'Expiring soon', expired: 'Expired', not_in_force: 'Not in force' };
const RISK_STATUSES = [['open', 'Open'], ['mitigating', 'Mitigating'], ['accepted', 'Accepted'], ['closed', 'Closed']];
const URGENCY = { pending: 'Pending', due_within_week: 'Due within a week', due_within_day: 'Due within a day', overdue: 'Overdue' };
const DAY = /^\d{4}-\d{2}-\d{2}$/;

const manager = () => me.user.role === 'admin' || me.user.role === 'compliance_officer';

/** Everyone: the organisation's current policies, read and acknowledged one by one. */
async function ackPoliciesPage(info) {
  setTitle('Policies');
  open = null;
  const msg = messageBox();
  const listBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Policies'),
    h('section', { class: 'card', 'aria-label': 'Current policies', id: 'policy-list' }, msg, listBox));
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  try {
    const r = await api.get('/policies');
    const pending = r.items.filter((p) => !p.acknowledged_at).length;
    mount(listBox,
      h('p', {}, r.items.length === 0 ? 'Your organisation has published no policies yet.'
        : pending === 0 ? 'You have acknowledged every current policy.'
          : `${pending} polic${pending === 1 ? 'y needs' : 'ies need'} your acknowledgment${r.require_acknowledgment_before_phi ? ': until then, message content is withheld from you' : ''}.`),
      h('ul', { class: 'plain' }, r.items.map((p) => policyItem(p, msg))));
  } catch (e) {
    mount(listBox);
    showError(msg, e);
  }
  root.append(await myTrainingCard());
  if (manager()) root.append(publishPolicyForm(), await ackReport(), await ackSettingForm());
}

function policyItem(p, msg) {
  const text = h('div', { class: 'policy-text' });
  const details = h('details', { class: 'policy' },
    h('summary', {}, p.title, ' ', h('span', { class: 'tag' }, 'version ' + p.version), p.acknowledged_at ? h('span', { class: 'tag ok' }, 'Acknowledged') : h('span', { class: 'tag due' }, 'To acknowledge')),
    text);
  details.addEventListener('toggle', async () => {
    if (!details.open || text.childNodes.length) return;
    try {
      const full = await api.get('/policies/' + p.id);
      const ack = full.acknowledged_at ? h('p', { class: 'muted' }, 'You acknowledged this version on ' + new Date(full.acknowledged_at).toLocaleString() + '.')
        : h('button', { type: 'button', class: 'primary', onclick: async (ev) => {
          ev.target.disabled = true;
          try { await api.post('/me/policy-acknowledgments', { policy_id: p.id, version: full.version }); await ackPoliciesPage('Acknowledged: ' + full.title + '.'); } catch (e) { ev.target.disabled = false; showError(msg, e); }
        } }, `I have read version ${full.version} and acknowledge it`);
      mount(text, h('div', { class: 'note' }, full.text), ack);
    } catch (e) {
      showError(msg, e);
    }
  });
  return h('li', {}, details);
}

function publishPolicyForm() {
  const msg = messageBox();
  const kind = field('Kind', { name: 'policy_kind', tag: 'select', options: POLICY_KINDS });
  const title = field('Title', { name: 'policy_title', maxlength: 200 });
  const text = field('Text', { name: 'policy_text', tag: 'textarea', rows: 5 });
  const form = h('form', { class: 'card', novalidate: true, id: 'publish-policy', 'aria-labelledby': 'pub-h' }, h('h2', { id: 'pub-h' }, 'Publish a policy'),
    h('div', { class: 'row wrap' }, kind, title), text, msg, h('button', { type: 'submit', class: 'primary' }, 'Publish'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!title.input.value.trim() || !text.input.value.trim()) { showError(msg, { userMessage: 'A policy needs a title and its text.' }); return; }
    await submitForm(form, msg, async () => {
      await api.post('/policies', { kind: kind.input.value, title: title.input.value.trim(), text: text.input.value });
      await ackPoliciesPage('Policy published. Everyone is asked to acknowledge it.');
    }, { keep: true });
  });
  return form;
}

async function ackReport() {
  const box = h('section', { class: 'card', id: 'ack-report', 'aria-labelledby': 'ackr-h' }, h('h2', { id: 'ackr-h' }, 'Who has acknowledged'));
  try {
    const r = await api.get('/policies/acknowledgment-report');
    box.append(r.items.length === 0 ? h('p', { class: 'muted' }, 'No policies yet.') : eventTable('Acknowledgments of the current versions', r.items, [
      ['Policy', (x) => `${x.title} (version ${x.version})`], ['Acknowledged', (x) => `${x.acknowledged} of ${x.users}`],
      ['Not yet', (x) => (x.pending.length ? x.pending.map((u) => u.login).join(', ') : '–')]]));
  } catch (e) {
    box.append(h('p', { class: 'form-message error' }, e.userMessage));
  }
  return box;
}

/** Admins and compliance officers: the BAA vendor register and the risk register. */
async function registersPage() {
  setTitle('Registers');
  open = null;
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Compliance registers'));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  const owners = [['', 'No one yet'], ...((dir && dir.items) || []).filter((u) => u.role !== 'patient' && !u.disabled).map((u) => [u.id, u.display_name])];
  root.append(await vendorSection(dir, owners), await riskSection(dir, owners), await trainingSection(dir, owners.slice(1)));
}

async function vendorSection(dir, owners) {
  const msg = messageBox();
  const listBox = h('div', {});
  const name = field('Vendor', { name: 'vendor_name', maxlength: 200 });
  const services = field('Services', { name: 'vendor_services', maxlength: 2000 });
  const data = field('Data shared', { name: 'vendor_data', maxlength: 2000 });
  const status = field('Agreement (BAA)', { name: 'vendor_baa', tag: 'select', options: BAA_STATUSES });
  const signed = field('Signed on', { name: 'vendor_signed', type: 'date' });
  const renewal = field('Renewal due', { name: 'vendor_renewal', type: 'date' });
  const owner = field('Owner', { name: 'vendor_owner', tag: 'select', options: owners });
  const heading = h('h3', { id: 'addv-h' }, 'Add a vendor');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add vendor');
  let editing = null;
  const cancel = h('button', { type: 'button', hidden: true, onclick: () => edit(null) }, 'Cancel change');
  const form = h('form', { novalidate: true, 'aria-labelledby': 'addv-h' }, heading,
    h('div', { class: 'row wrap' }, name, services, data), h('div', { class: 'row wrap' }, status, signed, renewal, owner), msg,
    h('div', { class: 'row wrap' }, submit, cancel));
  // Changing a vendor fills the form with its entry; saving replaces it (PUT).
  const edit = (x) => {
    editing = x;
    heading.textContent = x ? 'Change ' + x.vendor : 'Add a vendor';
    submit.textContent = x ? 'Save vendor' : 'Add vendor';
    cancel.hidden = !x;
    name.input.value = x ? x.vendor : ''; services.input.value = x ? x.services : ''; data.input.value = x ? x.data_shared : '';
    status.input.value = x ? x.baa_status : 'none'; signed.input.value = (x && x.signed_on) || ''; renewal.input.value = (x && x.renewal_on) || '';
    owner.input.value = (x && x.owner) || '';
    if (x) name.input.focus();
  };
  const load = async () => {
    const r = await api.get('/baa-vendors');
    mount(listBox, r.items.length === 0 ? h('p', { class: 'muted' }, 'No vendors yet.') : eventTable('Vendors', r.items, [
      ['Vendor', (x) => x.vendor], ['Services', (x) => x.services], ['Data shared', (x) => x.data_shared],
      ['Agreement', (x) => h('span', { class: 'state ' + (x.expiry === 'active' ? 'ok' : x.expiry === 'expired' ? 'blocked' : 'warn') }, BAA_EXPIRY[x.expiry] || x.expiry)],
      ['Renewal', (x) => x.renewal_on || '–'], ['Owner', (x) => (x.owner ? personName(dir, x.owner) : '–')],
      ['Change', (x) => [h('button', { type: 'button', class: 'link', 'aria-label': 'Change ' + x.vendor, onclick: () => edit(x) }, 'Change'),
        registerRemove('/baa-vendors/' + x.id, 'vendor ' + x.vendor, msg, load)]]]));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!name.input.value.trim() || !services.input.value.trim() || !data.input.value.trim()) { showError(msg, { userMessage: 'Name the vendor, what it does and what data it receives.' }); return; }
    if (status.input.value === 'signed' && !signed.input.value) { showError(msg, { userMessage: 'A signed agreement needs the day it was signed.' }); signed.input.focus(); return; }
    if (signed.input.value && renewal.input.value && renewal.input.value < signed.input.value) { showError(msg, { userMessage: 'The renewal date must not be before the signing date.' }); renewal.input.focus(); return; }
    const body = { vendor: name.input.value.trim(), services: services.input.value.trim(), data_shared: data.input.value.trim(), baa_status: status.input.value };
    if (signed.input.value) body.signed_on = signed.input.value;
    if (renewal.input.value) body.renewal_on = renewal.input.value;
    if (owner.input.value) body.owner = owner.input.value;
    await submitForm(form, msg, async () => {
      if (editing) await api.call('PUT', '/baa-vendors/' + editing.id, body);
      else await api.post('/baa-vendors', body);
      showInfo(msg, editing ? 'Vendor saved.' : 'Vendor added.');
      edit(null);
      await load();
    });
  });
  const section = h('section', { class: 'card', id: 'vendors', 'aria-labelledby': 'vendors-h' }, h('h2', { id: 'vendors-h' }, 'Business associates'), listBox, form);
  try { await load(); } catch (e) { showError(msg, e); }
  return section;
}

async function riskSection(dir, owners) {
  const msg = messageBox();
  const listBox = h('div', {});
  const risk = field('Risk', { name: 'risk_text', maxlength: 2000 });
  const scale = (n, label) => field(label, { name: n, tag: 'select', options: [['1', '1'], ['2', '2'], ['3', '3'], ['4', '4'], ['5', '5']], value: '3' });
  const likelihood = scale('risk_likelihood', 'Likelihood (1 rare to 5 almost certain)');
  const impact = scale('risk_impact', 'Impact (1 negligible to 5 severe)');
  const status = field('Status', { name: 'risk_status', tag: 'select', options: RISK_STATUSES });
  const review = field('Next review', { name: 'risk_review', type: 'date' });
  const owner = field('Owner', { name: 'risk_owner', tag: 'select', options: owners });
  const heading = h('h3', { id: 'addr-h' }, 'Add a risk');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add risk');
  let editing = null;
  const cancel = h('button', { type: 'button', hidden: true, onclick: () => edit(null) }, 'Cancel change');
  const form = h('form', { novalidate: true, 'aria-labelledby': 'addr-h' }, heading,
    risk, h('div', { class: 'row wrap' }, likelihood, impact, status, review, owner), msg, h('div', { class: 'row wrap' }, submit, cancel));
  const edit = (x) => {
    editing = x;
    heading.textContent = x ? 'Change a risk' : 'Add a risk';
    submit.textContent = x ? 'Save risk' : 'Add risk';
    cancel.hidden = !x;
    risk.input.value = x ? x.risk : ''; likelihood.input.value = String(x ? x.likelihood : 3); impact.input.value = String(x ? x.impact : 3);
    status.input.value = x ? x.status : 'open'; review.input.value = x ? x.review_on : ''; owner.input.value = (x && x.owner) || '';
    if (x) risk.input.focus();
  };
  const load = async () => {
    const r = await api.get('/risks');
    mount(listBox, r.items.length === 0 ? h('p', { class: 'muted' }, 'No risks recorded yet.') : eventTable('Risks, highest score first', r.items, [
      ['Risk', (x) => x.risk], ['Score', (x) => `${x.score} (${x.likelihood} × ${x.impact})`], ['Status', (x) => (RISK_STATUSES.find(([v]) => v === x.status) || [null, x.status])[1]],
      ['Next review', (x) => (x.review_overdue ? h('span', { class: 'state blocked' }, x.review_on + ' (overdue)') : x.review_on)],
      ['Owner', (x) => (x.owner ? personName(dir, x.owner) : '–')],
      ['Change', (x) => [h('button', { type: 'button', class: 'link', 'aria-label': 'Change risk: ' + x.risk, onclick: () => edit(x) }, 'Change'),
        registerRemove('/risks/' + x.id, 'risk: ' + x.risk, msg, load)]]]));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!risk.input.value.trim()) { showError(msg, { userMessage: 'Describe the risk.' }); risk.input.focus(); return; }
    if (!DAY.test(review.input.value)) { showError(msg, { userMessage: 'Choose the day of the next review.' }); review.input.focus(); return; }
    const body = { risk: risk.input.value.trim(), likelihood: Number(likelihood.input.value), impact: Number(impact.input.value), status: status.input.value, review_on: review.input.value };
    if (owner.input.value) body.owner = owner.input.value;
    await submitForm(form, msg, async () => {
      if (editing) await api.call('PUT', '/risks/' + editing.id, body);
      else await api.post('/risks', body);
      showInfo(msg, editing ? 'Risk saved.' : 'Risk added.');
      edit(null);
      await load();
    });
  });
  const section = h('section', { class: 'card', id: 'risks', 'aria-labelledby': 'risks-h' }, h('h2', { id: 'risks-h' }, 'Risk register'), listBox, form);
  try { await load(); } catch (e) { showError(msg, e); }
  return section;
}

/** Admins and compliance officers: breach incidents with their notification deadlines. */
async function incidentsPage(info) {
  setTitle('Incidents');
  open = null;
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const officer = me.user.role === 'compliance_officer';
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Breach incidents'),
    h('section', { class: 'card', 'aria-label': 'Incidents', id: 'incidents' },
      h('p', { class: 'muted' }, 'Incidents with their status and the nearest notification deadline. Titles and descriptions are shown only when one incident is opened; each opening is audited.'), msg, box));
  if (officer) root.append(newIncidentForm());
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  try {
    const [list, dir] = await Promise.all([api.get('/incidents'), people().catch(() => null)]);
    if (list.length === 0) { mount(box, h('p', {}, 'No incidents recorded.')); return; }
    mount(box, eventTable('Incidents, newest first', list, [
      ['Reported', (x) => [h('a', { href: '#/admin/incidents/' + x.id }, new Date(x.reported_at).toLocaleString()), ' by ', personName(dir, x.reported_by)]],
      ['Source', (x) => (x.source === 'misdirected_message' ? 'Misdirected message' : 'Reported')],
      ['Discovered', (x) => x.discovered_on], ['Affected', (x) => String(x.affected_count)], ['Status', (x) => INCIDENT_STATUS[x.status] || x.status],
      ['Next deadline', (x) => nextDeadline(x)]]));
  } catch (e) {
    mount(box);
    showError(msg, e);
  }
}

const INCIDENT_STATUS = { open: 'Open, not assessed', assessed: 'Assessed', notified: 'Notified', closed: 'Closed' };
const RISK_LEVELS = [['', 'Choose…'], ['low', 'Low'], ['medium', 'Medium'], ['high', 'High']];
const FACTORS = [
  ['nature_and_extent', 'Nature and extent of the information (identifiers, sensitivity, likelihood of re-identification)'],
  ['unauthorized_recipient', 'Who received or used it (another covered entity, the public, unknown)'],
  ['acquired_or_viewed', 'Whether it was actually acquired or viewed'],
  ['mitigation', 'How far the risk has been mitigated (returned, destroyed, assurances received)'],
];

function nextDeadline(x) {
  const due = x.plan.filter((o) => !o.done_on).sort((a, b) => a.due_on.localeCompare(b.due_on))[0];
  if (!due) return x.plan.length ? 'All notices sent' : x.status === 'open' ? 'Not assessed yet' : 'No notices needed';
  return h('span', { class: 'state ' + urgencyClass(due.urgency) }, `${due.recipient}: ${due.due_on} (${URGENCY[due.urgency] || due.urgency || 'open'})`);
}

const urgencyClass = (u) => (u === 'overdue' ? 'blocked' : u === 'pending' || !u ? '' : 'warn');

/** "CA 3, NY 1" as the API's residents map, or an error sentence. */
function parseResidents(text) {
  const out = {};
  for (const part of text.split(/[,;\n]/).map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z]{2})\s*[:= ]\s*(\d+)$/.exec(part);
    if (!m) return { error: `"${part}" is not a state and a count, such as "CA 3".` };
    const code = m[1].toUpperCase();
    if (code in out) return { error: `${code} is named twice.` };
    out[code] = Number(m[2]);
  }
  return { residents: out };
}

function newIncidentForm() {
  const msg = messageBox();
  const title = field('Title', { name: 'inc_title', maxlength: 200 });
  const description = field('What happened, which records', { name: 'inc_description', tag: 'textarea', rows: 4, maxlength: 20000 });
  const discovered = field('Discovered on', { name: 'inc_discovered', type: 'date' });
  const occurred = field('Happened on (if known)', { name: 'inc_occurred', type: 'date' });
  const affected = field('Individuals affected', { name: 'inc_affected', inputmode: 'numeric', maxlength: 9 });
  const residents = field('Residents per state (optional, such as "CA 3, NY 1")', { name: 'inc_residents', maxlength: 2000 });
  const form = h('form', { class: 'card', novalidate: true, id: 'new-incident', 'aria-labelledby': 'newinc-h' }, h('h2', { id: 'newinc-h' }, 'Record an incident'),
    h('p', { class: 'muted' }, 'Every clock starts on the day of discovery. Until an assessment is signed, the plan presumes a breach (45 CFR 164.402).'),
    title, description, h('div', { class: 'row wrap' }, discovered, occurred, affected), residents, msg, h('button', { type: 'submit', class: 'primary' }, 'Record incident'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!title.input.value.trim() || !description.input.value.trim()) { showError(msg, { userMessage: 'Give the incident a title and say what happened.' }); return; }
    if (!DAY.test(discovered.input.value)) { showError(msg, { userMessage: 'Choose the day the incident was discovered.' }); discovered.input.focus(); return; }
    if (occurred.input.value && occurred.input.value > discovered.input.value) { showError(msg, { userMessage: 'It cannot have happened after it was discovered.' }); occurred.input.focus(); return; }
    const n = affected.input.value.trim();
    if (!/^\d+$/.test(n) || Number(n) < 1) { showError(msg, { userMessage: 'Enter how many individuals are affected (at least 1).' }); affected.input.focus(); return; }
    const r = parseResidents(residents.input.value);
    if (r.error) { showError(msg, { userMessage: r.error }); residents.input.focus(); return; }
    const body = { title: title.input.value.trim(), description: description.input.value, discovered_on: discovered.input.value, affected_count: Number(n), residents: r.residents };
    if (occurred.input.value) body.occurred_on = occurred.input.value;
    await submitForm(form, msg, async () => {
      const i = await api.post('/incidents', body);
      location.hash = '#/admin/incidents/' + i.id;
    }, { keep: true });
  });
  return form;
}

/** One incident: what happened, the four-factor assessment and the notification tracker. */
async function incidentPage(id, info) {
  if (!api.hasTokens()) return; // a response that came back after the idle lock
  setTitle('Incident');
  open = null;
  const mine = ++renderSeq;
  const msg = messageBox();
  const root = h('section', {}, h('p', {}, h('a', { href: '#/admin/incidents' }, '‹ All incidents')), msg);
  mount(main, root);
  let x;
  let dir = null;
  try { [x, dir] = await Promise.all([api.get('/incidents/' + id), people().catch(() => null)]); } catch (e) { showError(msg, e); return; }
  if (mine !== renderSeq) return;
  const officer = me.user.role === 'compliance_officer';
  const residents = Object.entries(x.residents).map(([k, v]) => `${k} ${v}`).join(', ');
  root.append(h('section', { class: 'card', 'aria-labelledby': 'inc-h', id: 'incident' }, h('h1', { id: 'inc-h' }, x.title || 'Incident'),
    h('p', { class: 'note' }, x.description || ''),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', { id: 'inc-status' }, INCIDENT_STATUS[x.status] || x.status),
      h('dt', {}, 'Reported'), h('dd', {}, new Date(x.reported_at).toLocaleString(), ' by ', personName(dir, x.reported_by), x.source === 'misdirected_message' ? ' (misdirected message)' : ''),
      h('dt', {}, 'Discovered'), h('dd', {}, x.discovered_on), h('dt', {}, 'Happened'), h('dd', {}, x.occurred_on || 'Not known'),
      h('dt', {}, 'Individuals affected'), h('dd', {}, String(x.affected_count), residents ? ` (${residents})` : ''))));
  const notifying = x.plan.some((o) => o.done_on);
  if (x.assessment) {
    const a = x.assessment;
    root.append(h('section', { class: 'card', 'aria-labelledby': 'assessed-h', id: 'assessment' }, h('h2', { id: 'assessed-h' }, 'Risk assessment'),
      h('p', {}, a.outcome === 'breach' ? 'Outcome: a breach; the people and bodies below must be told.' : 'Outcome: a low probability that the information was compromised; no notices are needed.'),
      eventTable('The four factors', FACTORS, [['Factor', ([, label]) => label], ['Risk', ([k]) => a[k][0].toUpperCase() + a[k].slice(1)]]),
      h('p', { class: 'muted' }, 'Signed by ', personName(dir, a.signed_by), ' on ', new Date(a.signed_at).toLocaleString(), '.')));
  }
  if (officer && (x.status === 'open' || (x.status === 'assessed' && !notifying))) root.append(assessmentForm(x));
  root.append(notificationTracker(x, officer));
  if (officer && x.status !== 'closed') {
    const close = h('button', { type: 'button', id: 'close-incident' }, 'Close incident');
    close.addEventListener('click', async () => {
      if (!(await ask('Close this incident? It can no longer be changed.', 'Close incident'))) return;
      try { await api.post('/incidents/' + id + '/close'); await incidentPage(id, 'Incident closed.'); } catch (e) { showError(msg, e); }
    });
    root.append(h('div', { class: 'card' }, h('p', { class: 'muted' }, 'An incident closes once it is assessed as not a breach, or every notice is recorded.'), close));
  }
  focusHeading(root);
  if (info) showInfo(msg, info);
}

function assessmentForm(x) {
  const msg = messageBox();
  const fields = FACTORS.map(([k, label]) => [k, field(label, { name: 'factor_' + k, tag: 'select', options: RISK_LEVELS, value: x.assessment ? x.assessment[k] : '' })]);
  const outcome = field('Outcome', { name: 'assess_outcome', tag: 'select', options: [['', 'Choose…'], ['breach', 'A breach: notify'], ['low_probability_of_compromise', 'Low probability of compromise (every factor low)']] });
  const form = h('form', { class: 'card', novalidate: true, id: 'assess', 'aria-labelledby': 'assess-h' }, h('h2', { id: 'assess-h' }, x.assessment ? 'Sign a new assessment' : 'Assess the risk'),
    h('p', { class: 'muted' }, 'The four factors of 45 CFR 164.402(2). Only when every factor is low may the outcome be a low probability of compromise. You sign it with your account.'),
    fields.map(([, f]) => f), outcome, msg, h('button', { type: 'submit', class: 'primary' }, 'Sign assessment'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, f] of fields) {
      if (!f.input.value) { showError(msg, { userMessage: 'Rate every factor.' }); f.input.focus(); return; }
      body[k] = f.input.value;
    }
    if (!outcome.input.value) { showError(msg, { userMessage: 'Choose the outcome.' }); outcome.input.focus(); return; }
    body.outcome = outcome.input.value;
    await submitForm(form, msg, async () => {
      await api.post('/incidents/' + x.id + '/assessment', body);
      await incidentPage(x.id, 'Assessment signed.');
    }, { keep: true });
  });
  return form;
}

function notificationTracker(x, officer) {
  const msg = messageBox();
  const section = h('section', { class: 'card', 'aria-labelledby': 'plan-h', id: 'plan' }, h('h2', { id: 'plan-h' }, 'Notices and deadlines'),
    h('p', { class: 'muted' }, x.plan_basis === 'presumed' ? 'Computed on the presumption of a breach, until an assessment is signed.' : 'Computed at the signed assessment.',
      ` State rules as of ${x.plan_rules_as_of || x.state_rules_as_of}.`), msg);
  if (x.plan.length === 0) { section.append(h('p', {}, 'No notices are needed.')); return section; }
  const today = localDay();
  const canRecord = officer && x.status === 'assessed' && x.assessment && x.assessment.outcome === 'breach';
  section.append(eventTable('Notices, by deadline', x.plan.slice().sort((a, b) => a.due_on.localeCompare(b.due_on)), [
    ['Who is told', (o) => o.recipient], ['Due by', (o) => o.due_on],
    ['Rule', (o) => [o.rule, ' ', h('span', { class: 'muted' }, o.source), o.verified ? null : h('span', { class: 'tag' }, 'unconfirmed')]],
    ['State', (o) => (o.done_on ? h('span', { class: 'state ok' }, 'Sent ' + o.done_on) : h('span', { class: 'state ' + urgencyClass(o.urgency) }, URGENCY[o.urgency] || 'Open'))],
    ['Record', (o) => {
      if (o.done_on || !canRecord) return '–';
      const day = field('Sent on', { name: 'sent_' + o.key, id: 'sent-' + o.key.replace(/[^a-z0-9_-]/gi, '-'), type: 'date', value: today });
      const f = h('form', { class: 'row wrap', novalidate: true, 'aria-label': 'Record the notice to ' + o.recipient }, day, h('button', { type: 'submit' }, 'Mark sent'));
      f.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        if (!DAY.test(day.input.value)) { showError(msg, { userMessage: 'Choose the day the notice was sent.' }); day.input.focus(); return; }
        if (day.input.value > today) { showError(msg, { userMessage: 'The day a notice was sent cannot be in the future.' }); day.input.focus(); return; }
        await submitForm(f, msg, async () => {
          await api.post('/incidents/' + x.id + '/notifications', { obligation: o.key, done_on: day.input.value });
          await incidentPage(x.id, 'Notice to ' + o.recipient + ' recorded.');
        }, { keep: true });
      });
      return f;
    }]]));
  if (officer && !canRecord && x.status === 'open') section.append(h('p', { class: 'muted' }, 'Notices are recorded once an assessment finds a breach.'));
  return section;
}

// ---------------------------------------------------------------------------------------------
// Provisioning: SCIM tokens for the identity provider (admins) and deprovisioning timelines
// (admins and compliance officers)
// ---------------------------------------------------------------------------------------------

async function provisioningPage() {
  setTitle('Provisioning');
  open = null;
  const admin = me.user.role === 'admin';
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Provisioning'),
    h('p', { class: 'muted' }, 'Your identity provider creates, changes and deactivates Ward accounts over SCIM 2.0 at ',
      h('code', {}, location.origin + '/scim/v2'), '. Deactivating an account ends its sessions, queues a wipe of its devices and closes its connections.'));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  if (admin) root.append(scimTokenSection(dir), scimGroupSection(), ssoSection());
  root.append(deprovisionSection(dir));
}

function scimTokenSection(dir) {
  const msg = messageBox();
  const label = field('Identity provider (a label for the token)', { name: 'scim_label', required: true, maxlength: 100 });
  const expiry = field('Expires', { name: 'scim_expiry', tag: 'select', value: '', options: [['', 'Never (until revoked)'], ['30', 'In 30 days'], ['90', 'In 90 days'], ['365', 'In a year']] });
  const issued = h('div', { id: 'scim-issued', role: 'status' });
  const listBox = h('div', { id: 'scim-tokens' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = h('form', { id: 'scim-token-form', novalidate: true, 'aria-labelledby': 'scim-new-h' },
    h('h3', { id: 'scim-new-h' }, 'Issue a token'), label, expiry, msg, h('button', { type: 'submit', class: 'primary' }, 'Issue token'));
  const section = h('section', { class: 'card', 'aria-labelledby': 'scim-tokens-h' }, h('h2', { id: 'scim-tokens-h' }, 'SCIM tokens'),
    h('p', { class: 'muted' }, 'A token lets the identity provider manage accounts in this organisation, and nothing else. Issuing and revoking one needs your second factor again.'),
    form, issued, listBox);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = label.input.value.trim();
    if (!text) { showError(msg, { userMessage: 'Enter a label naming the identity provider, for example "Okta".' }); label.input.focus(); return; }
    mount(issued);
    msg.className = 'form-message';
    msg.textContent = '';
    await submitForm(form, msg, async () => {
      const body = { label: text };
      if (expiry.input.value) body.expires_in_days = Number(expiry.input.value);
      const t = await stepped(() => api.post('/admin/scim/tokens', body));
      label.input.value = '';
      mount(issued, issuedToken(t));
      await loadScimTokens(listBox, msg, dir);
    });
  });
  loadScimTokens(listBox, msg, dir);
  return section;
}

/** The new token, shown this once: Ward keeps only its hash. */
function issuedToken(t) {
  const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button' }, 'Copy token');
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(t.token); copied.textContent = ' Copied.'; } catch { copied.textContent = ' Select the token and copy it.'; }
  });
  return h('div', { class: 'notice' },
    h('p', {}, `Token for ${t.label} (shown once: copy it now into the identity provider's SCIM settings as the bearer token; Ward cannot show it again):`),
    h('p', {}, h('code', { class: 'secret', id: 'scim-secret' }, t.token)), h('p', {}, copy, copied));
}

async function loadScimTokens(box, msg, dir) {
  let tokens;
  try { tokens = await api.get('/admin/scim/tokens'); } catch (e) { mount(box); showError(msg, e); return; }
  if (tokens.length === 0) { mount(box, h('p', { class: 'muted' }, 'No SCIM token yet.')); return; }
  const revoke = async (t) => {
    if (!(await ask(`Revoke the token "${t.label}"? The identity provider can no longer change accounts until it gets a new one.`, 'Revoke token'))) return;
    try {
      await stepped(() => api.del('/admin/scim/tokens/' + t.id));
      announce('Token revoked');
      showInfo(msg, `The token "${t.label}" is revoked.`);
      await loadScimTokens(box, msg, dir);
    } catch (e) { showError(msg, e); }
  };
  mount(box, h('table', { class: 'table scim-tokens' }, h('caption', {}, 'Tokens, newest first'),
    h('thead', {}, h('tr', {}, ['Label', 'Issued', 'Issued by', 'Last used', 'Expires', 'Status', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Action'))))),
    h('tbody', {}, tokens.map((t) => h('tr', { dataset: { id: t.id } },
      h('td', {}, t.label), h('td', {}, when(t.created_at)), h('td', {}, personName(dir, t.created_by)),
      h('td', { class: 'scim-last-used' }, t.last_used_at ? when(t.last_used_at) : h('span', { class: 'muted' }, 'Never')),
      h('td', { class: 'scim-expires' }, t.expires_at ? when(t.expires_at) : h('span', { class: 'muted' }, 'Never')),
      h('td', {}, t.revoked_at ? 'Revoked ' + when(t.revoked_at) : t.expired ? h('span', { class: 'state blocked' }, 'Expired') : h('span', { class: 'state ok' }, 'Active')),
      h('td', {}, t.revoked_at ? null : h('button', { type: 'button', class: 'danger', 'aria-label': 'Revoke the token ' + t.label, onclick: () => revoke(t) }, 'Revoke')))))));
}

/** The identity provider's groups, read-only: Ward shows what they grant, the provider edits them. */
function scimGroupSection() {
  const msg = messageBox();
  const box = h('div', { id: 'scim-groups' }, h('p', { class: 'muted' }, 'Loading…'));
  const section = h('section', { class: 'card', 'aria-labelledby': 'scim-groups-h' }, h('h2', { id: 'scim-groups-h' }, 'SCIM groups'),
    h('p', { class: 'muted' }, 'Groups come from the identity provider and are changed there. A role group gives its members a clinical role; a member who leaves it drops to staff. Admin and compliance officer roles are granted here in Ward only.'),
    msg, box);
  (async () => {
    try {
      const groups = await api.get('/admin/scim/groups');
      if (groups.length === 0) { mount(box, h('p', { class: 'muted' }, 'No group yet.')); return; }
      const ROLES = { clinician: 'Role: clinician', nurse: 'Role: nurse', staff: 'Role: staff' };
      mount(box, h('table', { class: 'table scim-groups' }, h('caption', {}, 'Groups, by name'),
        h('thead', {}, h('tr', {}, ['Name', 'Grants', 'Members', 'Care teams', 'Last change'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, groups.map((g) => h('tr', { dataset: { id: g.id } },
          h('td', {}, g.display_name), h('td', {}, g.role ? ROLES[g.role] || g.role : h('span', { class: 'muted' }, 'No access (plain group)')),
          h('td', {}, String(g.members)), h('td', {}, `attached to ${g.care_teams || 0} care ${g.care_teams === 1 ? 'team' : 'teams'}`), h('td', {}, when(g.updated_at)))))));
    } catch (e) { mount(box); showError(msg, e); }
  })();
  return section;
}

function deprovisionSection(dir) {
  const msg = messageBox();
  const box = h('div', { id: 'deprovisions' }, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = h('button', { type: 'button', id: 'deprov-refresh' }, 'Refresh');
  const section = h('section', { class: 'card', 'aria-labelledby': 'deprov-h' }, h('h2', { id: 'deprov-h' }, 'Deprovisioning'),
    h('p', { class: 'muted' }, 'Each account the identity provider deactivated or deleted, step by step: request received, sessions revoked, wipes queued, connections closed, wipes acknowledged by the devices. Times after the first are counted from the request. Each view is recorded.'),
    msg, refresh, box);
  const load = async () => {
    try {
      const items = await api.get('/admin/scim/deprovisions');
      msg.className = 'form-message';
      msg.textContent = '';
      mount(box, items.length === 0 ? h('p', { class: 'muted' }, 'No account has been deprovisioned.') : deprovisionTable(items, dir));
    } catch (e) { mount(box); showError(msg, e); }
  };
  refresh.addEventListener('click', load);
  load();
  return section;
}

/** "+12 ms" or "+3.4 s" after the request arrived. */
function after(ms, from) {
  const d = ms - from;
  return '+' + (d < 1000 ? d + ' ms' : (d / 1000).toFixed(1) + ' s');
}

function wipesAcknowledged(x) {
  if (x.wipes.length === 0) return h('span', { class: 'muted' }, 'No device to wipe');
  const acked = x.wipes.filter((w) => w.acknowledged_at);
  const closed = x.wipes.filter((w) => !w.acknowledged_at && w.closed_reason);
  const parts = [`${acked.length} of ${x.wipes.length} acknowledged`];
  if (acked.length) {
    const last = Math.max(...acked.map((w) => new Date(w.acknowledged_at).getTime()));
    parts.push(acked.length === x.wipes.length ? 'last ' + after(last, x.received_at_ms) : 'latest ' + after(last, x.received_at_ms));
  }
  if (closed.length) parts.push(`${closed.length} closed without reaching the device`);
  return parts.join(', ');
}

function deprovisionTable(items, dir) {
  const CAUSES = { active_false: 'Deactivated', delete: 'Deleted' };
  return eventTable('Deprovisioning timelines, newest first', items, [
    ['Person', (x) => h('a', { href: '#/admin/users/' + x.user_id }, personName(dir, x.user_id))],
    ['Cause', (x) => CAUSES[x.cause] || x.cause],
    ['Request received', (x) => when(x.received_at_ms)],
    ['Sessions revoked', (x) => `${after(x.sessions_revoked_at_ms, x.received_at_ms)} (${x.sessions_revoked})`],
    ['Wipes queued', (x) => `${after(x.wipes_queued_at_ms, x.received_at_ms)} (${x.wipes_queued})`],
    ['Connections closed', (x) => (x.connections_closed_at_ms ? after(x.connections_closed_at_ms, x.received_at_ms) : h('span', { class: 'muted' }, 'Not yet'))],
    ['Wipes acknowledged', wipesAcknowledged],
  ]);
}

// ---------------------------------------------------------------------------------------------
// Break-glass: emergency read access to a patient's conversations (clinicians and nurses),
// the grants' read-only view, and the compliance officers' review queue
// ---------------------------------------------------------------------------------------------

const BG_CATEGORIES = [['emergency_treatment', 'Emergency treatment'], ['patient_unresponsive', 'Patient unresponsive'],
  ['care_team_unreachable', 'Care team unreachable'], ['other', 'Other']];
const BG_REVIEW = { pending: 'Pending review', justified: 'Justified', unjustified: 'Not justified' };
const pairLabel = (pairs, v) => (pairs.find(([k]) => k === v) || [v, v])[1];

/** A patient as this session knows it: the name and MRN found by search, else the record id. */
function bgPatient(id) {
  const p = bgPatients.get(id);
  return p ? `${p.display_name} (MRN ${p.mrn})` : 'Patient record ' + id.slice(0, 8);
}

async function breakGlassPage() {
  setTitle('Emergency access');
  open = null;
  const msg = messageBox();
  const mrn = field('Patient MRN', { name: 'bg_mrn', required: true, maxlength: 64 });
  const category = field('Reason category', { name: 'bg_category', tag: 'select', options: [['', 'Choose…'], ...BG_CATEGORIES] });
  const reason = field('Reason, in your words (required; seen only by compliance reviewers)', { name: 'bg_reason', tag: 'textarea', required: true, rows: 3, maxlength: 1000 });
  const form = h('form', { id: 'bg-request', novalidate: true, 'aria-labelledby': 'bg-new-h' },
    h('h2', { id: 'bg-new-h' }, 'Request emergency access'),
    h('p', { class: 'notice' }, 'Only in an emergency, for a patient whose conversations you are not part of. You get read-only access for a limited time. Compliance officers are alerted at once and review every use; each read is recorded in the patient\'s accounting of disclosures. Your second factor is asked for again.'),
    h('div', { class: 'row wrap' }, mrn, category), reason, msg, h('button', { type: 'submit', class: 'danger' }, 'Request emergency access'));
  const grantsBox = h('div', { id: 'bg-grants' }, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Emergency access'),
    h('section', { class: 'card' }, form),
    h('section', { class: 'card', 'aria-labelledby': 'bg-grants-h' }, h('h2', { id: 'bg-grants-h' }, 'Your open grants'), grantsBox));
  mount(main, root);
  focusHeading(root);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const m = mrn.input.value.trim();
    if (!m) { showError(msg, { userMessage: 'Enter the patient\'s MRN.' }); mrn.input.focus(); return; }
    if (!category.input.value) { showError(msg, { userMessage: 'Choose a reason category.' }); category.input.focus(); return; }
    if (!reason.input.value.trim()) { showError(msg, { userMessage: 'Say why you need access: the reason is required.' }); reason.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const p = await api.post('/patients/search', { mrn: m });
      bgPatients.set(p.id, { display_name: p.display_name, mrn: p.mrn });
      const g = await stepped(() => api.post('/break-glass', { patient_id: p.id, reason_category: category.input.value, reason: reason.input.value.trim() }));
      mrn.input.value = reason.input.value = '';
      category.input.value = '';
      showInfo(msg, `Emergency access granted until ${new Date(g.expires_at).toLocaleTimeString()}.`);
      announce('Emergency access granted');
      await loadGrants(grantsBox);
    });
  });
  await loadGrants(grantsBox);
}

async function loadGrants(box) {
  let grants;
  try { grants = await api.get('/break-glass'); } catch (e) { mount(box, h('p', { class: 'form-message error' }, e.userMessage)); return; }
  if (grants.length === 0) { mount(box, h('p', { class: 'muted' }, 'No open grant.')); return; }
  mount(box, eventTable('Open grants, newest first', grants, [
    ['Patient', (g) => bgPatient(g.patient_id)],
    ['Reason', (g) => pairLabel(BG_CATEGORIES, g.reason_category)],
    ['Granted', (g) => new Date(g.granted_at).toLocaleString()],
    ['Ends', (g) => new Date(g.expires_at).toLocaleString()],
    ['Conversations', (g) => (g.active ? h('a', { href: '#/break-glass/' + g.id, 'aria-label': 'Read the conversations of ' + bgPatient(g.patient_id) }, 'Read') : 'Ended')],
  ]));
}

/** The conversations of a grant's patient, or one of them read-only (`conv`). */
async function grantPage(grant, conv) {
  setTitle('Emergency access');
  open = null;
  const mine = ++renderSeq;
  const msg = messageBox();
  const root = h('section', { class: 'card' },
    h('p', {}, h('a', { href: conv ? '#/break-glass/' + grant : '#/break-glass' }, conv ? '‹ The patient\'s conversations' : '‹ Emergency access')),
    h('h1', {}, conv ? 'Conversation (read-only)' : 'The patient\'s conversations'),
    h('p', { class: 'notice' }, 'Emergency access: read-only. Every read is recorded and reviewed.'), msg);
  mount(main, root);
  focusHeading(root);
  try {
    if (!conv) {
      const convs = await api.get(`/break-glass/${grant}/conversations`);
      if (mine !== renderSeq) return;
      root.append(convs.length === 0 ? h('p', { class: 'muted' }, 'The patient has no conversations.')
        : h('ul', { class: 'bg-convs' }, convs.map((c) => h('li', {}, h('a', { href: `#/break-glass/${grant}/${c.id}` }, c.title || 'Patient conversation'),
          ' ', h('span', { class: 'muted' }, `started ${new Date(c.created_at).toLocaleDateString()}, ${c.last_message_seq} messages`)))));
      return;
    }
    const [page, dir] = await Promise.all([api.get(`/break-glass/${grant}/conversations/${conv}/messages?limit=100`), people().catch(() => null)]);
    if (mine !== renderSeq) return;
    const ol = h('ol', { class: 'messages readonly', id: 'bg-messages', 'aria-label': 'Messages' }, page.items.map((m) =>
      h('li', { class: 'msg' + (m.priority === 'stat' ? ' stat' : m.priority === 'urgent' ? ' urgent' : ''), dataset: { seq: m.seq } },
        h('div', { class: 'meta' }, h('span', { class: 'sender' }, personName(dir, m.sender_id)), ' ', time(m.created_at), ' ', badge(m.priority)),
        h('p', { class: 'body' }, m.recalled_at ? 'Message recalled by its sender.' : m.withheld ? 'Content withheld on this device.' : m.shredded ? 'Content removed (retention).' : m.body))));
    if (page.items.length === 0) ol.append(h('li', { class: 'muted' }, 'No messages.'));
    root.append(ol);
  } catch (e) {
    if (mine !== renderSeq) return;
    // An ended or revoked grant answers 404 like any conversation one is not in.
    showError(msg, e.status === 404 ? { userMessage: 'This emergency access has ended or was revoked.' } : e);
  }
}

async function breakGlassReviewsPage() {
  setTitle('Break-glass reviews');
  open = null;
  const msg = messageBox();
  const status = field('Show', { name: 'bg_status', tag: 'select', options: [['pending', 'Pending review'], ['', 'All'], ['justified', 'Justified'], ['unjustified', 'Not justified']] });
  const box = h('div', { id: 'bg-reviews' }, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Break-glass reviews'),
    h('section', { class: 'card', 'aria-labelledby': 'bg-q-h' }, h('h2', { id: 'bg-q-h' }, 'Emergency access uses'),
      h('p', { class: 'muted' }, 'Each use of emergency access, with the reason its requester gave. Decide whether it was justified; end a grant that is still open if it should not be. Reading this list is recorded.'),
      status, msg, box));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  const load = () => loadReviews(box, msg, dir, status.input.value);
  status.input.addEventListener('change', load);
  await load();
}

async function loadReviews(box, msg, dir, status) {
  let items;
  try { items = await api.get('/break-glass/reviews' + (status ? '?status=' + status : '')); } catch (e) { mount(box); showError(msg, e); return; }
  if (items.length === 0) { mount(box, h('p', { class: 'muted' }, status === 'pending' ? 'Nothing waits for review.' : 'No emergency access yet.')); return; }
  mount(box, h('ul', { class: 'bg-review-list' }, items.map((g) => reviewItem(g, dir, () => loadReviews(box, msg, dir, status)))));
}

function reviewItem(g, dir, reload) {
  const msg = messageBox();
  const who = personName(dir, g.requester_id);
  const li = h('li', { class: 'card', dataset: { id: g.id } },
    h('h3', {}, who, ' · ', pairLabel(BG_CATEGORIES, g.reason_category)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Patient record'), h('dd', {}, g.patient_id),
      h('dt', {}, 'Reason given'), h('dd', { class: 'bg-reason' }, g.reason || ''),
      h('dt', {}, 'Granted'), h('dd', {}, new Date(g.granted_at).toLocaleString()),
      h('dt', {}, 'Access'), h('dd', {}, g.revoked_at ? `Revoked ${new Date(g.revoked_at).toLocaleString()}` : g.active ? `Open until ${new Date(g.expires_at).toLocaleString()}` : `Ended ${new Date(g.expires_at).toLocaleString()}`),
      h('dt', {}, 'Review'), h('dd', { class: 'bg-status' }, BG_REVIEW[g.review_status] || g.review_status,
        g.reviewed_by ? ` by ${personName(dir, g.reviewed_by)}` : '', g.review_note ? ': ' + g.review_note : '')),
    msg);
  if (g.active) {
    const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': 'End access now: ' + who }, 'End access now');
    revoke.addEventListener('click', async () => {
      if (!(await ask('End this emergency access now? Its reads stop at once.', 'End access'))) return;
      try { await api.post(`/break-glass/${g.id}/revoke`); announce('Emergency access ended'); await reload(); } catch (e) { showError(msg, e); }
    });
    li.append(revoke);
  }
  if (g.review_status === 'pending') {
    const id = g.id.slice(0, 8);
    const verdict = h('fieldset', {}, h('legend', {}, 'Verdict'),
      ['justified', 'unjustified'].map((v) => h('div', { class: 'check' },
        h('input', { type: 'radio', name: 'verdict-' + id, id: `verdict-${v}-${id}`, value: v }), h('label', { for: `verdict-${v}-${id}` }, BG_REVIEW[v]))));
    const note = field('Note (optional; seen only by reviewers)', { name: 'bg_note', id: 'bg-note-' + id, tag: 'textarea', maxlength: 1000 });
    const form = h('form', { class: 'bg-review', novalidate: true, 'aria-label': 'Review the emergency access of ' + who },
      verdict, note, h('button', { type: 'submit', class: 'primary' }, 'Record review'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const chosen = form.querySelector('input[type=radio]:checked');
      if (!chosen) { showError(msg, { userMessage: 'Choose whether the access was justified.' }); return; }
      const req = { status: chosen.value };
      if (note.input.value.trim()) req.note = note.input.value.trim();
      await submitForm(form, msg, async () => {
        await api.post(`/break-glass/${g.id}/review`, req);
        announce('Review recorded');
        await reload();
      }, { keep: true });
    });
    li.append(form);
  }
  return li;
}

// ---------------------------------------------------------------------------------------------
// Anomaly alerts and their rules (compliance officers and admins)
// ---------------------------------------------------------------------------------------------

const ALERT_RULES = {
  bulk_patient_access: 'Many patients\' records read by one user', off_hours_access: 'Activity outside working hours',
  restricted_patient_access: 'Access to a restricted patient', failed_logins_account: 'Failed sign-ins on one account',
  failed_logins_org: 'Failed sign-ins across the organisation', audit_access_by_non_compliance: 'Audit log read by someone other than a compliance officer',
  break_glass_access: 'Emergency (break-glass) access', incident_deadline: 'Breach-notification deadline', baa_expiring: 'Business associate agreement expiring',
};
const RULE_SECTIONS = [['bulk_access', 'Many patients\' records read by one user'], ['working_hours', 'Activity outside working hours'],
  ['restricted_patient', 'Access to restricted patients'], ['failed_logins', 'Failed sign-ins'], ['audit_access', 'Audit log read by others than compliance officers']];
const RULE_FIELDS = {
  enabled: 'Raise these alerts', max_patients: 'Distinct patients allowed in the window', window_minutes: 'Window (minutes)', days: 'Working days',
  start: 'Work starts (HH:MM)', end: 'Work ends (HH:MM)', utc_offset_minutes: 'Offset from UTC (minutes)', repeat_after_minutes: 'Alert again after (minutes)',
  per_account: 'Failed sign-ins allowed per account', per_org: 'Failed sign-ins allowed across the organisation',
};
const WEEKDAYS = [['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];

async function alertsPage() {
  setTitle('Alerts');
  open = null;
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Alerts'));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  root.append(alertListSection(dir), await alertRulesSection());
}

function alertListSection(dir) {
  const msg = messageBox();
  const only = h('input', { type: 'checkbox', id: 'alerts-open', checked: true });
  const box = h('div', { id: 'alerts' }, h('p', { class: 'muted' }, 'Loading…'));
  const load = async () => {
    let page;
    try { page = await api.get('/audit/alerts?limit=100' + (only.checked ? '&unacknowledged=true' : '')); } catch (e) { mount(box); showError(msg, e); return; }
    if (page.items.length === 0) { mount(box, h('p', { class: 'muted' }, only.checked ? 'No alert waits for acknowledgement.' : 'No alerts yet.')); return; }
    const ack = async (a) => {
      try { await api.post(`/audit/alerts/${a.id}/acknowledge`); announce('Alert acknowledged'); await load(); } catch (e) { showError(msg, e); }
    };
    const subject = (a) => [a.subject_user_id ? personName(dir, a.subject_user_id) : null, a.subject_patient_id ? 'Patient record ' + a.subject_patient_id.slice(0, 8) : null].filter(Boolean).join(', ') || '—';
    mount(box, h('table', { class: 'table alerts' }, h('caption', {}, 'Alerts, newest first'),
      h('thead', {}, h('tr', {}, ['Raised', 'Alert', 'About', 'Count', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, page.items.map((a) => h('tr', { dataset: { id: a.id, rule: a.rule } },
        h('td', {}, new Date(a.raised_at).toLocaleString()), h('td', {}, ALERT_RULES[a.rule] || a.rule), h('td', {}, subject(a)),
        h('td', {}, a.count == null ? '—' : a.threshold == null ? String(a.count) : `${a.count} (allowed ${a.threshold}${a.window_minutes ? ` in ${a.window_minutes} min` : ''})`),
        h('td', {}, a.acknowledged_at ? `Acknowledged by ${personName(dir, a.acknowledged_by)}`
          : h('button', { type: 'button', onclick: () => ack(a), 'aria-label': `Acknowledge the alert raised ${new Date(a.raised_at).toLocaleString()}` }, 'Acknowledge')))))));
  };
  only.addEventListener('change', load);
  load();
  return h('section', { class: 'card', 'aria-labelledby': 'alerts-h' }, h('h2', { id: 'alerts-h' }, 'Anomaly alerts'),
    h('p', { class: 'muted' }, 'Raised from the audit log as it is written. Acknowledge an alert once it has been looked into. Each view is recorded.'),
    h('div', { class: 'check' }, only, h('label', { for: 'alerts-open' }, 'Only alerts not yet acknowledged')), msg, box);
}

async function alertRulesSection() {
  const msg = messageBox();
  const section = h('section', { class: 'card', 'aria-labelledby': 'rules-h' }, h('h2', { id: 'rules-h' }, 'Alert rules'), msg);
  let rules;
  try { rules = await api.get('/org/alert-rules'); } catch (e) { showError(msg, e); return section; }
  const read = [];
  const groups = RULE_SECTIONS.map(([key, title]) => {
    const rule = rules[key];
    return h('fieldset', { class: 'rule', id: 'rule-' + key }, h('legend', {}, title), Object.entries(rule).map(([k, v]) => {
      const id = `rule-${key}-${k}`;
      const name = RULE_FIELDS[k] || k;
      if (typeof v === 'boolean') {
        const input = h('input', { type: 'checkbox', id, checked: v });
        read.push(() => { rule[k] = input.checked; });
        return h('div', { class: 'check' }, input, h('label', { for: id }, name));
      }
      if (Array.isArray(v)) {
        const boxes = WEEKDAYS.map(([d, t]) => [d, h('input', { type: 'checkbox', id: `${id}-${d}`, value: d, checked: v.includes(d) }), t]);
        read.push(() => { rule[k] = boxes.filter(([, b]) => b.checked).map(([d]) => d); });
        return h('fieldset', { class: 'days' }, h('legend', {}, name), boxes.map(([d, b, t]) => h('span', { class: 'check' }, b, h('label', { for: `${id}-${d}` }, t))));
      }
      const f = field(name, { name: id, id, type: typeof v === 'number' ? 'number' : 'text', value: String(v), inputmode: typeof v === 'number' ? 'numeric' : undefined });
      read.push(() => {
        const raw = f.input.value.trim();
        rule[k] = typeof v === 'number' ? (/^-?\d+$/.test(raw) ? Number(raw) : NaN) : raw;
        if (Number.isNaN(rule[k])) throw new Error(`${title}: ${name} must be a whole number.`);
      });
      return f;
    }));
  });
  const form = h('form', { id: 'alert-rules', novalidate: true, 'aria-labelledby': 'rules-h' }, groups,
    h('p', { class: 'muted' }, 'Emergency access, breach-notification deadlines and expiring business associate agreements always raise alerts.'),
    h('button', { type: 'submit', class: 'primary' }, 'Save rules'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { for (const r of read) r(); } catch (e) { showError(msg, { userMessage: e.message }); return; }
    await submitForm(form, msg, async () => {
      rules = await api.call('PUT', '/org/alert-rules', rules);
      showInfo(msg, 'Alert rules saved.');
    });
  });
  section.append(form);
  return section;
}

// ---------------------------------------------------------------------------------------------
// Contact directory: one's own verified phone numbers and email addresses; for admins, the
// values several people claim, and suppression after delivery feedback
// ---------------------------------------------------------------------------------------------

const CONTACT_KINDS = [['phone', 'Phone number'], ['email', 'Email address']];
const CONTACT_STATUS = { unverified: 'Not verified', verified: 'Verified', expired: 'Verification expired', suppressed: 'Suppressed (delivery failed)', conflict: 'Also claimed by someone else' };
const SUPPRESS_REASONS = [['bounce', 'Messages bounce'], ['disconnected', 'Number disconnected'], ['complaint', 'Recipient complained']];

/** One's own contacts (`/me/contacts`), or with `opts` a patient record's (the same card). */
function contactsCard(opts = {}) {
  const { base = '/me/contacts', key = 'contact', heading = 'Your phone numbers and email addresses',
    about = 'Ward texts or emails you only short notices without health details, and only at a verified number or address.',
    added = 'Added. Send yourself a code to verify it.', codeLabel = 'Code you received' } = opts;
  const msg = messageBox();
  const listBox = h('div', { id: key + 's' }, h('p', { class: 'muted' }, 'Loading…'));
  const kind = field('Kind', { name: key + '_kind', tag: 'select', options: CONTACT_KINDS });
  const value = field('Number (with country code) or address', { name: key + '_value', maxlength: 320, autocomplete: 'off' });
  const form = h('form', { id: key + '-add', novalidate: true, 'aria-labelledby': key + '-add-h' },
    h('h3', { id: key + '-add-h' }, 'Add a number or address'), h('div', { class: 'row wrap' }, kind, value), h('button', { type: 'submit' }, 'Add'));
  const load = async () => {
    let list;
    try { list = await api.get(base); } catch (e) { mount(listBox); showError(msg, e); return; }
    mount(listBox, list.items.length === 0 ? h('p', { class: 'muted' }, 'No phone number or email address yet.')
      : h('ul', { class: 'plain contacts' }, list.items.map((c) => contactItem(c, msg, load, base, codeLabel))));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = value.input.value.trim();
    if (!v) { showError(msg, { userMessage: 'Enter a phone number or an email address.' }); value.input.focus(); return; }
    await submitForm(form, msg, async () => {
      await api.post(base, { kind: kind.input.value, value: v });
      value.input.value = '';
      showInfo(msg, added);
      await load();
    });
  });
  load();
  return h('section', { class: 'card', 'aria-labelledby': key + 's-h' }, h('h2', { id: key + 's-h' }, heading),
    h('p', { class: 'muted' }, about), msg, listBox, form);
}

function contactItem(c, msg, reload, base = '/me/contacts', codeLabel = 'Code you received') {
  const what = `${c.kind === 'phone' ? 'phone number' : 'email address'} ${c.value}`;
  const code = field(codeLabel, { name: 'contact_code', id: 'contact-code-' + c.id, inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 12 });
  // A code already pending (sent earlier) can be entered without sending another.
  const pending = !!c.code_expires_at && new Date(c.code_expires_at) > new Date();
  const confirm = h('form', { class: 'row contact-confirm', novalidate: true, hidden: !pending, 'aria-label': 'Confirm the ' + what }, code, h('button', { type: 'submit' }, 'Confirm'));
  const sendText = c.status === 'verified' ? 'Verify again' : 'Send a code';
  const send = h('button', { type: 'button', 'aria-label': `${sendText} to the ${what}` }, sendText);
  const remove = h('button', { type: 'button', class: 'danger', 'aria-label': 'Remove the ' + what }, 'Remove');
  send.addEventListener('click', async () => {
    try {
      const r = await api.post(`${base}/${c.id}/verify`);
      confirm.hidden = false;
      showInfo(msg, `A code is on its way; it works until ${new Date(r.expires_at).toLocaleTimeString()}.`);
      code.input.focus();
    } catch (e) { showError(msg, e); }
  });
  confirm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const typed = code.input.value.replace(/\s/g, '');
    if (!/^\d{6}$/.test(typed)) { showError(msg, { userMessage: 'Enter the 6-digit code that was sent.' }); code.input.focus(); return; }
    await submitForm(confirm, msg, async () => {
      await api.post(`${base}/${c.id}/confirm`, { code: typed });
      showInfo(msg, 'Verified.');
      await reload();
    }, { onError: () => { code.input.value = ''; code.input.focus(); } });
  });
  remove.addEventListener('click', async () => {
    if (!(await ask(`Remove the ${what}?`, 'Remove'))) return;
    try { await api.del(`${base}/${c.id}`); announce('Removed'); await reload(); } catch (e) { showError(msg, e); }
  });
  return h('li', { dataset: { id: c.id, status: c.status } },
    h('span', {}, c.value), ' ', h('span', { class: 'tag' }, CONTACT_STATUS[c.status] || c.status),
    c.reverify_by && c.status === 'verified' ? h('span', { class: 'muted' }, ' verify again by ', new Date(c.reverify_by).toLocaleDateString()) : null,
    c.status === 'suppressed' && c.suppressed_reason ? h('span', { class: 'muted' }, ' (', SUPPRESS_REASONS.find(([k]) => k === c.suppressed_reason)?.[1] || c.suppressed_reason, ')') : null,
    h('div', { class: 'row' }, send, remove), confirm);
}

/** A patient record's contacts, for the patient (on the consent page) or the workforce. */
function patientContactsCard(pid, forPatient) {
  return contactsCard({
    base: `/patients/${pid}/contacts`, key: 'pcontact',
    heading: forPatient ? 'Where we send your notices' : 'Phone numbers and email addresses',
    about: forPatient
      ? 'Text and email notices go only to a number or address you have verified with a code, and only for the kinds of notice you allow above.'
      : 'Notices by text or email go only to a verified number or address. The code goes to the patient\'s phone or inbox: ask the patient for it. Every change is recorded.',
    added: forPatient ? 'Added. Send yourself a code to verify it.' : 'Added. Send a code and ask the patient for it.',
    codeLabel: forPatient ? 'Code you received' : 'Code the patient received',
  });
}

/** `#/patients/<id>/contacts`: a patient's contacts for the care team and admins. */
async function patientContactsPage(pid) {
  setTitle('Patient contacts');
  open = null;
  const mine = ++renderSeq;
  const who = h('p', { class: 'muted', id: 'pcontacts-patient' }, 'Patient record ', pid.slice(0, 8));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Patient contacts'), who, patientContactsCard(pid, false));
  mount(main, root);
  focusHeading(root);
  // The name and MRN (an audited read of the record) say whose contacts these are; the
  // card works without them (admins outside the care team, a device blocked from PHI).
  try {
    const p = await api.get('/patients/' + pid);
    if (mine === renderSeq) mount(who, h('span', { class: 'tag' }, 'Patient'), ' ', p.display_name, ' · MRN ', p.mrn);
  } catch { /* keep the id */ }
}

async function adminContactsPage() {
  setTitle('Contacts');
  open = null;
  const msg = messageBox();
  const conflicts = h('div', { id: 'contact-conflicts' }, h('p', { class: 'muted' }, 'Loading…'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Contacts'),
    h('section', { class: 'card', 'aria-labelledby': 'conflicts-h' }, h('h2', { id: 'conflicts-h' }, 'Numbers and addresses several people claim'),
      h('p', { class: 'muted' }, 'Nothing is sent to a value more than one person claims until they sort it out. Suppress a value when the provider reports it bounced, was disconnected or was unwanted: every contact holding it stops receiving until verified again.'),
      msg, conflicts));
  mount(main, root);
  focusHeading(root);
  let dir = null;
  try { dir = await people(); } catch { /* names fall back to ids */ }
  const load = async () => {
    let list;
    try { list = await api.get('/contacts/conflicts'); } catch (e) { mount(conflicts); showError(msg, e); return; }
    if (list.items.length === 0) { mount(conflicts, h('p', { class: 'muted' }, 'No value is claimed by more than one person.')); return; }
    mount(conflicts, h('table', { class: 'table' }, h('caption', {}, 'Claimed by several people, grouped'),
      h('thead', {}, h('tr', {}, ['Group', 'Kind', 'Whose', 'Added', 'Suppress'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.items.map((c) => {
        const whose = c.user_id ? personName(dir, c.user_id) : 'Patient record ' + String(c.patient_id).slice(0, 8);
        const reason = field('Reason', { name: 'suppress_reason', id: 'suppress-' + c.id, tag: 'select', options: SUPPRESS_REASONS });
        const go = h('button', { type: 'button', class: 'danger', 'aria-label': 'Suppress the value of ' + whose }, 'Suppress');
        go.addEventListener('click', async () => {
          if (!(await ask('Suppress this value everywhere in the organisation? Nothing is sent to it until it is verified again.', 'Suppress'))) return;
          try {
            const r = await api.post('/contacts/suppress', { contact_id: c.id, reason: reason.input.value });
            showInfo(msg, `Suppressed on ${r.suppressed} contact${r.suppressed === 1 ? '' : 's'}.`);
            await load();
          } catch (e) { showError(msg, e); }
        });
        return h('tr', { dataset: { id: c.id } }, h('td', {}, c.group.slice(0, 8)), h('td', {}, c.kind === 'phone' ? 'Phone' : 'Email'), h('td', {}, whose),
          h('td', {}, new Date(c.created_at).toLocaleDateString()), h('td', {}, h('div', { class: 'row' }, reason, go)));
      }))));
  };
  await load();
}

// ---------------------------------------------------------------------------------------------
// Roster reconciliation (admins): the HR roster against the accounts, then remediation
// ---------------------------------------------------------------------------------------------

const FLAG_REASONS = { terminated: 'Left (roster)', not_on_roster: 'Not on the roster' };

async function rosterPage() {
  setTitle('Roster');
  open = null;
  const msg = messageBox();
  const file = h('input', { type: 'file', id: 'roster-file', accept: '.csv,text/csv' });
  const result = h('div', { id: 'roster-result' });
  const form = h('form', { id: 'roster-form', novalidate: true, 'aria-labelledby': 'roster-h' },
    h('h2', { id: 'roster-h' }, 'Compare the HR roster with the accounts'),
    h('p', { class: 'muted' }, 'A CSV file with the columns employee_id, login, status (active or terminated) and optionally termination_date. Comparing changes nothing; the file is not kept.'),
    h('div', { class: 'field' }, h('label', { for: 'roster-file' }, 'Roster file (CSV)'), file), msg,
    h('button', { type: 'submit', class: 'primary' }, 'Compare'));
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Roster'), h('section', { class: 'card' }, form), result);
  mount(main, root);
  focusHeading(root);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) { showError(msg, { userMessage: 'Choose the roster file.' }); file.focus(); return; }
    mount(result);
    await submitForm(form, msg, async () => {
      // Sent as text/csv whatever the browser calls the file.
      const csv = new Blob([await f.arrayBuffer()], { type: 'text/csv' });
      const report = await api.upload('/admin/roster/reconcile', csv);
      msg.className = 'form-message';
      msg.textContent = '';
      mount(result, rosterReport(report, csv));
    });
  });
}

function flaggedTable(caption, items) {
  return eventTable(caption, items, [
    ['Login', (x) => h('a', { href: '#/admin/users/' + x.user_id }, x.login)],
    ['Role', (x) => x.role.replace('_', ' ')],
    ['Why', (x) => FLAG_REASONS[x.reason] || x.reason],
    ['Account', (x) => (x.active ? 'Enabled' : 'Disabled')],
    ['Live sessions', (x) => String(x.live_sessions)],
    ['Devices', (x) => String(x.live_devices.length)],
  ]);
}

function rosterReport(r, csv) {
  const msg = messageBox();
  const section = h('section', { class: 'card', id: 'roster-plan', 'aria-labelledby': 'plan-h' }, h('h2', { id: 'plan-h' }, 'What the roster shows'),
    h('p', { id: 'roster-summary' }, `${r.roster_people} people on the roster (${r.roster_terminated} left), ${r.accounts} workforce accounts; `,
      `${r.needs_action.length} to act on, ${r.already_disabled.length} already disabled, ${r.missing_accounts.length} roster people without an account.`),
    r.excluded_self ? h('p', { class: 'notice' }, 'Your own account is flagged; it is never changed from here.') : null);
  if (r.needs_action.length) section.append(flaggedTable('To act on: disable, end sessions, wipe devices', r.needs_action));
  if (r.already_disabled.length) section.append(flaggedTable('Already disabled', r.already_disabled));
  if (r.missing_accounts.length) {
    section.append(eventTable('On the roster without an account', r.missing_accounts, [['Line', (x) => String(x.line)], ['Employee id', (x) => x.employee_id], ['Login', (x) => x.login]]));
  }
  if (r.needs_action.length === 0) { section.append(h('p', { class: 'muted' }, 'Nothing to do.')); return section; }
  const mass = h('input', { type: 'checkbox', id: 'roster-mass' });
  const go = h('button', { type: 'button', class: 'danger', id: 'roster-remediate' }, `Disable ${r.needs_action.length} account${r.needs_action.length === 1 ? '' : 's'} and wipe their devices`);
  go.addEventListener('click', async () => {
    if (!(await ask('Disable these accounts, end their sessions and wipe their devices? Enabling an account again does not undo a wipe.', 'Disable and wipe'))) return;
    go.disabled = true;
    try {
      const done = await stepped(() => api.upload('/admin/roster/remediate?confirm=true' + (mass.checked ? '&allow_mass=true' : ''), csv));
      go.remove();
      section.append(eventTable('Done', done.remediated, [
        ['Login', (x) => x.login], ['Disabled now', (x) => (x.disabled ? 'Yes' : 'Already')], ['Sessions ended', (x) => String(x.sessions_revoked)],
        ['Wipes sent', (x) => String(x.wipes_queued.length)]]));
      announce('Roster remediation done');
    } catch (e) {
      go.disabled = false;
      showError(msg, e);
    }
  });
  section.append(h('div', { class: 'check' }, mass, h('label', { for: 'roster-mass' }, 'Act even if more than half of the workforce is flagged')), msg, go);
  return section;
}

// ---------------------------------------------------------------------------------------------
// Notices by id (#/notices/<id>): what a PHI-free push or message pointed the patient to
// ---------------------------------------------------------------------------------------------

async function noticePage(id) {
  setTitle('Notice');
  open = null;
  const msg = messageBox();
  const root = h('section', { class: 'card', id: 'notice' }, h('h1', {}, 'Notice from your care team'), msg);
  mount(main, root);
  focusHeading(root);
  try {
    const n = await api.get('/me/notices/' + id);
    root.append(h('p', { class: 'notice-text' }, n.text), h('p', { class: 'muted' }, 'Sent ', new Date(n.created_at).toLocaleString()),
      h('p', {}, h('a', { href: '#/' }, 'Go to your messages')));
  } catch (e) {
    showError(msg, e.status === 404 ? { userMessage: 'This notice cannot be found. It may be meant for someone else.' } : e);
  }
}

// ---------------------------------------------------------------------------------------------
// Access reviews (#/admin/access-reviews): campaigns, certify or revoke, close, export
// ---------------------------------------------------------------------------------------------

const REVOKE_REASONS = [['', 'Choose…'], ['left_organisation', 'Left the organisation'], ['role_changed', 'Job changed'], ['not_needed', 'Access not needed'], ['unknown_account', 'Account not recognised'], ['other', 'Other (say why)']];
const DECISIONS = { certify: 'Certified', revoke: 'Revoked', not_reviewed: 'Not reviewed' };
const KIND_NAMES = { direct: 'direct', group: 'group', patient: 'patient' };

function reviewProgress(n) {
  const decided = n.total - n.pending;
  return h('div', { class: 'review-progress' },
    h('progress', { max: String(Math.max(n.total, 1)), value: String(decided), 'aria-label': 'Decided' }),
    h('span', {}, `${decided} of ${n.total} decided: ${n.certified} certified, ${n.revoked} revoked` + (n.not_reviewed ? `, ${n.not_reviewed} not reviewed` : '')));
}

/** Admins and compliance officers review the whole organisation; anyone else sees only the
 * accounts delegated to them. */
function isReviewer() {
  return me.user.role === 'admin' || me.user.role === 'compliance_officer';
}

/** Admins and compliance officers: the organisation's access review campaigns and cadence.
 * A delegate: the campaigns with accounts delegated to them. */
async function accessReviewsPage(info) {
  setTitle('Access reviews');
  open = null;
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const start = h('button', { type: 'button', class: 'primary', id: 'start-review' }, 'Start a review now');
  const reviewer = isReviewer();
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Access reviews'),
    h('section', { class: 'card', id: 'reviews', 'aria-labelledby': 'reviews-h' }, h('h2', { id: 'reviews-h' }, 'Campaigns'),
      h('p', { class: 'muted' }, reviewer
        ? 'Each campaign lists every active staff account with its role, conversations and last activity as they were when it opened. Certify what is still needed and revoke the rest; anything left undecided at the close is recorded as not reviewed. Nobody reviews their own access. You can ask a manager to review their people: they then see only those accounts.'
        : 'You were asked to review the access of these people. Certify what they still need and revoke the rest; anything left undecided when the campaign closes is recorded as not reviewed.'),
      msg, box, reviewer ? start : null));
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  start.addEventListener('click', async () => {
    start.disabled = true;
    try {
      const c = await stepped(() => api.post('/access-reviews'));
      location.hash = '#/admin/access-reviews/' + c.id;
    } catch (e) {
      showError(msg, e);
    } finally {
      start.disabled = false;
    }
  });
  try {
    const r = await api.get('/access-reviews');
    mount(box, r.items.length === 0 ? h('p', {}, 'No campaigns yet.') : eventTable('Campaigns, newest first', r.items, [
      ['Opened', (x) => h('a', { href: '#/admin/access-reviews/' + x.id }, new Date(x.opened_at).toLocaleDateString())],
      ['Started by', (x) => (x.trigger === 'schedule' ? 'Schedule' : 'A reviewer')],
      ['Status', (x) => (x.status === 'closed' ? 'Closed' : x.overdue ? h('span', { class: 'state blocked' }, 'Open, overdue') : 'Open')],
      ['Due', (x) => new Date(x.due_at).toLocaleDateString()],
      ['Progress', (x) => reviewProgress(x.counts)]]));
    if (reviewer) root.append(reviewScheduleForm(r.schedule));
  } catch (e) {
    mount(box);
    showError(msg, e);
  }
}

function reviewScheduleForm(s) {
  const msg = messageBox();
  const cadence = field('Days between campaigns (90 is quarterly)', { name: 'review_cadence', type: 'number', value: String(s.cadence_days), inputmode: 'numeric' });
  const windowDays = field('Days to decide', { name: 'review_window', type: 'number', value: String(s.window_days), inputmode: 'numeric' });
  const next = h('p', { class: 'muted' }, `The next campaign opens on ${new Date(s.next_opening_at).toLocaleDateString()}.`);
  const form = h('form', { class: 'card', novalidate: true, id: 'review-schedule', 'aria-labelledby': 'rs-h' }, h('h2', { id: 'rs-h' }, 'Schedule'), next,
    h('div', { class: 'row wrap' }, cadence, windowDays), msg, h('button', { type: 'submit', class: 'primary' }, 'Save schedule'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const c = Number(cadence.input.value);
    const w = Number(windowDays.input.value);
    if (!Number.isInteger(c) || c < 7 || c > 366) { showError(msg, { userMessage: 'Days between campaigns must be a whole number from 7 to 366.' }); cadence.input.focus(); return; }
    if (!Number.isInteger(w) || w < 1 || w > 90 || w >= c) { showError(msg, { userMessage: 'Days to decide must be a whole number from 1 to 90, shorter than the time between campaigns.' }); windowDays.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const r = await stepped(() => api.call('PUT', '/org/access-review-schedule', { cadence_days: c, window_days: w }));
      next.textContent = `The next campaign opens on ${new Date(r.next_opening_at).toLocaleDateString()}.`;
      showInfo(msg, 'Schedule saved.');
    });
  });
  return form;
}

/** Asks why access is revoked; resolves `{ reason, note }`, or null when cancelled. */
function revokeDialog(name) {
  return new Promise((resolve) => {
    const msg = messageBox();
    const reason = field('Reason', { name: 'revoke_reason', tag: 'select', options: REVOKE_REASONS });
    const note = field('Note (required for "Other"; no patient information)', { name: 'revoke_note', maxlength: 500 });
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', { id: 'revoke-h' }, 'Revoke access?'),
      h('p', {}, `${name}'s account is disabled now: their sessions end and their devices are told to erase Ward's data.`), reason, note, msg,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'danger' }, 'Revoke access'), cancel));
    const dlg = h('dialog', { 'aria-labelledby': 'revoke-h', class: 'card' }, form);
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    cancel.addEventListener('click', () => done(null));
    dlg.addEventListener('cancel', () => done(null));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const r = reason.input.value;
      const n = note.input.value.trim();
      if (!r) { showError(msg, { userMessage: 'Choose why the access is revoked.' }); reason.input.focus(); return; }
      if (r === 'other' && !n) { showError(msg, { userMessage: 'Say why in the note.' }); note.input.focus(); return; }
      done(n ? { reason: r, note: n } : { reason: r });
    });
    document.body.append(dlg);
    dlg.showModal();
    reason.input.focus();
  });
}

/** Asks whom to delegate `name`'s review to; resolves a user id, '' to give it back, or
 * undefined when cancelled. */
function delegateDialog(name, current, subject) {
  return new Promise((resolve) => {
    (async () => {
      const msg = messageBox();
      let dir = { items: [] };
      try { dir = await people(); } catch (e) { showError(msg, e); }
      const options = [['', 'The organisation\'s reviewers']].concat(dir.items
        .filter((u) => u.role !== 'patient' && u.id !== subject)
        .map((u) => [u.id, `${u.display_name} (${u.login})`]));
      const who = field('Reviewer', { name: 'delegate', tag: 'select', options });
      who.input.value = current || '';
      const cancel = h('button', { type: 'button' }, 'Cancel');
      const form = h('form', { method: 'dialog', novalidate: true },
        h('h2', { id: 'delegate-h' }, 'Who reviews ' + name + '?'),
        h('p', {}, 'A manager who knows this person\'s work can decide instead of you. They see only the accounts given to them, and keep them in the next campaign.'),
        who, msg, h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save'), cancel));
      const dlg = h('dialog', { 'aria-labelledby': 'delegate-h', class: 'card' }, form);
      const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
      cancel.addEventListener('click', () => done(undefined));
      dlg.addEventListener('cancel', () => done(undefined));
      form.addEventListener('submit', (ev) => { ev.preventDefault(); done(who.input.value); });
      document.body.append(dlg);
      dlg.showModal();
      who.input.focus();
    })();
  });
}

function memberships(x) {
  if (x.membership_count === 0) return 'None';
  const kinds = {};
  for (const m of x.memberships) kinds[m.kind] = (kinds[m.kind] || 0) + 1;
  return `${x.membership_count} (` + Object.entries(kinds).map(([k, n]) => `${n} ${KIND_NAMES[k] || k}`).join(', ') + ')';
}

/** One campaign: its items with certify and revoke, progress, close and exports. */
async function accessReviewPage(id, info) {
  setTitle('Access review');
  open = null;
  const msg = messageBox();
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const head = h('h1', { class: 'pagehead' }, 'Access review');
  const summary = h('div', {});
  const actions = h('div', { class: 'row wrap' });
  const reviewer = isReviewer();
  const dir = reviewer ? await people().catch(() => null) : null;
  const root = h('section', {}, h('p', {}, h('a', { href: '#/admin/access-reviews' }, 'All campaigns')), head,
    h('section', { class: 'card', id: 'review', 'aria-label': 'Accounts to review' }, summary, msg, box, actions));
  mount(main, root);
  focusHeading(root);
  if (info) showInfo(msg, info);
  const decide = async (x, body, button) => {
    button.disabled = true;
    try {
      await stepped(() => api.post(`/access-reviews/${id}/items/${x.user_id}`, body));
      await load(`${x.display_name}: ${body.decision === 'revoke' ? 'access revoked, account disabled' : 'access certified'}.`);
    } catch (e) {
      button.disabled = false;
      showError(msg, e);
    }
  };
  const decisionCell = (c, x) => {
    if (x.decision) {
      const label = DECISIONS[x.decision] || x.decision;
      const reason = x.reason ? ` (${(REVOKE_REASONS.find(([v]) => v === x.reason) || [null, x.reason])[1]})` : '';
      return h('span', { class: 'state ' + (x.decision === 'certify' ? 'ok' : x.decision === 'revoke' ? 'blocked' : 'warn') }, label + reason);
    }
    if (c.status !== 'open') return '–';
    if (x.user_id === me.user.id) return h('span', { class: 'muted' }, 'Another reviewer decides');
    const certify = h('button', { type: 'button', 'aria-label': 'Certify ' + x.display_name }, 'Certify');
    const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': 'Revoke ' + x.display_name }, 'Revoke');
    certify.addEventListener('click', () => decide(x, { decision: 'certify' }, certify));
    revoke.addEventListener('click', async () => {
      const why = await revokeDialog(x.display_name);
      if (why) await decide(x, { decision: 'revoke', ...why }, revoke);
    });
    return h('div', { class: 'row' }, certify, revoke);
  };
  const delegate = async (x, button) => {
    const to = await delegateDialog(x.display_name, x.reviewer_id, x.user_id);
    if (to === undefined) return;
    button.disabled = true;
    try {
      await api.call('PUT', `/access-reviews/${id}/reviewers`, { reviewer_id: to || null, user_ids: [x.user_id] });
      await load(to ? `${x.display_name}: ${personName(dir, to)} reviews this account.` : `${x.display_name}: back with the organisation's reviewers.`);
    } catch (e) {
      button.disabled = false;
      showError(msg, e);
    }
  };
  const reviewerCell = (c, x) => {
    const name = x.reviewer_id ? personName(dir, x.reviewer_id) : 'Reviewers';
    if (c.status !== 'open' || x.decision) return name;
    const b = h('button', { type: 'button', 'aria-label': 'Change who reviews ' + x.display_name }, 'Change');
    b.addEventListener('click', () => delegate(x, b));
    return h('div', { class: 'row' }, h('span', {}, name), b);
  };
  const download = async (format, button) => {
    button.disabled = true;
    try {
      const f = await api.file(`/access-reviews/${id}/export?format=${format}`);
      save(f);
      showInfo(msg, `Results downloaded: ${f.filename}.`);
    } catch (e) {
      showError(msg, e);
    } finally {
      button.disabled = false;
    }
  };
  const load = async (notice) => {
    const r = await api.get('/access-reviews/' + id);
    const c = r.campaign;
    head.textContent = `Access review of ${new Date(c.opened_at).toLocaleDateString()}`;
    const due = c.status === 'open'
      ? (c.overdue ? h('span', { class: 'state blocked' }, `Overdue since ${new Date(c.due_at).toLocaleDateString()}`) : `Due ${new Date(c.due_at).toLocaleDateString()}`)
      : `Closed ${new Date(c.closed_at).toLocaleDateString()}`;
    mount(summary, h('p', {}, due), reviewProgress(c.counts));
    mount(box, r.items.length === 0 ? h('p', {}, 'No accounts were active when this campaign opened.') : eventTable('Accounts as they were when the campaign opened', r.items, [
      ['Person', (x) => [x.display_name, h('br', {}), h('span', { class: 'muted' }, x.login)]],
      ['Role', (x) => (ROLES.find(([v]) => v === x.role) || [null, x.role])[1]],
      ['Conversations', (x) => memberships(x)],
      ['Last sign-in', (x) => (x.last_sign_in_at ? when(Date.parse(x.last_sign_in_at)) : 'Never')],
      ['Last message', (x) => (x.last_message_at ? when(Date.parse(x.last_message_at)) : 'Never')],
      ['Second factor', (x) => (x.mfa_enabled ? 'Yes' : h('span', { class: 'state warn' }, 'No'))],
      ...(reviewer ? [['Reviewer', (x) => reviewerCell(c, x)]] : []),
      ['Decision', (x) => decisionCell(c, x)]]));
    const json = h('button', { type: 'button', id: 'review-json' }, 'Download results (JSON)');
    const csv = h('button', { type: 'button', id: 'review-csv' }, 'Download results (CSV)');
    json.addEventListener('click', () => download('json', json));
    csv.addEventListener('click', () => download('csv', csv));
    const buttons = reviewer ? [json, csv] : [];
    if (reviewer && c.status === 'open') {
      const close = h('button', { type: 'button', class: 'primary', id: 'close-review' }, 'Close campaign');
      close.addEventListener('click', async () => {
        const left = c.counts.pending;
        const q = left ? `${left} account${left === 1 ? ' is' : 's are'} still undecided and will be recorded as not reviewed. Close the campaign?` : 'Close the campaign? Decisions become final.';
        if (!(await ask(q, 'Close campaign'))) return;
        close.disabled = true;
        try {
          await stepped(() => api.post(`/access-reviews/${id}/close`));
          await load('Campaign closed.');
        } catch (e) {
          close.disabled = false;
          showError(msg, e);
        }
      });
      buttons.unshift(close);
    }
    mount(actions, ...buttons);
    if (notice) { showInfo(msg, notice); announce(notice); }
  };
  try { await load(); } catch (e) { mount(box); showError(msg, e); }
}

// ---------------------------------------------------------------------------------------------
// Issue 9 gaps: patient contact links, the contact policy, local search, a stable web device,
// one's own devices
// ---------------------------------------------------------------------------------------------

/** Links from a patient conversation's header to the patient's own screens. */
function patientLinks(pid) {
  return h('p', { class: 'patient-links' }, h('a', { href: `#/patients/${pid}/contacts` }, 'Patient contacts'));
}

/** The organisation's re-verification period for contacts (admins change it; others read it). */
async function contactPolicyForm() {
  const msg = messageBox();
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'cpol-h', id: 'contact-policy' }, h('h2', { id: 'cpol-h' }, 'Contact verification'));
  let pol;
  try { pol = await api.get('/org/contact-policy'); } catch (e) { form.append(msg); showError(msg, e); return form; }
  const about = h('p', { class: 'muted' }, 'Ward sends notices and codes only to phone numbers and email addresses verified within this period; after it, the owner verifies them again with a new code.');
  if (me.user.role !== 'admin') {
    form.append(about, h('p', { id: 'reverify-days' }, `Contacts are verified again every ${pol.reverify_days} days.`));
    return form;
  }
  const days = field('Verify contacts again after (days, 1 to 730)', { name: 'reverify_days', inputmode: 'numeric', value: String(pol.reverify_days), maxlength: 4 });
  form.append(about, days, msg, h('button', { type: 'submit', class: 'primary' }, 'Save contact policy'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = days.input.value.trim();
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 730) {
      showError(msg, { userMessage: 'The period must be a whole number of days from 1 to 730 (two years).' });
      days.input.focus();
      return;
    }
    await submitForm(form, msg, async () => {
      const r = await api.call('PUT', '/org/contact-policy', { reverify_days: Number(v) });
      days.input.value = String(r.reverify_days);
      showInfo(msg, `Saved. Contacts are verified again every ${r.reverify_days} days.`);
    });
  });
  return form;
}

// Search. Message bodies are encrypted at rest, so the server cannot search them; like Signal
// and Element, the page searches what it has loaded. The query lives in memory only (never in
// the URL or storage) and lock() forgets it.
let listQuery = '';
let convMembers = new Map(); // conversation id -> searchable names (members, patient) seen here

const fold = (t) => String(t || '').normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();

/** Whether a conversation of the list matches the filter: every word in its name, kind or members. */
function convMatches(c) {
  const words = fold(listQuery).split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const hay = fold([convName(c), c.kind, c.patient_id ? 'patient' : '', convMembers.get(c.id) || ''].join(' '));
  return words.every((w) => hay.includes(w));
}

/** The filter box above the conversation list. */
function listFilter() {
  const input = h('input', { type: 'search', id: 'conv-filter', name: 'conv_filter', autocomplete: 'off', spellcheck: 'false', value: listQuery || null,
    'aria-describedby': 'conv-filter-status', 'aria-controls': 'convs' });
  const status = h('p', { id: 'conv-filter-status', class: 'sr-only', role: 'status' });
  input.addEventListener('input', () => { listQuery = input.value; renderList(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && input.value) { e.preventDefault(); input.value = ''; listQuery = ''; renderList(); }
    if (e.key === 'Enter') { e.preventDefault(); const first = document.querySelector('#convs a'); if (first) first.focus(); }
  });
  return h('div', { class: 'field filter' }, h('label', { for: 'conv-filter' }, 'Filter conversations'), input, status);
}

/** The list as filtered, saying how many match (to screen readers, and on screen when none). */
function filteredList() {
  const shown = list.filter(convMatches);
  const status = document.getElementById('conv-filter-status');
  if (status) status.textContent = listQuery.trim() ? `${shown.length} of ${list.length} conversations match` : '';
  return shown;
}

/** The find box in an open conversation. Enter and Shift+Enter step through the matches. */
function findBar() {
  const o = open;
  const wasFocused = document.activeElement && document.activeElement.id === 'conv-find';
  const input = h('input', { type: 'search', id: 'conv-find', name: 'conv_find', autocomplete: 'off', spellcheck: 'false', value: o.find || null,
    'aria-describedby': 'conv-find-status', 'aria-controls': 'messages' });
  const status = h('span', { id: 'conv-find-status', class: 'muted', role: 'status' });
  const prev = h('button', { type: 'button', 'aria-label': 'Previous match' }, '↑');
  const next = h('button', { type: 'button', 'aria-label': 'Next match' }, '↓');
  const go = (d) => { o.findAt = (o.findAt || 0) + d; highlightFind(true); };
  input.addEventListener('input', () => { o.find = input.value; o.findAt = 0; highlightFind(true); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); go(e.shiftKey ? -1 : 1); }
    if (e.key === 'Escape' && input.value) { e.preventDefault(); input.value = ''; o.find = ''; highlightFind(false); }
  });
  prev.addEventListener('click', () => go(-1));
  next.addEventListener('click', () => go(1));
  o.refocusFind = wasFocused;
  return h('div', { class: 'findbar', role: 'search', 'aria-label': 'In this conversation' },
    h('div', { class: 'field' }, h('label', { for: 'conv-find' }, 'Find in this conversation'), input), h('div', { class: 'row' }, prev, next, status));
}

/** Marks the find box's matches in the loaded messages; `scroll` brings the current one into view. */
function highlightFind(scroll) {
  const o = open;
  if (!o || !o.root) return;
  const q = fold(o.find).trim();
  const marks = [];
  for (const li of o.root.querySelectorAll('#messages li.msg')) {
    const m = o.messages.get(Number(li.dataset.seq));
    const p = li.querySelector('p.body');
    if (!m || !p || m.recalled_at || m.withheld || m.shredded) continue;
    const text = m.body || '';
    const folded = fold(text);
    // Folding can change lengths (a letter and its accent); mark only where it did not.
    if (!q || folded.length !== text.length) { if (p.querySelector('mark')) mount(p, text); continue; }
    const parts = [];
    let at = 0;
    for (let i = folded.indexOf(q); i >= 0; i = folded.indexOf(q, i + q.length)) {
      if (i > at) parts.push(text.slice(at, i));
      const mk = h('mark', {}, text.slice(i, i + q.length));
      parts.push(mk);
      marks.push(mk);
      at = i + q.length;
    }
    if (at < text.length) parts.push(text.slice(at));
    mount(p, parts);
  }
  const status = o.root.querySelector('#conv-find-status');
  if (!q) { if (status) status.textContent = ''; return; }
  if (marks.length === 0) { if (status) status.textContent = 'No match in the loaded messages'; return; }
  o.findAt = ((o.findAt || 0) % marks.length + marks.length) % marks.length;
  const cur = marks[o.findAt];
  cur.classList.add('current');
  if (status) status.textContent = `${o.findAt + 1} of ${marks.length}`;
  if (scroll) cur.scrollIntoView({ block: 'nearest' });
}

/** After a conversation is drawn: remember its names for the list filter, redo the find. */
function afterConversationRender() {
  const o = open;
  if (!o) return;
  const v = o.view;
  convMembers.set(o.id, [...v.members.map((m) => m.display_name), v.patient ? v.patient.display_name : '', v.patient ? v.patient.mrn : ''].join(' '));
  if (o.find) highlightFind(false);
  if (o.refocusFind) {
    const input = o.root.querySelector('#conv-find');
    if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
  }
}

/** Forgets the search state (at lock). */
function forgetSearch() {
  listQuery = '';
  convMembers = new Map();
}

// A stable device for web sign-ins. The device id the server returned is kept in localStorage
// under a key derived from the login name (not the name itself), and sent with the next
// password sign-in of that login from this browser. It is an identifier, not a credential: the
// server accepts it only with the user's own password (and second factor), only for a device
// of that user that is not revoked, and refresh tokens stay bound to it besides. Tokens never
// go to storage (api.js).
const DEVICE_KEY = 'ward.device.';
let pendingDeviceKey = null;

async function deviceKey(login) {
  try {
    const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode('ward-web-device\n' + login.trim().toLowerCase()));
    return DEVICE_KEY + [...new Uint8Array(d)].slice(0, 16).map((x) => x.toString(16).padStart(2, '0')).join('');
  } catch {
    return null; // no WebCrypto (not a secure context): a new device each time, as before
  }
}

function storedDevice(key) {
  try { const v = key && localStorage.getItem(key); return v && ID.test(v) ? v : null; } catch { return null; }
}

function rememberDevice(tokens) {
  const key = pendingDeviceKey;
  pendingDeviceKey = null;
  if (!key || !tokens || !ID.test(tokens.device_id || '')) return;
  try { localStorage.setItem(key, tokens.device_id); } catch { /* storage refused: nothing kept */ }
}

function forgetDevice(key) {
  try { if (key) localStorage.removeItem(key); } catch { /* nothing kept */ }
}

/** The server refused the device id: not this user's, revoked or wiped. */
const deviceRefused = (e) => e && e.code === 'validation_failed' && /device\.id/i.test(e.userMessage || '');

/** Password sign-in with this browser's device for the login, or a new device if refused. */
async function passwordSignIn(login, password) {
  const key = await deviceKey(login);
  const id = storedDevice(key);
  const body = (withId) => ({ login, password, device: { ...(withId && id ? { id } : {}), name: 'Web browser', platform: 'web' } });
  pendingDeviceKey = key;
  try {
    return await api.anonymous('POST', '/auth/login', body(true));
  } catch (e) {
    if (!id || !deviceRefused(e)) throw e;
    forgetDevice(key);
    return api.anonymous('POST', '/auth/login', body(false));
  }
}

/** After a second factor refused the device id (it was revoked while signing in): start again. */
function deviceRefusedAtMfa(e) {
  if (!deviceRefused(e)) return false;
  forgetDevice(pendingDeviceKey);
  signInPage('This browser\'s device record was ended (revoked or wiped). Sign in again to register it anew.');
  return true;
}

const DEVICE_PLATFORMS = { web: 'web browser', ios: 'iPhone or iPad', android: 'Android', cli: 'command line' };

/** One's own devices (`GET /me/devices`) with "Report lost" (`POST /me/devices/{id}/wipe`). */
function myDevicesCard() {
  const msg = messageBox();
  const box = h('div', { id: 'my-devices' }, h('p', { class: 'muted' }, 'Loading…'));
  const load = async () => {
    let devices;
    try { devices = await api.get('/me/devices'); } catch (e) { mount(box); showError(msg, e); return; }
    const live = devices.filter((d) => !d.revoked_at);
    if (live.length === 0) { mount(box, h('p', { class: 'muted' }, 'No devices.')); return; }
    const here = api.deviceId();
    mount(box, h('table', { class: 'table' }, h('caption', { class: 'sr-only' }, 'Your devices'),
      h('thead', {}, h('tr', {}, ['Device', 'First signed in', 'Last seen', 'Posture', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Action'))))),
      h('tbody', {}, live.map((d) => {
        const lost = h('button', { type: 'button', class: 'danger', 'aria-label': `Report lost: ${d.name} first signed in ${new Date(d.first_seen_at).toLocaleString()}` }, 'Report lost');
        lost.addEventListener('click', async () => {
          const reason = await wipeDialog(d, 'yours');
          if (!reason) return;
          try {
            await api.post(`/me/devices/${d.id}/wipe`, { reason });
            if (d.id === api.deviceId()) return; // this browser's own: its session ends and the page locks
            showInfo(msg, 'Reported. Its sessions ended, and Ward\'s data on it is erased at its next contact.');
            await load();
          } catch (e) { showError(msg, e); }
        });
        return h('tr', { dataset: { id: d.id, current: d.id === here ? 'true' : null } },
          h('td', {}, d.name, ' ', h('span', { class: 'muted' }, DEVICE_PLATFORMS[d.platform] || d.platform), d.id === here ? h('span', { class: 'tag' }, 'This browser') : null),
          h('td', {}, new Date(d.first_seen_at).toLocaleString()),
          h('td', {}, new Date(d.last_seen_at).toLocaleString()),
          h('td', {}, d.state ? deviceStatus(d) : h('span', { class: 'muted' }, 'Not reported')),
          h('td', {}, lost));
      }))));
  };
  load();
  return h('section', { class: 'card', 'aria-labelledby': 'my-devices-h' }, h('h2', { id: 'my-devices-h' }, 'Your devices'),
    h('p', { class: 'muted' }, 'Each phone, tablet or browser you signed in with. A browser keeps its device between sign-ins. Report a device lost to end its sessions and erase Ward\'s data on it.'),
    msg, box);
}

/** Changing one's password (every other session ends), from the account page. */
function passwordCard() {
  const msg = messageBox();
  const cur = field('Current password', { name: 'pw_current', type: 'password', autocomplete: 'current-password' });
  const next = field('New password', { name: 'pw_new', type: 'password', autocomplete: 'new-password' });
  const again = field('New password again', { name: 'pw_again', type: 'password', autocomplete: 'new-password' });
  const form = h('form', { class: 'card', id: 'password-form', novalidate: true, 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Password'),
    h('p', { class: 'muted' }, 'Changing it signs you out everywhere else.'), h('div', { class: 'row wrap' }, cur, next, again), msg,
    h('button', { type: 'submit' }, 'Change password'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!cur.input.value || !next.input.value) { showError(msg, { userMessage: 'Fill in your current password and the new one.' }); (cur.input.value ? next : cur).input.focus(); return; }
    if (next.input.value !== again.input.value) { showError(msg, { userMessage: 'The two new passwords differ.' }); again.input.focus(); return; }
    await submitForm(form, msg, async () => {
      await api.post('/me/password', { current_password: cur.input.value, new_password: next.input.value });
      for (const f of [cur, next, again]) f.input.value = '';
      showInfo(msg, 'Password changed. Your other sessions have ended.');
    }, { onError: () => { cur.input.value = ''; } });
  });
  return form;
}

/**
 * The authenticator app (TOTP) from the account page: set one up (the password, then the
 * secret and a code from the app; the first second factor also shows ten recovery codes),
 * replace the recovery codes, or remove it (both with a current code). Whether TOTP is set
 * is known only when the account's second factor exists without a security key; otherwise
 * every action is offered and the API says which applies.
 */
function authenticatorCard() {
  const msg = messageBox();
  const body = h('div', { id: 'totp-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const card = h('section', { class: 'card', id: 'totp-card', 'aria-labelledby': 'totp-h' }, h('h2', { id: 'totp-h' }, 'Authenticator app'), msg, body);
  const codesBox = (codes, lead) => h('div', { class: 'notice', id: 'totp-recovery' }, h('p', {}, lead, ' Each signs you in once if you lose your phone. Keep them somewhere safe: they are shown only now.'),
    h('ul', { class: 'codes' }, codes.map((c) => h('li', {}, c))));
  const codeForm = (id, label, button, work) => {
    const code = field(label, { name: id + '_code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6 });
    const f = h('form', { id, class: 'row wrap', novalidate: true, 'aria-label': button }, code, h('button', { type: 'submit' }, button));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const v = code.input.value.trim();
      if (!/^\d{6}$/.test(v)) { showError(msg, { userMessage: 'Enter the 6 digits your authenticator app shows.' }); code.input.focus(); return; }
      await submitForm(f, msg, () => work(v), { onError: () => { code.input.value = ''; code.input.focus(); } });
    });
    return f;
  };
  const setup = () => {
    const pw = field('Your password', { name: 'totp_password', type: 'password', autocomplete: 'current-password' });
    const f = h('form', { id: 'totp-setup', class: 'row wrap', novalidate: true, 'aria-label': 'Set up an authenticator app' }, pw, h('button', { type: 'submit' }, 'Set up an authenticator app'));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!pw.input.value) { showError(msg, { userMessage: 'Enter your password.' }); pw.input.focus(); return; }
      await submitForm(f, msg, async () => {
        const r = await stepped(() => api.post('/me/mfa/totp', { password: pw.input.value }));
        pw.input.value = '';
        const confirm = codeForm('totp-confirm', '6-digit code from the app', 'Confirm', async (v) => {
          const c = await stepped(() => api.post('/me/mfa/totp/confirm', { code: v }));
          me.user.mfa_enabled = true;
          await load();
          showInfo(msg, 'The authenticator app is set up.');
          if (c.recovery_codes.length) body.prepend(codesBox(c.recovery_codes, 'Your recovery codes:'));
        });
        mount(body, h('p', {}, 'Enter this secret in your authenticator app (time-based, 6 digits, 30 seconds), then the code it shows:'),
          h('p', { class: 'secret', id: 'totp-new-secret' }, r.secret.replace(/(.{4})/g, '$1 ').trim()), confirm);
        confirm.querySelector('input').focus();
      }, { onError: () => { pw.input.value = ''; } });
    });
    return f;
  };
  const manage = () => [
    codeForm('totp-recovery-form', 'Code from the app, for new recovery codes', 'New recovery codes', async (v) => {
      const r = await api.post('/me/mfa/recovery-codes', { code: v });
      mount(body, codesBox(r.recovery_codes, 'Your new recovery codes (the old ones no longer work):'), ...manage());
    }),
    codeForm('totp-remove', 'Code from the app, to remove it', 'Remove the authenticator app', async (v) => {
      await api.call('DELETE', '/me/mfa/totp', { code: v });
      await load();
      showInfo(msg, 'The authenticator app was removed.');
    }),
  ];
  const load = async () => {
    let fresh, keys;
    try { [fresh, keys] = await Promise.all([api.get('/me'), api.get('/me/webauthn/credentials')]); } catch (e) { mount(body); showError(msg, e); return; }
    const totp = fresh.user.mfa_enabled && keys.length === 0 ? true : fresh.user.mfa_enabled ? null : false;
    mount(body, h('p', { class: 'muted', id: 'totp-state' }, totp === true ? 'An authenticator app gives your second sign-in step.'
      : totp === false ? 'No authenticator app yet. One gives a 6-digit code as the second step after your password.'
        : 'Your security key is a second step; you may also use an authenticator app.'),
    totp === true ? null : setup(), totp === false ? null : manage());
  };
  load();
  return card;
}

/** Managers: whether every current policy must be acknowledged before message content shows. */
async function ackSettingForm() {
  const msg = messageBox();
  const form = h('form', { class: 'card', id: 'ack-setting', novalidate: true, 'aria-labelledby': 'ack-setting-h' }, h('h2', { id: 'ack-setting-h' }, 'Acknowledgment before access'));
  let r;
  try { r = await api.get('/policies'); } catch (e) { form.append(msg); showError(msg, e); return form; }
  const box = h('input', { type: 'checkbox', id: 'ack-required', checked: !!r.require_acknowledgment_before_phi });
  form.append(h('p', { class: 'muted' }, 'When on, the workforce sees message content only after acknowledging the current version of every policy.'),
    h('div', { class: 'check' }, box, h('label', { for: 'ack-required' }, 'Require acknowledging every current policy before message content is shown')), msg,
    h('button', { type: 'submit' }, 'Save'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await submitForm(form, msg, async () => {
      const s = await api.call('PUT', '/org/policy-acknowledgment', { require_before_phi: box.checked });
      box.checked = s.require_before_phi;
      showInfo(msg, s.require_before_phi ? 'Saved: policies must be acknowledged before message content is shown.' : 'Saved: acknowledgment is not required before access.');
    });
  });
  return form;
}

/** One's own completed training (`GET /me/training-records`). */
async function myTrainingCard() {
  const card = h('section', { class: 'card', id: 'my-training', 'aria-labelledby': 'my-training-h' }, h('h2', { id: 'my-training-h' }, 'Your training'));
  try {
    const r = await api.get('/me/training-records');
    card.append(r.items.length === 0 ? h('p', { class: 'muted' }, 'No training recorded for you yet.')
      : eventTable('Courses you completed', r.items, [['Course', (x) => x.course], ['Completed', (x) => x.completed_on]]));
  } catch (e) {
    card.append(h('p', { class: 'form-message error' }, e.userMessage));
  }
  return card;
}

/** Managers: the workforce's training records, and recording a completion. */
async function trainingSection(dir, people) {
  const msg = messageBox();
  const listBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const who = field('Person', { name: 'training_user', tag: 'select', options: [['', 'Choose…'], ...people] });
  const course = field('Course', { name: 'training_course', maxlength: 200 });
  const day = field('Completed on (YYYY-MM-DD)', { name: 'training_day', maxlength: 10, value: localDay() });
  const form = h('form', { id: 'training-form', novalidate: true, 'aria-labelledby': 'training-add-h' }, h('h3', { id: 'training-add-h' }, 'Record a completed course'),
    h('div', { class: 'row wrap' }, who, course, day), msg, h('button', { type: 'submit' }, 'Record training'));
  const load = async () => {
    try {
      const r = await api.get('/training-records');
      mount(listBox, r.items.length === 0 ? h('p', { class: 'muted' }, 'No training recorded yet.')
        : eventTable('Completed training, newest first', r.items, [['Person', (x) => personName(dir, x.user_id)], ['Course', (x) => x.course],
          ['Completed', (x) => x.completed_on], ['Recorded by', (x) => (x.recorded_by ? personName(dir, x.recorded_by) : '–')]]));
    } catch (e) { mount(listBox); showError(msg, e); }
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!who.input.value) { showError(msg, { userMessage: 'Choose the person who completed the course.' }); who.input.focus(); return; }
    if (!course.input.value.trim()) { showError(msg, { userMessage: 'Name the course.' }); course.input.focus(); return; }
    if (!DAY.test(day.input.value.trim())) { showError(msg, { userMessage: 'Give the day it was completed as YYYY-MM-DD.' }); day.input.focus(); return; }
    await submitForm(form, msg, async () => {
      await api.post('/training-records', { user_id: who.input.value, course: course.input.value.trim(), completed_on: day.input.value.trim() });
      course.input.value = '';
      showInfo(msg, 'Training recorded.');
      await load();
    });
  });
  await load();
  return h('section', { class: 'card', id: 'training', 'aria-labelledby': 'training-h' }, h('h2', { id: 'training-h' }, 'Workforce training'), listBox, form);
}

/** Admins and compliance officers: what retention destroyed (`GET /retention/shreds`). */
async function shredsSection() {
  const card = h('section', { class: 'card', id: 'shreds', 'aria-labelledby': 'shreds-h' }, h('h2', { id: 'shreds-h' }, 'Destroyed under retention'),
    h('p', { class: 'muted' }, 'Each time expired content was destroyed: the conversation, how many messages, the period that applied and the horizon. The auditor\'s evidence.'));
  try {
    const r = await api.get('/retention/shreds?limit=50');
    card.append(r.items.length === 0 ? h('p', { class: 'muted' }, 'Nothing has been destroyed yet.')
      : eventTable('Shred records, newest first', r.items, [['When', (x) => new Date(x.shredded_at).toLocaleString()],
        ['Conversation', (x) => String(x.scope_id).slice(0, 8) + (x.whole ? ' (whole)' : '')], ['Messages', (x) => String(x.message_count)],
        ['Period', (x) => `${x.policy_kind}, ${x.policy_days} days`], ['Older than', (x) => new Date(x.horizon).toLocaleDateString()]]));
  } catch (e) {
    card.append(h('p', { class: 'form-message error' }, e.userMessage));
  }
  return card;
}

/** `#/admin/devices/reports`: the quarterly review, drift, spot checks, the posture policy and profile. */
async function deviceReportsPage() {
  setTitle('Device compliance');
  open = null;
  const mine = ++renderSeq;
  const admin = me.user.role === 'admin';
  const root = h('section', {}, h('h1', { class: 'pagehead' }, 'Device compliance'),
    h('p', {}, h('a', { href: '#/admin/devices' }, 'Back to devices')));
  mount(main, root);
  focusHeading(root);
  let devices = [];
  let dir = null;
  try { [devices, dir] = await Promise.all([api.get('/devices'), people().catch(() => null)]); } catch { /* names fall back to ids */ }
  if (mine !== renderSeq) return;
  const name = (id) => {
    const d = devices.find((x) => x.id === id);
    return d ? `${d.name} (${personName(dir, d.user_id)})` : 'Device ' + String(id).slice(0, 8);
  };
  root.append(await reviewSection(name), driftSection(name), postureHistorySection(devices, name), await spotCheckSection(name), await posturePolicySection(admin));
  if (admin) root.append(profileSection());
}

const stateName = (k) => DEVICE_STATES[k] || (k === 'unregistered' ? 'Not registered' : itemLabel(k));

async function reviewSection(name) {
  const card = h('section', { class: 'card', id: 'device-review', 'aria-labelledby': 'device-review-h' }, h('h2', { id: 'device-review-h' }, 'Quarterly review'));
  try {
    const r = await api.get('/device-reports/review');
    const s = r.summary || {};
    card.append(h('p', {}, `${s.devices || 0} registered device${s.devices === 1 ? '' : 's'} judged now; ${r.unregistered_devices} never registered (not judged). Computed ${new Date(r.generated_at).toLocaleString()}.`),
      eventTable('Devices per state', Object.entries(s.by_state || {}), [['State', ([k]) => stateName(k)], ['Devices', ([, n]) => String(n)]]),
      Object.keys(s.by_item || {}).length === 0 ? null : eventTable('Per setting', Object.entries(s.by_item), [['Setting', ([k]) => itemLabel(k)],
        ['Failing', ([, c]) => String(c.failing)], ['Not reported', ([, c]) => String(c.unknown)], ['Not applicable', ([, c]) => String(c.not_applicable)]]),
      h('p', {}, r.overdue_wipes.length === 0 ? 'No wipe is overdue.' : `Overdue wipes: ${r.overdue_wipes.map((w) => name(w.device_id)).join(', ')}.`),
      h('p', {}, r.latest_spot_check ? `Latest spot check: ${new Date(r.latest_spot_check.created_at).toLocaleDateString()}, ${r.latest_spot_check.sample.length} of ${r.latest_spot_check.population.length} devices.` : 'No spot check yet.'));
  } catch (e) {
    card.append(h('p', { class: 'form-message error' }, e.userMessage));
  }
  return card;
}

function driftSection(name) {
  const msg = messageBox();
  const days = field('Days back (1 to 3660)', { name: 'drift_days', inputmode: 'numeric', value: '92', maxlength: 4 });
  const box = h('div', { id: 'drift-result' });
  const form = h('form', { class: 'card', id: 'drift', novalidate: true, 'aria-labelledby': 'drift-h' }, h('h2', { id: 'drift-h' }, 'Drift'),
    h('p', { class: 'muted' }, 'Devices that left compliance or regained it in the period, and the settings that changed.'),
    h('div', { class: 'row' }, days, h('button', { type: 'submit' }, 'Show drift')), msg, box);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = days.input.value.trim();
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 3660) { showError(msg, { userMessage: 'The period is a whole number of days from 1 to 3660.' }); days.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const r = await api.get('/device-reports/drift?days=' + Number(v));
      msg.className = 'form-message';
      msg.textContent = '';
      const rows = r.devices.flatMap((d) => d.events.map((e) => ({ device: d.device_id, ...e })));
      mount(box, rows.length === 0 ? h('p', { class: 'muted' }, `No device crossed the compliance line since ${new Date(r.from).toLocaleDateString()}.`)
        : eventTable(`Crossings since ${new Date(r.from).toLocaleDateString()}`, rows, [['Device', (x) => name(x.device)], ['When', (x) => new Date(x.at_ms).toLocaleString()],
          ['What', (x) => (x.direction === 'regained' ? 'Regained compliance' : 'Left compliance') + `: ${stateName(x.from)} to ${stateName(x.to)}`],
          ['Settings', (x) => (x.changed || []).map((c) => `${itemLabel(c.item)} ${c.before} to ${c.after}`).join(', ') || '–']]));
    });
  });
  return form;
}

async function spotCheckSection(name) {
  const msg = messageBox();
  const percent = field('Share to check (percent, 10 to 100)', { name: 'spot_percent', inputmode: 'numeric', value: '10', maxlength: 3 });
  const seed = field('Seed (optional, to repeat a draw)', { name: 'spot_seed', inputmode: 'numeric', maxlength: 16 });
  const listBox = h('div', { id: 'spot-checks' });
  const form = h('form', { id: 'spot-check-form', novalidate: true, 'aria-labelledby': 'spot-add-h' }, h('h3', { id: 'spot-add-h' }, 'Draw a sample'),
    h('div', { class: 'row wrap' }, percent, seed), msg, h('button', { type: 'submit' }, 'Draw and record'));
  const load = async () => {
    try {
      const list = await api.get('/device-reports/spot-checks');
      mount(listBox, list.length === 0 ? h('p', { class: 'muted' }, 'No spot check recorded yet.')
        : eventTable('Recorded samples, newest first', list, [['Drawn', (x) => new Date(x.created_at).toLocaleString()], ['Share', (x) => x.percent + '%'],
          ['Seed', (x) => String(x.seed)], ['Devices to check', (x) => (x.sample.length ? x.sample.map(name).join(', ') : 'none (no registered device)')]]));
    } catch (e) { mount(listBox); showError(msg, e); }
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const p = percent.input.value.trim();
    const sd = seed.input.value.trim();
    if (!/^\d+$/.test(p) || Number(p) < 10 || Number(p) > 100) { showError(msg, { userMessage: 'The share is a whole percent from 10 to 100.' }); percent.input.focus(); return; }
    if (sd && (!/^\d+$/.test(sd) || !Number.isSafeInteger(Number(sd)))) { showError(msg, { userMessage: 'The seed is a whole number up to 9007199254740991, or empty to draw one.' }); seed.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const r = await api.post('/device-reports/spot-checks', sd ? { percent: Number(p), seed: Number(sd) } : { percent: Number(p) });
      showInfo(msg, `Recorded with seed ${r.seed}: check ${r.sample.length} of ${r.population.length} devices.`);
      await load();
    });
  });
  await load();
  return h('section', { class: 'card', id: 'spot', 'aria-labelledby': 'spot-h' }, h('h2', { id: 'spot-h' }, 'Spot checks'),
    h('p', { class: 'muted' }, 'A random sample of the registered devices to check by hand. The seed is recorded, so anyone can draw the same sample again.'), listBox, form);
}

async function posturePolicySection(admin) {
  const msg = messageBox();
  const form = h('form', { class: 'card', id: 'posture-policy', novalidate: true, 'aria-labelledby': 'posture-policy-h' }, h('h2', { id: 'posture-policy-h' }, 'Posture policy'));
  let pol;
  try { pol = await api.get('/org/device-policy'); } catch (e) { form.append(msg); showError(msg, e); return form; }
  const text = h('textarea', { id: 'f-posture_policy', name: 'posture_policy', rows: 12, spellcheck: 'false', readonly: admin ? null : true, class: 'code' });
  text.value = JSON.stringify(pol, null, 2);
  form.append(h('p', { class: 'muted' }, 'Per setting: record only, warn the user, or block PHI after a grace period; how soon a report goes stale; the minimum OS; whether an unreported setting fails. See docs/devices.md. Saving judges every device again at once.'),
    h('div', { class: 'field' }, h('label', { for: 'f-posture_policy' }, 'The policy (JSON)'), text), msg,
    admin ? h('button', { type: 'submit', class: 'primary' }, 'Save posture policy') : null);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    try { body = JSON.parse(text.value); } catch { showError(msg, { userMessage: 'The policy is not valid JSON.' }); text.focus(); return; }
    await submitForm(form, msg, async () => {
      const saved = await api.call('PUT', '/org/device-policy', body);
      text.value = JSON.stringify(saved, null, 2);
      showInfo(msg, 'Posture policy saved; every device was judged again.');
    });
  });
  return form;
}

/** A device's posture reports, newest first (`GET /devices/{id}/posture`). */
function postureHistorySection(devices, name) {
  const msg = messageBox();
  const registered = devices.filter((d) => d.registered_at);
  const which = field('Device', { name: 'history_device', tag: 'select', options: [['', 'Choose…'], ...registered.map((d) => [d.id, name(d.id)])] });
  const box = h('div', { id: 'posture-history' });
  const form = h('form', { class: 'card', id: 'posture-history-form', novalidate: true, 'aria-labelledby': 'posture-history-h' }, h('h2', { id: 'posture-history-h' }, 'Posture history'),
    h('p', { class: 'muted' }, 'Every report a device sent, with how it was judged when it arrived.'),
    h('div', { class: 'row' }, which, h('button', { type: 'submit' }, 'Show reports')), msg, box);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!which.input.value) { showError(msg, { userMessage: 'Choose a device.' }); which.input.focus(); return; }
    await submitForm(form, msg, async () => {
      const list = await api.get(`/devices/${which.input.value}/posture?limit=100`);
      msg.className = 'form-message';
      msg.textContent = '';
      mount(box, list.length === 0 ? h('p', { class: 'muted' }, 'No reports from this device.')
        : eventTable('Reports, newest first', list, [['Received', (x) => new Date(x.received_at).toLocaleString()],
          ['Judged', (x) => h('span', { class: 'state ' + (x.state === 'compliant' ? 'ok' : x.state === 'block_phi' ? 'blocked' : 'warn') }, stateName(x.state))],
          ['Failing settings', (x) => failingItems({ evaluation: x.evaluation }).join(', ') || '–']]));
    });
  });
  return form;
}

function profileSection() {
  const msg = messageBox();
  const prefix = field('Identifier prefix (reverse DNS, such as org.example)', { name: 'profile_prefix', maxlength: 200 });
  const form = h('form', { class: 'card', id: 'device-profile', novalidate: true, 'aria-labelledby': 'device-profile-h' }, h('h2', { id: 'device-profile-h' }, 'Configuration profile'),
    h('p', { class: 'muted' }, 'An unsigned .mobileconfig for Apple devices that enforces the baseline (passcode, auto-lock, encryption). Sign it before distribution.'),
    prefix, msg, h('button', { type: 'submit' }, 'Download profile'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = prefix.input.value.trim();
    if (!v) { showError(msg, { userMessage: 'Give the identifier prefix, such as org.example.' }); prefix.input.focus(); return; }
    await submitForm(form, msg, async () => {
      save(await api.file('/org/device-profile?org_prefix=' + encodeURIComponent(v)));
      showInfo(msg, 'Downloaded.');
    });
  });
  return form;
}

/** A register entry's Remove button: after a confirmation, `DELETE path` (audited), then reload. */
function registerRemove(path, what, msg, load) {
  return h('button', { type: 'button', class: 'link', 'aria-label': 'Remove ' + what, onclick: async () => {
    if (!(await ask(`Remove the ${what}? The register keeps no copy; the audit log records the removal.`, 'Remove'))) return;
    try { await api.del(path); showInfo(msg, 'Removed.'); await load(); } catch (e) { showError(msg, e); }
  } }, 'Remove');
}

/** RFC 9162 §2.1.3.2: whether `proof` takes the leaf hash at `index` to `root` in a tree of `size`. */
async function verifyInclusion(index, size, leaf, proof, root) {
  if (index >= size) return false;
  const node = async (l, r) => new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array([0x01, ...l, ...r])));
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && hex(r) === hex(root);
}

/**
 * An audit event's "Prove" button: checks in the browser that the event's leaf hash is in the
 * tree of the latest signed checkpoint (the checkpoint's signature checked too). The leaf hash
 * is the server's (`GET /audit/events`); recomputing it from the event's canonical encoding is
 * `ward audit verify`'s.
 */
function proveButton(x) {
  const cell = h('span', {});
  const b = h('button', { type: 'button', class: 'link', dataset: { idx: x.idx }, 'aria-label': `Prove event ${x.idx} is in the signed log` }, 'Prove');
  b.addEventListener('click', async () => {
    b.disabled = true;
    const say = (ok, text) => mount(cell, h('span', { class: 'state ' + (ok ? 'ok' : ok === null ? 'warn' : 'blocked'), role: 'status' }, text));
    try {
      const [cp, vk] = await Promise.all([api.get('/audit/checkpoint'), api.get('/audit/verifier-key')]);
      const sig = await checkNote(cp, vk.vkey);
      if (!sig.ok) return say(false, 'Checkpoint not verified: ' + sig.why);
      if (x.idx >= cp.size) return say(null, 'Not in a signed checkpoint yet');
      // Reports list events without their leaf hash: the event listing by index carries it.
      let leaf = x.leaf_hash;
      if (!leaf) {
        const page = await api.get(`/audit/events?limit=1${x.idx > 0 ? '&after=' + (x.idx - 1) : ''}`);
        const e = page.items[0];
        if (!e || e.idx !== x.idx || e.action !== x.action) return say(false, 'The log did not return this event');
        leaf = e.leaf_hash;
      }
      const p = await api.get(`/audit/proofs/inclusion?index=${x.idx}&tree_size=${cp.size}`);
      const ok = await verifyInclusion(x.idx, cp.size, bytes(leaf), p.hashes.map(bytes), bytes(cp.root));
      say(ok, ok ? `In the signed log (checkpoint of ${cp.size} events)` : 'The proof does not match the signed checkpoint');
    } catch (e) {
      b.disabled = false;
      mount(cell, b, h('span', { class: 'form-message error', role: 'alert' }, ' ', e.userMessage || 'The proof could not be checked.'));
    }
  });
  mount(cell, b);
  return cell;
}

// ---------------------------------------------------------------------------------------------
// Patient portal one-time links (#/link/<token>)
// ---------------------------------------------------------------------------------------------

/** Signs in with a one-time link from a notice (#/link/<token>) or the single sign-on
 * hand-over (#/sso/<token>). */
function linkSignIn() {
  const m = /^#\/(link|sso)\/([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
  if (!m) return false;
  if (m[1] === 'sso') return ssoFinish(m[2]);
  const token = m[2];
  return redeemOnce('Checking your sign-in link.', (device) => api.anonymous('POST', '/auth/link', { token, device }), 'invalid_portal_link',
    'That sign-in link has already been used or has expired. Sign in with your password, or ask your care team for a new link.');
}

/**
 * Exchanges a one-time token taken from the address (a portal link, a single sign-on
 * hand-over). The token leaves the address bar and the history entry before anything else
 * happens, lives only in this call, and is sent once by `redeem`; a second factor, if the
 * account has one, is asked for as after a password. A token the server calls spent or
 * expired (`expiredCode`) sends the user to the sign-in page with `expiredText`.
 */
function redeemOnce(note, redeem, expiredCode, expiredText) {
  history.replaceState(null, '', location.pathname + location.search);
  setTitle('Signing in');
  bar.hidden = true;
  const msg = messageBox();
  const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'link-h' },
    h('h1', { id: 'link-h' }, 'Signing you in'), h('p', {}, note), msg);
  mount(main, form);
  submitForm(form, msg, async () => {
    const r = await redeem({ name: 'Web browser', platform: 'web' });
    if (r.status === 'mfa_required') mfaPage(r.mfa_token);
    else await signedIn(r.tokens);
  }, { keep: true, onError: (e) => signInPage(e.code === expiredCode ? expiredText : e.userMessage) });
  return true;
}

// ---------------------------------------------------------------------------------------------
// Single sign-on (OpenID Connect): start at the organisation's provider, finish with the
// one-time hand-over the server leaves in #/sso/<token>; admins set the provider up under
// Provisioning
// ---------------------------------------------------------------------------------------------

function ssoStartPage() {
  setTitle('Single sign-on');
  bar.hidden = true;
  const msg = messageBox();
  const org = field('Organisation (its short name, as your administrator gave it)', { name: 'sso_org', required: true, maxlength: 64, autocomplete: 'organization' });
  const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'sso-h' },
    h('h1', { id: 'sso-h' }, 'Sign in with single sign-on'), org, msg,
    h('div', { class: 'row wrap' }, h('button', { type: 'submit', class: 'primary' }, 'Continue'),
      h('button', { type: 'button', onclick: () => signInPage() }, 'Back to password sign-in')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const slug = org.input.value.trim().toLowerCase();
    if (!/^[a-z0-9-]{1,64}$/.test(slug)) {
      showError(msg, { userMessage: 'Enter your organisation\'s short name (letters, digits and dashes).' });
      return;
    }
    // A full-page navigation: the provider's sign-in pages are not ours to frame.
    location.assign('/api/v1/auth/oidc/' + encodeURIComponent(slug) + '/start');
  });
  mount(main, form);
  org.input.focus();
}

/** Exchanges the hand-over once, like a portal link (the cookie set at the callback goes with it). */
function ssoFinish(token) {
  return redeemOnce('Finishing single sign-on.', (device) => api.anonymousWithCookies('POST', '/auth/oidc/complete', { token, device }),
    'oidc_handoff_invalid', 'That single sign-on attempt has expired. Start it again.');
}

/** The organisation's OpenID Connect provider (admins; saving asks for a step-up). */
function ssoSection() {
  const msg = messageBox();
  const issuer = field('Issuer URL (https)', { name: 'sso_issuer', required: true, maxlength: 500 });
  const clientId = field('Client ID', { name: 'sso_client_id', required: true, maxlength: 255 });
  const secret = field('Client secret (leave empty to keep the stored one)', { name: 'sso_secret', type: 'password', maxlength: 512, autocomplete: 'new-password' });
  const scopes = field('Extra scopes, separated by spaces (openid is always asked for)', { name: 'sso_scopes', maxlength: 500 });
  const claim = field('Claim with role or group names', { name: 'sso_claim', maxlength: 100, value: 'groups' });
  const map = field('Role mapping: one "claim value = role" per line (roles: clinician, nurse, staff, admin, compliance_officer)', { name: 'sso_map', tag: 'textarea', rows: 3, maxlength: 5000 });
  const jit = h('input', { type: 'checkbox', id: 'f-sso_jit', name: 'sso_jit' });
  const fallback = field('Role of a new account when no mapping matches', { name: 'sso_default', tag: 'select',
    options: [['', 'None: refuse the sign-in'], ['clinician', 'Clinician'], ['nurse', 'Nurse'], ['staff', 'Staff']] });
  const uris = h('div', { id: 'sso-uris', class: 'muted' });
  const form = h('form', { id: 'sso-form', novalidate: true, 'aria-labelledby': 'sso-form-h' },
    h('h3', { id: 'sso-form-h' }, 'Provider'), issuer, clientId, secret, scopes, claim, map,
    h('div', { class: 'field' }, h('label', { for: 'f-sso_jit' }, jit, ' Create an account the first time someone signs in')), fallback,
    msg, h('button', { type: 'submit', class: 'primary' }, 'Save provider'), uris);
  const section = h('section', { class: 'card', 'aria-labelledby': 'sso-h2' }, h('h2', { id: 'sso-h2' }, 'Single sign-on (OpenID Connect)'),
    h('p', { class: 'muted' }, 'Admin and compliance officer roles are given only by a mapping line that names them.'), form);
  const show = (p) => {
    issuer.input.value = p.issuer;
    clientId.input.value = p.client_id;
    scopes.input.value = p.scopes.join(' ');
    claim.input.value = p.role_claim;
    map.input.value = p.role_map.map((m) => `${m.value} = ${m.role}`).join('\n');
    jit.checked = p.jit_enabled;
    fallback.input.value = p.jit_default_role || '';
    mount(uris, p.public_url_required
      ? h('p', { role: 'alert' }, 'Single sign-on needs Ward\'s public address: set [oidc] public_url (or [portal] public_url) in the configuration, then register the redirect URI it gives.',
        p.has_client_secret ? ' A client secret is stored.' : '')
      : h('p', {}, 'Register at the provider: redirect URI ', h('code', {}, p.redirect_uri), ', back-channel logout URI ',
        h('code', {}, p.backchannel_logout_uri), p.has_client_secret ? '. A client secret is stored.' : '.'));
  };
  api.get('/admin/oidc').then(show, (e) => { if (e.code !== 'oidc_not_configured') showError(msg, e); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const lines = map.input.value.split('\n').map((l) => l.trim()).filter(Boolean);
    const roleMap = [];
    for (const l of lines) {
      const i = l.lastIndexOf('=');
      if (i < 1) { showError(msg, { userMessage: 'Write each mapping line as "claim value = role".' }); return; }
      roleMap.push({ value: l.slice(0, i).trim(), role: l.slice(i + 1).trim() });
    }
    const body = {
      issuer: issuer.input.value.trim(), client_id: clientId.input.value.trim(),
      scopes: scopes.input.value.split(/\s+/).filter(Boolean), role_claim: claim.input.value.trim() || 'groups',
      role_map: roleMap, jit_enabled: jit.checked, jit_default_role: fallback.input.value || null,
    };
    if (secret.input.value) body.client_secret = secret.input.value;
    await submitForm(form, msg, async () => {
      const p = await stepped(() => api.call('PUT', '/admin/oidc', body));
      secret.input.value = '';
      show(p);
      showInfo(msg, 'Single sign-on provider saved.');
      announce('Provider saved');
    });
  });
  return section;
}

/** A workforce account's single sign-on link (admin user page): shows whether the account is
 * linked to a provider subject, links it (or changes the subject) and unlinks it; both changes
 * ask for a step-up. */
function userSsoSection(id) {
  const msg = messageBox();
  const status = h('p', { id: 'user-sso-status' }, 'Loading…');
  const subject = field('Subject at the provider (the "sub" it sends for this person)', { name: 'sso_subject', required: true, maxlength: 255 });
  const submit = h('button', { type: 'submit' }, 'Link account');
  const form = h('form', { id: 'user-sso-form', class: 'row wrap', novalidate: true, 'aria-label': 'Link to a provider subject' }, subject, submit);
  const unlink = h('button', { type: 'button', class: 'danger', id: 'user-sso-unlink', hidden: true }, 'Unlink');
  const section = h('section', { id: 'user-sso', 'aria-labelledby': 'user-sso-h' }, h('h2', { id: 'user-sso-h' }, 'Single sign-on'),
    status, msg, form, h('div', { class: 'row' }, unlink));
  const load = async () => {
    const l = await api.get('/admin/oidc/links/' + id);
    mount(status, l.linked
      ? ['Linked to the provider subject ', h('code', {}, l.subject), ' since ', new Date(l.linked_at).toLocaleString(), '.']
      : ['Not linked: this person cannot sign in with single sign-on.'],
    l.provider_configured ? null : ' No provider is set up yet (Provisioning).');
    submit.textContent = l.linked ? 'Change subject' : 'Link account';
    unlink.hidden = !l.linked;
  };
  load().catch((e) => showError(msg, e));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const sub = subject.input.value.trim();
    if (!sub) { showError(msg, { userMessage: 'Enter the subject the provider sends for this person.' }); subject.input.focus(); return; }
    await submitForm(form, msg, async () => {
      await stepped(() => api.call('PUT', '/admin/oidc/links/' + id, { subject: sub }));
      subject.input.value = '';
      await load();
      showInfo(msg, 'Account linked.');
      announce('Account linked');
    });
  });
  unlink.addEventListener('click', async () => {
    if (!(await ask('Unlink this account? The person can no longer sign in with single sign-on; open sessions stay.', 'Unlink'))) return;
    try {
      await stepped(() => api.del('/admin/oidc/links/' + id));
      await load();
      showInfo(msg, 'Account unlinked.');
      announce('Account unlinked');
      unlink.blur();
      subject.input.focus();
    } catch (e) { showError(msg, e); }
  });
  return section;
}

window.addEventListener('hashchange', () => { if (!me) linkSignIn(); });

if (!linkSignIn()) signInPage();
