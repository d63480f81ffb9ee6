// A TypeScript SDK client for Airlock's task tests. It starts the command
// after the tool name (airlock wrap …) over stdio, lists the tools (so that
// the SDK knows which take tasks) and calls the tool with
// client.experimental.tasks.callToolStream, asking for a task. Each message
// of the stream is printed as one JSON line: taskCreated, taskStatus, then
// result or error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [tool, argsJSON, command, ...args] = process.argv.slice(2);
const client = new Client({ name: "ts-task-test", version: "1.0.0" });
await client.connect(new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" }));
const emit = (o) => console.log(JSON.stringify(o));

try {
  await client.listTools();
  const stream = client.experimental.tasks.callToolStream(
    { name: tool, arguments: JSON.parse(argsJSON) },
    undefined,
    { task: { ttl: 600000 }, timeout: 120000 },
  );
  for await (const m of stream) {
    switch (m.type) {
      case "taskCreated":
      case "taskStatus":
        emit({ type: m.type, taskId: m.task.taskId, status: m.task.status, statusMessage: m.task.statusMessage });
        break;
      case "result":
        emit({ type: "result", isError: !!m.result.isError, text: m.result.content.map((c) => c.text).join("\n") });
        break;
      case "error":
        emit({ type: "error", error: String(m.error) });
        break;
    }
  }
} catch (e) {
  emit({ type: "error", error: String(e) });
}
await client.close();
