// The TypeScript MCP SDK's client (@modelcontextprotocol/sdk from npm, 1.x, unmodified) against an
// MCP server protected by Baton, driven line by line by tests/interop/test_mcp_typescript_sdk.py.
//
// argv: MCP_URL MODE REDIRECT_URI CLIENT_ID ROTATIONS
//   MODE "registration": RFC 7591 dynamic registration (the SDK registers at Baton's /register);
//   MODE "preregistered": CLIENT_ID, made by `baton client create --public`;
//   MODE "document": CLIENT_ID is the https URL of the client's metadata document.
//
// stdout, one JSON object a line:
//   {"authorize": URL}        the SDK's redirectToAuthorization: the test takes Baton's pages and
//                             answers on stdin with {"callback": URL} (the redirect it got)
//   {"called": {...}, ...}    a tool call's answer, and the digest of the tokens it went with
//   {"ready": "stop"}         rotations done: the test stops Baton and answers {"go": true}
//   {"stopped": [...]}        the calls made with Baton stopped: what each one raised
//   {"done": {...}}           how many authorizations the SDK started, what it registered
// Tokens never leave the process: only their SHA-256 prefixes are printed.

import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'

const [mcpUrl, mode, redirectUri, clientId, rotationsArg] = process.argv.slice(2)
const rotations = Number(rotationsArg)

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function answer() {
  const { value, done } = await lines.next()
  if (done) throw new Error('stdin closed')
  return JSON.parse(value)
}
function say(object) {
  process.stdout.write(JSON.stringify(object) + '\n')
}
const digest = (value) => (value ? createHash('sha256').update(value).digest('hex').slice(0, 16) : null)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class MemoryProvider {
  constructor() {
    this.authorizations = 0
    this.saved = []
    this.information =
      mode === 'preregistered'
        ? { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }
        : undefined
    this.registered = undefined
    this._tokens = undefined
    this._verifier = undefined
    this.callback = undefined
    if (mode === 'document') this.clientMetadataUrl = clientId
  }
  get redirectUrl() {
    return redirectUri
  }
  get clientMetadata() {
    return {
      client_name: `MCP e2e (TypeScript SDK, ${mode})`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }
  }
  clientInformation() {
    return this.information
  }
  saveClientInformation(information) {
    this.information = information
    if (mode === 'registration') this.registered = information.client_id
  }
  tokens() {
    return this._tokens
  }
  saveTokens(tokens) {
    this._tokens = tokens
    this.savedAt = Date.now()
    this.saved.push({ access: digest(tokens.access_token), refresh: digest(tokens.refresh_token), expires_in: tokens.expires_in })
  }
  async redirectToAuthorization(url) {
    this.authorizations += 1
    say({ authorize: url.toString() })
    const { callback } = await answer()
    this.callback = new URL(callback)
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier
  }
  codeVerifier() {
    return this._verifier
  }
}

const provider = new MemoryProvider()

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider })
  const client = new Client({ name: 'baton-e2e-typescript', version: '1.0.0' })
  try {
    await client.connect(transport)
    return client
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || provider.callback === undefined) throw error
  }
  const params = provider.callback.searchParams
  provider.callback = undefined
  if (!params.get('code')) throw new Error(`no code in the redirect: ${params}`)
  await transport.finishAuth(params.get('code'))
  const again = new Client({ name: 'baton-e2e-typescript', version: '1.0.0' })
  await again.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }))
  return again
}

async function whoami(client) {
  const result = await client.callTool({ name: 'whoami', arguments: {} })
  if (result.isError) throw new Error(`whoami failed: ${JSON.stringify(result)}`)
  return result.structuredContent?.result ?? result.structuredContent
}

// Baton starts a token's lifetime at the next whole second (its `exp` is a whole second, and
// `expires_in` is counted from there): the token is dead once that second plus `expires_in` is
// past. Unlike the Python SDK, this one refreshes only when the MCP server answers 401.
async function untilExpired() {
  const start = Math.ceil(provider.savedAt / 1000) * 1000
  const exp = start + Number(provider._tokens?.expires_in ?? 1) * 1000
  await sleep(Math.max(0, exp - Date.now() + 50))
}

try {
  const client = await connect()
  say({ called: await whoami(client), step: 'first', tokens: provider.saved.at(-1) })
  for (let i = 0; i < rotations; i += 1) {
    await untilExpired() // the MCP server now answers 401: the SDK refreshes and retries
    say({ called: await whoami(client), step: `rotation ${i + 1}`, tokens: provider.saved.at(-1) })
  }
  say({ ready: 'stop' })
  await answer()
  // Two calls with Baton stopped: whether the access token is still good or not, this SDK sends
  // it (it refreshes only on a 401), so both must meet the MCP server's 503.
  const stopped = []
  for (const when of ['first', 'second']) {
    try {
      await whoami(client)
      stopped.push({ when, raised: null })
    } catch (error) {
      stopped.push({ when, raised: `${error?.constructor?.name}: ${error?.message}`, code: error?.code ?? null })
    }
  }
  say({ stopped })
  await client.close().catch(() => {})
  say({
    done: {
      authorizations: provider.authorizations,
      registered: provider.registered ?? null,
      client_id: provider.information?.client_id ?? null,
      saved: provider.saved,
    },
  })
  process.exit(0)
} catch (error) {
  say({ failed: `${error?.constructor?.name}: ${error?.message}`, stack: error?.stack })
  process.exit(1)
}
