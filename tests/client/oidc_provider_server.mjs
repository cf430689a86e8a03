// node-oidc-provider on loopback for the SDK tests: refresh tokens rotate on every use.
// Usage: node oidc_provider_server.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  cookies: { keys: ['baton-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  ttl: { AccessToken: 60, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
});
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
