// A real MCP client (the official TypeScript SDK) for Portcullis' end-to-end tests.
//
//   node client.mjs <streamable|sse> <url> <message> [token]
//
// Connects to <url> with the given transport, sending `Authorization: Bearer <token>` on
// every request when a token is given, lists the tools, calls `echo` with <message>, and
// prints one JSON object to stdout: {sessionId, endpoint, server, tools, echo}. On any
// failure it prints the error to stderr and exits 1.
//
//   node client.mjs streamable-oauth <url> <message> <redirect uri>
//
// Lets the SDK do the whole MCP authorization itself (Streamable HTTP): on the 401 it
// discovers the protected resource and authorization server metadata, registers a client
// (RFC 7591) and builds the PKCE authorization request with the resource indicator. The
// user's part is left to the caller: the client prints {"authorize": url} on one line and
// reads the redirect URL the browser ended at (with ?code=) on stdin; then it exchanges the
// code, connects with the token and does the same as above, adding {token} to its output.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [kind, url, message, token] = process.argv.slice(2);
if (!kind || !url || message === undefined) {
  console.error("usage: client.mjs <streamable|sse|streamable-oauth> <url> <message> [token|redirect uri]");
  process.exit(2);
}

/** An OAuthClientProvider keeping everything in memory; the "browser" is the caller. */
class TestProvider {
  constructor(redirect) {
    this._redirect = redirect;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
  }
  get redirectUrl() {
    return this._redirect;
  }
  get clientMetadata() {
    return {
      client_name: "portcullis-e2e (MCP SDK)",
      redirect_uris: [this._redirect],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  redirectToAuthorization(url) {
    process.stdout.write(JSON.stringify({ authorize: url.href }) + "\n");
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
}

async function readLine() {
  process.stdin.setEncoding("utf8");
  let buf = "";
  for await (const chunk of process.stdin) {
    buf += chunk;
    const nl = buf.indexOf("\n");
    if (nl >= 0) return buf.slice(0, nl).trim();
  }
  return buf.trim();
}

const headers = token && kind !== "streamable-oauth" ? { Authorization: `Bearer ${token}` } : {};
const opts = { requestInit: { headers } };
let transport;
let provider;
if (kind === "streamable-oauth") {
  provider = new TestProvider(token);
  const first = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  try {
    await new Client({ name: "portcullis-e2e", version: "1.0.0" }).connect(first);
    console.error("connected without authorization: the server is not protected");
    process.exit(1);
  } catch (err) {
    if (err?.name !== "UnauthorizedError" && !(err instanceof Error && /Unauthorized/.test(err.message))) {
      console.error(`MCP client failed before authorization: ${err?.stack ?? err}`);
      process.exit(1);
    }
  }
  const back = new URL(await readLine());
  const code = back.searchParams.get("code");
  if (!code) {
    console.error(`no code in ${back.href}`);
    process.exit(1);
  }
  try {
    await first.finishAuth(code);
  } catch (err) {
    console.error(`token exchange failed: ${err?.stack ?? err}`);
    process.exit(1);
  }
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
} else if (kind === "streamable") {
  transport = new StreamableHTTPClientTransport(new URL(url), opts);
} else if (kind === "sse") {
  transport = new SSEClientTransport(new URL(url), opts);
} else {
  console.error(`unknown transport ${kind}`);
  process.exit(2);
}

const client = new Client({ name: "portcullis-e2e", version: "1.0.0" });
try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  const result = await client.callTool({ name: "echo", arguments: { message } });
  const out = {
    sessionId: transport.sessionId ?? null,
    // Where the legacy SSE transport was told to POST its messages.
    endpoint: transport._endpoint?.href ?? null,
    server: client.getServerVersion() ?? null,
    tools: tools.map((t) => t.name),
    echo: result.content,
  };
  if (provider) out.token = provider.tokens()?.access_token ?? null;
  // Leave the session open (no DELETE): the test checks it survives this client.
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
} catch (err) {
  console.error(`MCP client failed: ${err?.stack ?? err}`);
  if (err?.code !== undefined) console.error(`code: ${err.code}`);
  process.exit(1);
}
