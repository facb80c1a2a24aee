// Reads an SSE body on stdin and runs it through the AI SDK's own client-side code:
// parseJsonEventStream with uiMessageChunkSchema, then readUIMessageStream.
// Prints {chunks, failures, message, error} as JSON.
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

const input = await new Promise((resolve) => {
  const parts = [];
  process.stdin.on("data", (d) => parts.push(d));
  process.stdin.on("end", () => resolve(Buffer.concat(parts)));
});

const bytes = new ReadableStream({
  start(controller) {
    controller.enqueue(new Uint8Array(input));
    controller.close();
  },
});

const results = [];
const reader = parseJsonEventStream({ stream: bytes, schema: uiMessageChunkSchema }).getReader();
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  results.push(value);
}
const failures = results
  .filter((r) => !r.success)
  .map((r) => ({ raw: r.rawValue, error: String(r.error) }));
const chunks = results.filter((r) => r.success).map((r) => r.value);

let message = null;
let error = null;
try {
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  for await (const snapshot of readUIMessageStream({
    stream,
    onError: (e) => {
      error = String(e);
    },
  })) {
    message = snapshot;
  }
} catch (e) {
  error = String(e);
}
process.stdout.write(JSON.stringify({ chunks: chunks.length, failures, message, error }));
