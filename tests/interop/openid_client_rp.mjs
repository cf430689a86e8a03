// A relying party built on panva's openid-client (v6, unmodified), driven by
// tests/interop/test_openid_client.py.
// Usage: node openid_client_rp.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI SCOPE ALG
//        POST_LOGOUT_REDIRECT_URI
// It prints one JSON line {"authorization_url": ...}, reads the callback URL (where the browser
// was sent back to) from stdin, then redeems the code, reads userinfo, refreshes, replays that
// refresh, builds its RP-Initiated Logout URL, and prints one JSON line with what it saw:
// {"ok": true, ...} or {"ok": false, ...}.
// Every ID token is validated by openid-client itself: signature (enableNonRepudiationChecks),
// iss, aud, azp, exp, iat, nonce; at_hash, which openid-client leaves to the RP in the code flow,
// is checked here with node's crypto as OIDC Core §3.1.3.8 describes.
import * as client from 'openid-client';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

const [issuer, clientId, clientSecret, redirectUri, scope, alg, postLogoutRedirectUri] =
  process.argv.slice(2);

function out(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function atHash(accessToken, idToken) {
  const header = JSON.parse(Buffer.from(idToken.split('.')[0], 'base64url').toString());
  const bits = { RS256: 'sha256', ES256: 'sha256', PS256: 'sha256', Ed25519: 'sha512', EdDSA: 'sha512' };
  const digest = createHash(bits[header.alg]).update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

async function readLine() {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return line.trim();
  }
  throw new Error('no callback URL on stdin');
}

function describe(tokens) {
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token ?? null,
    id_token: tokens.id_token ?? null,
    scope: tokens.scope ?? null,
    claims: tokens.claims() ?? null,
    at_hash: tokens.id_token ? atHash(tokens.access_token, tokens.id_token) : null,
  };
}

try {
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    { id_token_signed_response_alg: alg }, // the client's registered alg, checked by openid-client
    client.ClientSecretBasic(clientSecret),
    { execute: [client.allowInsecureRequests] }, // http on loopback only
  );
  client.enableNonRepudiationChecks(config); // verify every ID token's JWS signature (JWKS)

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const nonce = client.randomNonce();
  const state = client.randomState();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    nonce,
    state,
    prompt: 'consent', // offline_access needs the consent page (OIDC Core §11)
  });
  out({ authorization_url: authorizationUrl.href, nonce });

  const callback = new URL(await readLine());
  const first = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = first.claims();
  const userinfo = await client.fetchUserInfo(config, first.access_token, claims.sub);

  const refreshed = await client.refreshTokenGrant(config, first.refresh_token);
  // The same refresh token again, inside the leeway: Baton's replay answers the same pair.
  const replayed = await client.refreshTokenGrant(config, first.refresh_token);

  // RP-Initiated Logout 1.0 §2, as openid-client builds it (null without end_session_endpoint).
  const logoutState = client.randomState();
  const endSessionUrl = config.serverMetadata().end_session_endpoint
    ? client.buildEndSessionUrl(config, {
      id_token_hint: first.id_token,
      post_logout_redirect_uri: postLogoutRedirectUri,
      state: logoutState,
    }).href
    : null;

  out({
    ok: true,
    end_session_url: endSessionUrl,
    logout_state: logoutState,
    metadata: config.serverMetadata(),
    first: describe(first),
    userinfo,
    refreshed: describe(refreshed),
    replayed: describe(replayed),
  });
} catch (err) {
  out({ ok: false, error: String(err), code: err.code ?? null, cause: err.cause ?? null });
  process.exitCode = 1;
}
