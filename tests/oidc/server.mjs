// A real, certified OpenID Provider (panva's `oidc-provider`) for Portcullis' upstream-login
// tests. Only the end-user interaction is automated: instead of showing login and consent
// pages, the interaction endpoint signs in a configured user and grants what was asked, so a
// test (or the control plane under test) can run the authorization code flow without a
// browser. Everything else - discovery, PKCE, client authentication, tokens, ID Token
// signing, userinfo - is the library's own certified implementation.
//
// Usage: node server.mjs --port PORT [--host 127.0.0.1] [--config config.json]
//
// config.json (every key optional):
//   {
//     "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."]}],
//     "default_user": "alice",       // who logs in; null => the user cancels (access_denied)
//     "require_pkce": true,           // reject authorization requests without PKCE
//     "users": {"dave": {"email": "...", "email_verified": true, "name": "...",
//                        "preferred_username": "dave", "groups": ["..."]}}
//   }
// Client entries are oidc-provider client metadata (extra fields pass through).
//
// Which user logs in: the authorization request's `login_hint` if it names a known user,
// else the current user, which starts as `default_user` and can be changed at runtime with
// `POST /__test/current-user?user=NAME` (empty NAME: the next login is cancelled).
// The issuer is `http://HOST:PORT`; plain http is acceptable to oidc-provider for a loopback
// test issuer (cookies are simply not marked Secure).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    config: { type: 'string' },
  },
});

function fail(message) {
  console.error(`oidc test provider: ${message}`);
  process.exit(2);
}

const port = Number.parseInt(args.port ?? process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('--port PORT (1-65535) is required');
}

let config = {};
if (args.config) {
  try {
    config = JSON.parse(readFileSync(args.config, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${args.config}: ${err.message}`);
  }
}

// Fixed users. `sub` is deliberately unlike the username so a client that keys on the
// wrong claim is caught.
const users = {
  alice: {
    sub: 'c3a1e2f0-0001-4a11-9c00-a11ce0000001',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Liddell',
    preferred_username: 'alice',
    groups: ['admins', 'engineering'],
  },
  bob: {
    sub: 'c3a1e2f0-0002-4b22-9c00-b0b000000002',
    email: 'bob@example.com',
    email_verified: true,
    name: 'Bob Builder',
    preferred_username: 'bob',
    groups: ['engineering'],
  },
  carol: {
    sub: 'c3a1e2f0-0003-4c33-9c00-ca7010000003',
    email: 'carol@example.com',
    email_verified: false,
    name: 'Carol Unverified',
    preferred_username: 'carol',
    groups: [],
  },
};
for (const [name, claims] of Object.entries(config.users ?? {})) {
  users[name] = {
    sub: claims.sub ?? `sub-${name}`,
    preferred_username: name,
    groups: [],
    ...claims,
  };
}
const bySub = new Map(Object.entries(users).map(([name, u]) => [u.sub, name]));

let currentUser = config.default_user === undefined ? 'alice' : config.default_user;
if (currentUser !== null && !users[currentUser]) {
  fail(`default_user ${JSON.stringify(currentUser)} is not a known user (${Object.keys(users).join(', ')})`);
}

const clients = (config.clients ?? []).map((c) => {
  if (!c.client_id || !c.client_secret || !Array.isArray(c.redirect_uris) || !c.redirect_uris.length) {
    fail(`each client needs client_id, client_secret and redirect_uris: ${JSON.stringify(c)}`);
  }
  return { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], ...c };
});

// A fresh signing key per run: tests must fetch the JWKS, as real relying parties do.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const issuer = `http://${args.host}:${port}`;
const requirePkce = config.require_pkce ?? true;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  pkce: { required: () => requirePkce },
  // Explicit lifetimes (the library warns about its defaults); long enough for any test.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
    RefreshToken: 86400,
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  async findAccount(ctx, sub) {
    const name = bySub.get(sub);
    if (!name) return undefined;
    const user = users[name];
    return {
      accountId: sub,
      async claims() {
        return { ...user };
      },
    };
  },
  interactions: {
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
});

// The automated end user: login picks the user, consent grants everything requested.
async function interaction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    const hinted = typeof params.login_hint === 'string' && users[params.login_hint] ? params.login_hint : null;
    const name = hinted ?? currentUser;
    result = name
      ? { login: { accountId: users[name].sub } }
      : { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    ctx.status = 400;
    ctx.body = `unsupported interaction prompt ${prompt.name}`;
    return;
  }
  ctx.respond = false;
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([\w-]+)$/.exec(ctx.path);
  if (match && ctx.method === 'GET') {
    return interaction(ctx);
  }
  if (ctx.path === '/__test/current-user' && ctx.method === 'POST') {
    const name = ctx.query.user ?? '';
    if (name !== '' && !users[name]) {
      ctx.status = 400;
      ctx.body = `unknown user ${JSON.stringify(name)}; known: ${Object.keys(users).join(', ')}`;
      return undefined;
    }
    currentUser = name === '' ? null : name;
    ctx.status = 204;
    return undefined;
  }
  return next();
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, args.host, () => {
  console.log(JSON.stringify({ issuer }));
});
server.on('error', (err) => fail(`listen ${args.host}:${port}: ${err.message}`));
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
