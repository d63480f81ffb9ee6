// A TypeScript SDK client for Airlock's hold tests. It starts the command
// after the mode (airlock wrap …) over stdio and calls the "write" tool:
//
//   progress  with onprogress and resetTimeoutOnProgress, and a request
//             timeout shorter than the hold
//   retry     without them: the first call returns "approval pending";
//             after a line on stdin, the identical retry joins the approval;
//             another line lets it exit
//
// Each outcome is printed as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { createInterface } from "node:readline";

const [mode, command, ...args] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
const client = new Client({ name: "ts-hold-test", version: "1.0.0" });
await client.connect(new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" }));
const emit = (o) => console.log(JSON.stringify(o));
const text = (r) => r.content.map((c) => c.text).join("\n");

try {
  if (mode === "progress") {
    let progress = 0;
    const res = await client.callTool({ name: "write", arguments: { mode } }, undefined, {
      timeout: 3000,
      resetTimeoutOnProgress: true,
      onprogress: () => { progress++; },
    });
    emit({ isError: !!res.isError, text: text(res), progress });
  } else {
    const first = await client.callTool({ name: "write", arguments: { mode } }, undefined, { timeout: 30000 });
    emit({ isError: !!first.isError, text: text(first) });
    await nextLine(); // the test approved meanwhile
    const second = await client.callTool({ name: "write", arguments: { mode } }, undefined, { timeout: 30000 });
    emit({ isError: !!second.isError, text: text(second) });
    await nextLine(); // the test has looked at the broker
  }
} catch (e) {
  emit({ error: String(e) });
}
await client.close();
lines.close();
