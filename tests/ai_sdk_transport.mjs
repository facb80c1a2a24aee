// Drives the gateway with the AI SDK's own DefaultChatTransport, as useChat does:
// send a user message, read the streamed answer, then try to resume (expects none).
// Usage: node ai_sdk_transport.mjs <base url> <api key> <chat id>
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [base, key, chatId] = process.argv.slice(2);
const transport = new DefaultChatTransport({
  api: `${base}/api/chat`,
  headers: { Authorization: `Bearer ${key}` },
});

const user = { id: `u-${chatId}`, role: "user", parts: [{ type: "text", text: "hello from useChat" }] };
const stream = await transport.sendMessages({
  chatId,
  messages: [user],
  trigger: "submit-message",
  messageId: undefined,
  abortSignal: undefined,
});
let message = null;
for await (const snapshot of readUIMessageStream({ stream })) message = snapshot;
const resumed = await transport.reconnectToStream({ chatId });
process.stdout.write(JSON.stringify({ message, resumed: resumed !== null }));
