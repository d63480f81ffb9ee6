// A TypeScript SDK client that finds its way in as the MCP authorization
// spec has it: Airlock answers 401 with the protected resource metadata's
// URL, the SDK reads it, finds the authorization server, gets an access
// token for Airlock's resource with client credentials, and calls again.
//
//   node oauth-client.mjs URL CLIENT_ID CLIENT_SECRET ISSUER TOOL ARGS_JSON
//
// It prints one JSON line: the tool result, or the error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";

const [url, clientId, clientSecret, issuer, tool, args] = process.argv.slice(2);
const emit = (o) => console.log(JSON.stringify(o));
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer: issuer, scope: "mcp" });
const client = new Client({ name: "ts-oauth-test", version: "1.0.0" });
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider }));
  const res = await client.callTool({ name: tool, arguments: JSON.parse(args) }, undefined, { timeout: 60000 });
  emit({ isError: !!res.isError, text: res.content.map((c) => c.text).join("\n") });
  await client.close();
} catch (e) {
  emit({ error: String(e) });
}
