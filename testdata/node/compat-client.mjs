// A TypeScript SDK client for Airlock's client-compatibility suite
// (TestClientCompat). It connects over the transport its arguments name:
//
//   http URL              streamable HTTP to URL
//   stdio COMMAND ARGS…   starts COMMAND (airlock wrap …) over stdio
//
// then reads commands from stdin, one JSON object a line:
//
//   {"op":"call","id":"a","timeout":ms,"progress":bool,"reset":bool,"task":bool}
//       calls the "write" tool with {"n":1}: with onprogress when progress,
//       resetTimeoutOnProgress when reset, as a task when task
//   {"op":"abort","id":"a"}   aborts call a (AbortController)
//   {"op":"exit"}             closes the client and exits
//
// and prints what each call got as one JSON line: {"id", "isError",
// "text", "progress"} or {"id", "error"}; a task call prints each message
// of its stream ({"id", "type", "status", "statusMessage"}, then a result
// or error line).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { createInterface } from "node:readline";

const [transport, ...rest] = process.argv.slice(2);
const emit = (o) => console.log(JSON.stringify(o));
const text = (r) => r.content.map((c) => c.text).join("\n");

const client = new Client({ name: "ts-compat-test", version: "1.0.0" });
if (transport === "http") {
  await client.connect(new StreamableHTTPClientTransport(new URL(rest[0])));
} else {
  const [command, ...args] = rest;
  await client.connect(new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" }));
}
await client.listTools(); // so that the SDK knows which tools take tasks
emit({ ready: true });

const aborts = new Map();

async function call(c) {
  const abort = new AbortController();
  aborts.set(c.id, abort);
  let progress = 0;
  const options = { timeout: c.timeout, signal: abort.signal, resetTimeoutOnProgress: !!c.reset };
  if (c.progress) options.onprogress = () => { progress++; };
  const params = { name: "write", arguments: { n: 1 } };
  try {
    if (c.task) {
      const stream = client.experimental.tasks.callToolStream(params, undefined, { ...options, task: { ttl: 600000 } });
      for await (const m of stream) {
        switch (m.type) {
          case "taskCreated":
          case "taskStatus":
            emit({ id: c.id, type: m.type, taskId: m.task.taskId, status: m.task.status, statusMessage: m.task.statusMessage });
            break;
          case "result":
            emit({ id: c.id, type: "result", isError: !!m.result.isError, text: text(m.result) });
            break;
          case "error":
            emit({ id: c.id, type: "error", error: String(m.error) });
            break;
        }
      }
      return;
    }
    const res = await client.callTool(params, undefined, options);
    emit({ id: c.id, isError: !!res.isError, text: text(res), progress });
  } catch (e) {
    emit({ id: c.id, error: String(e), progress });
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  if (c.op === "call") call(c);
  else if (c.op === "abort") aborts.get(c.id)?.abort();
  else if (c.op === "exit") break;
}
await client.close();
process.exit(0);
