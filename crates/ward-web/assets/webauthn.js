// Security keys and passkeys: the browser's WebAuthn API with the options Ward's API sends.
// The API sends binary fields (challenge, user id, credential ids) as unpadded base64url, and
// wants the browser's answer back the same way; the browser works in ArrayBuffers.

function fromB64u(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
}

function toB64u(buf) {
  let s = '';
  for (const x of new Uint8Array(buf)) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64u(c.id) }));

/** A refusal of the browser or the authenticator, as a sentence (the shape of an ApiError). */
function browserError(e, creating) {
  const name = e && e.name;
  const text = name === 'NotAllowedError' ? 'The security key or passkey did not answer, or the request was cancelled. Try again.'
    : name === 'InvalidStateError' && creating ? 'This security key or passkey is already registered to your account.'
      : name === 'SecurityError' ? 'This browser refused to use a security key for this address.'
        : name === 'NotSupportedError' ? 'This security key or passkey does not support what Ward asks for.'
          : 'The security key or passkey could not be used. Try again.';
  return { userMessage: text, code: 'webauthn_browser', name };
}

export function supported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

function unsupported() {
  return { userMessage: 'This browser cannot use security keys or passkeys.', code: 'webauthn_browser' };
}

/** Registers a new credential with the options of `POST /me/webauthn/registrations`. */
export async function create(options) {
  if (!supported()) throw unsupported();
  const pk = options.publicKey;
  const publicKey = { ...pk, challenge: fromB64u(pk.challenge), user: { ...pk.user, id: fromB64u(pk.user.id) }, excludeCredentials: withIds(pk.excludeCredentials) };
  let c;
  try { c = await navigator.credentials.create({ publicKey }); } catch (e) { throw browserError(e, true); }
  const r = c.response;
  return {
    id: c.id, rawId: toB64u(c.rawId), type: c.type,
    response: {
      attestationObject: toB64u(r.attestationObject), clientDataJSON: toB64u(r.clientDataJSON),
      transports: typeof r.getTransports === 'function' ? r.getTransports() : undefined,
    },
  };
}

/** Answers a sign-in or step-up challenge (a `CeremonyOptions.options`). */
export async function get(options) {
  if (!supported()) throw unsupported();
  const pk = options.publicKey;
  const publicKey = { ...pk, challenge: fromB64u(pk.challenge), allowCredentials: withIds(pk.allowCredentials) };
  let c;
  try { c = await navigator.credentials.get({ publicKey }); } catch (e) { throw browserError(e, false); }
  const r = c.response;
  return {
    id: c.id, rawId: toB64u(c.rawId), type: c.type,
    response: {
      authenticatorData: toB64u(r.authenticatorData), clientDataJSON: toB64u(r.clientDataJSON), signature: toB64u(r.signature),
      userHandle: r.userHandle ? toB64u(r.userHandle) : undefined,
    },
  };
}
