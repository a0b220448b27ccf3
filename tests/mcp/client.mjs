// A real MCP client (the official TypeScript SDK) for Portcullis' end-to-end tests.
//
//   node client.mjs <streamable|sse> <url> <message> [token]
//
// Connects to <url> with the given transport, sending `Authorization: Bearer <token>` on
// every request when a token is given, lists the tools, calls `echo` with <message>, and
// prints one JSON object to stdout: {sessionId, endpoint, server, tools, echo}. On any failure it prints
// the error to stderr and exits 1.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [kind, url, message, token] = process.argv.slice(2);
if (!kind || !url || message === undefined) {
  console.error("usage: client.mjs <streamable|sse> <url> <message> [token]");
  process.exit(2);
}

const headers = token ? { Authorization: `Bearer ${token}` } : {};
const opts = { requestInit: { headers } };
let transport;
if (kind === "streamable") {
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
  // Leave the session open (no DELETE): the test checks it survives this client.
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
} catch (err) {
  console.error(`MCP client failed: ${err?.stack ?? err}`);
  if (err?.code !== undefined) console.error(`code: ${err.code}`);
  process.exit(1);
}
