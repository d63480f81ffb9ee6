// A real OAuth 2.1 authorization server for Airlock's tests: npm's
// oidc-provider on a loopback port, issuing access tokens by client
// credentials for the resource a client names (RFC 8707), as JWTs whose
// aud is that resource (RFC 9068), or as opaque tokens to introspect
// (RFC 7662). relay/auth/authtest starts it.
//
//   node oidc-provider.mjs CONFIG_JSON
//
// CONFIG_JSON: {"port": 0, "format": "jwt"|"opaque", "alg": "RS256",
//   "scopes": ["mcp", "other"],
//   "clients": [{"id": "...", "secret": "...", "groups": ["..."], "email": "..."}]}
//
// The signing keys are made at start, so a restart on the same port is a
// key rotation. It prints one JSON line, {"issuer": "..."}, once it listens,
// and runs until its stdin closes (so it never outlives the test).
import { createServer } from "node:http";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import Provider from "oidc-provider";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const scopes = cfg.scopes ?? ["mcp", "other"];
const alg = cfg.alg ?? "RS256";

function key(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), alg, use: "sig" };
}
// RS256 signs ID tokens (oidc-provider's default); the access token's
// algorithm picks its own key among these.
const keys = [key("rsa", { modulusLength: 2048 }, "RS256")];
if (alg === "ES256") keys.push(key("ec", { namedCurve: "P-256" }, "ES256"));
if (alg === "PS256") keys.push(key("rsa", { modulusLength: 2048 }, "PS256"));
if (alg === "EdDSA") keys.push(key("ed25519", {}, "EdDSA"));

const byClient = new Map((cfg.clients ?? []).map((c) => [c.id, c]));

const server = createServer();
server.listen(cfg.port ?? 0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: (cfg.clients ?? []).map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      scope: scopes.join(" "),
    })),
    jwks: { keys },
    cookies: { keys: [randomUUID()] },
    scopes,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: scopes.join(" "),
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: cfg.format ?? "jwt",
          jwt: { sign: { alg } },
        }),
      },
    },
    extraTokenClaims: (_ctx, token) => {
      const c = byClient.get(token.clientId);
      if (!c) return undefined;
      const extra = {};
      if (c.groups) extra.groups = c.groups;
      if (c.email) extra.email = c.email;
      return extra;
    },
  });
  provider.on("server_error", (_ctx, err) => console.error("server_error", err));
  server.on("request", provider.callback());
  console.log(JSON.stringify({ issuer }));
});

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
