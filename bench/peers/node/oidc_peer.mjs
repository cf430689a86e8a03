// node-oidc-provider, the peer for bench/compare.py: refresh tokens rotate on every exchange
// (rotateRefreshToken: true), RFC 7662 introspection and RFC 7009 revocation are on, and one
// confidential client authenticates with client_secret_basic (its secret compared as issued).
//
// Usage: node oidc_peer.mjs PORT GRANTS OUT_JSON
// Seeds GRANTS grants (each with an access token and a refresh token) through the provider's own
// models before listening, writes {client_id, client_secret, pairs} to OUT_JSON, then prints
// "listening". The script is copied next to node_modules under bench/.scratch/node (ES modules
// resolve packages from the script's folder).
//
// Storage: the provider's own in-memory adapter is an LRU of 1,000 entries, too small to hold the
// seeded tokens, so this one keeps them in a plain Map with the same semantics (grant members,
// consume, revokeByGrantId). It is per process, so the peer runs as one process: it cannot share
// the adapter with a second worker.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const [port, grantCount, outFile] = process.argv.slice(2);
const store = new Map();
const grantKey = (id) => `grant:${id}`;
const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);

class MapAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (grantable.has(this.model) && payload.grantId) {
      const members = store.get(grantKey(payload.grantId)) ?? new Set();
      members.add(key);
      store.set(grantKey(payload.grantId), members);
    }
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid() { return undefined; }

  async findByUserCode() { return undefined; }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of store.get(grantKey(grantId)) ?? []) store.delete(key);
    store.delete(grantKey(grantId));
  }
}

// No openid scope: an OAuth 2.0 deployment, so no ID token (an RS256 signature) per exchange.
const SCOPE = 'offline_access';
const clientId = `bench-${randomBytes(6).toString('hex')}`;
const clientSecret = randomBytes(32).toString('base64url');
const sameClient = async (ctx, client, token) => token.clientId === client.clientId;
const provider = new Provider(`http://127.0.0.1:${port}`, {
  adapter: MapAdapter,
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: ['http://127.0.0.1:9000/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  cookies: { keys: [randomBytes(16).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true, allowedPolicy: sameClient },
    revocation: { enabled: true, allowedPolicy: sameClient },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  ttl: { AccessToken: 3600, RefreshToken: 86400, Grant: 86400, Session: 86400 },
});

const client = await provider.Client.find(clientId);
const pairs = [];
for (let i = 0; i < Number(grantCount); i += 1) {
  const grant = new provider.Grant({ accountId: 'bench-user', clientId });
  grant.addOIDCScope(SCOPE);
  const grantId = await grant.save();
  const common = { accountId: 'bench-user', client, grantId, scope: SCOPE };
  const access = await new provider.AccessToken({ ...common, gty: 'authorization_code' }).save();
  const refresh = await new provider.RefreshToken({
    ...common, gty: 'authorization_code', iiat: Math.floor(Date.now() / 1000),
  }).save();
  pairs.push([access, refresh]);
}
writeFileSync(outFile, JSON.stringify({ client_id: clientId, client_secret: clientSecret, pairs }));
provider.listen(Number(port), '127.0.0.1', () => { console.log('listening'); });
