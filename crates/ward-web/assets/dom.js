// DOM helpers. Text always goes in as text nodes, never as HTML: nothing the API returns can
// become markup or script.

/** Builds an element: h('button', {type: 'button', onclick: f}, 'Send'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A labelled form field; returns the wrapper (the input is reachable via .input). */
export function field(label, attrs) {
  const id = attrs.id || 'f-' + attrs.name;
  const input = attrs.tag === 'select'
    ? h('select', { id, name: attrs.name, required: attrs.required }, ...(attrs.options || []).map(([v, t]) => h('option', { value: v, selected: v === attrs.value }, t)))
    : attrs.tag === 'textarea'
      ? h('textarea', { id, name: attrs.name, required: attrs.required, rows: attrs.rows || 2, maxlength: attrs.maxlength })
      : h('input', { id, name: attrs.name, type: attrs.type || 'text', required: attrs.required, autocomplete: attrs.autocomplete || 'off',
          inputmode: attrs.inputmode, value: attrs.value, maxlength: attrs.maxlength });
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input);
  wrap.input = input;
  return wrap;
}

/** A form's message area: errors are announced to screen readers. */
export function messageBox() {
  return h('p', { class: 'form-message', role: 'alert', 'aria-live': 'assertive' });
}

/** Shows an error (an ApiError or any Error) in a message box, as words, never raw JSON. */
export function showError(box, e) {
  box.className = 'form-message error';
  box.textContent = e && e.userMessage ? e.userMessage : 'Something went wrong. Please try again.';
}

export function showInfo(box, text) {
  box.className = 'form-message info';
  box.textContent = text;
}

/** Today's date in the browser's own time zone, as `YYYY-MM-DD` (not UTC's). */
export function localDay(d = new Date()) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** "3 min ago" style time, with the exact time as a tooltip. */
export function time(iso) {
  const d = new Date(iso);
  return h('time', { datetime: iso, title: d.toLocaleString() }, d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
}

/** Marks a form as working: its buttons are disabled and it says so to assistive technology. */
export function busy(form, on) {
  for (const b of form.querySelectorAll('button')) b.disabled = on;
  form.setAttribute('aria-busy', on ? 'true' : 'false');
}

/**
 * Runs a form's request with the form busy. A failure is shown in `box` as words (then
 * `onError(e)` may clear a field or say it better) and the form is usable again. After
 * success the form is usable again too, unless `keep` (the page replaces it).
 */
export async function submitForm(form, box, work, { keep = false, onError } = {}) {
  busy(form, true);
  try {
    await work();
  } catch (e) {
    showError(box, e);
    if (onError) onError(e);
    busy(form, false);
    return;
  }
  if (!keep) busy(form, false);
}
