// A real OpenID Connect provider for the auth service's tests and the
// launcher's browser test: oidc-provider (a certified implementation) with
// one confidential client, PKCE required, and interactions that sign an
// account in without a form.
//
//   CLIENT_ID=... CLIENT_SECRET=... node server.js
//
// It listens on a free loopback port and prints one JSON line,
// {"issuer": "http://127.0.0.1:PORT"}; it exits when its stdin closes (the
// test process that started it is gone).
//
// Accounts: the account signed in is the authorize request's `login_hint`,
// or DEFAULT_ACCOUNT, or alice@example.com. `ADDRESS` is an account whose
// email is ADDRESS, verified; `unverified:ADDRESS` one whose email is not
// verified. The subject is the account name itself.
//
// Test-only relaxation: any http://127.0.0.1:PORT/v1/oauth/NAME/callback
// or http://localhost:PORT/... is an allowed redirect URI, since every test
// server listens on a port of its own. Everything else (state, nonce,
// PKCE S256, client authentication, code single use, ID token signing) is
// the library's.
import http from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.CLIENT_ID || 'test-client';
const clientSecret = process.env.CLIENT_SECRET || 'test-client-secret-for-the-test-provider';
const defaultAccount = process.env.DEFAULT_ACCOUNT || 'alice@example.com';

function claimsOf(accountId) {
  const unverified = accountId.startsWith('unverified:');
  const email = unverified ? accountId.slice('unverified:'.length) : accountId;
  return {
    sub: accountId,
    email,
    email_verified: !unverified,
    name: email.split('@')[0],
  };
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: ['http://127.0.0.1/v1/oauth/test/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => claimsOf(id),
    }),
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['the test provider signs its own cookies with this'] },
    ttl: { Session: 60, Interaction: 600, Grant: 600, AccessToken: 600, AuthorizationCode: 60, IdToken: 600 },
  });
  provider.proxy = false;
  const allowed = /^http:\/\/(127\.0\.0\.1|localhost):\d+\/v1\/oauth\/[a-z0-9-]+\/callback$/;
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(uri) {
    return allowed.test(uri);
  };

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const match = req.url.match(/^\/interaction\/([^/?]+)/);
    if (!match) {
      callback(req, res);
      return;
    }
    try {
      const details = await provider.interactionDetails(req, res);
      const { prompt, params } = details;
      if (prompt.name === 'login') {
        const accountId = params.login_hint || defaultAccount;
        await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
        return;
      }
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      grant.addOIDCScope(params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
