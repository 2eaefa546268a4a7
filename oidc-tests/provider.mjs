// A real OpenID Connect provider (node-oidc-provider) for Ward's single sign-on tests,
// started by crates/ward-server/tests/oidc.rs. It listens on 127.0.0.1, port 0, and prints
// one JSON line with its issuer once it is ready.
//
// Environment:
//   WARD_URL   Ward's address (https://127.0.0.1:<port>): the client's redirect URI and
//              back-channel logout URI are derived from it.
//   WARD_ORG   the organisation slug in the back-channel logout URI.
//   NODE_EXTRA_CA_CERTS  Ward's self-signed certificate, so back-channel logout calls trust it.
//
// Accounts: any login name signs in (the development login form accepts any password). The
// `groups` claim is ["ward-nurses"] for names containing "nurse", ["ward-admins"] for names
// containing "boss", else ["other"]; `name` is "Test <login>".
import http from 'node:http';
import Provider from 'oidc-provider';

const ward = process.env.WARD_URL;
const org = process.env.WARD_ORG;
if (!ward || !org) {
  console.error('WARD_URL and WARD_ORG are required');
  process.exit(2);
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

function groupsOf(id) {
  if (id.includes('nurse')) return ['ward-nurses'];
  if (id.includes('boss')) return ['ward-admins'];
  return ['other'];
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'ward',
    client_secret: 'ward-test-secret',
    redirect_uris: [`${ward}/api/v1/auth/oidc/callback`],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_logout_uri: `${ward}/api/v1/auth/oidc/${org}/backchannel-logout`,
    backchannel_logout_session_required: true,
  }],
  claims: { openid: ['sub'], profile: ['name'], groups: ['groups'] },
  // Scope-requested claims go into the ID token (Ward reads roles from there).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  // The provider refuses to call loopback addresses (SSRF protection); Ward runs on 127.0.0.1
  // in the tests, so its back-channel logout calls go through the plain global fetch.
  fetch: (url, options) => {
    delete options.dispatcher;
    return fetch(url, options);
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: `Test ${id}`, groups: groupsOf(id) };
      },
    };
  },
});

provider.on('backchannel.error', (ctx, err) => console.error(`backchannel.error: ${err.message} ${err.cause ? err.cause.code || err.cause.message : ''}`));
provider.on('backchannel.success', () => console.error('backchannel.success'));
provider.on('server_error', (ctx, err) => console.error(`server_error: ${err.stack}`));

// Test hook: a logout token exactly as the provider signs them for back-channel logout
// (same code path as node-oidc-provider's own), for tests that replay one.
// GET /test/logout-token?sub=...&sid=...
const callback = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname !== '/test/logout-token') {
    callback(req, res);
    return;
  }
  const client = await provider.Client.find('ward');
  const token = new provider.IdToken({ sub: url.searchParams.get('sub') }, { client, ctx: undefined });
  token.mask = { sub: null };
  token.set('events', { 'http://schemas.openid.net/event/backchannel-logout': {} });
  token.set('jti', `test-${Date.now()}-${Math.random()}`);
  if (url.searchParams.get('sid')) token.set('sid', url.searchParams.get('sid'));
  res.setHeader('content-type', 'text/plain');
  res.end(await token.issue({ use: 'logout' }));
});
console.log(JSON.stringify({ issuer, port }));
