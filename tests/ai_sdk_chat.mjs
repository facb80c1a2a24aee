// The AI SDK's own Chat (AbstractChat, as useChat builds it) seeded with a session's
// history, as the gateway answers it, continuing the conversation through /api/chat
// with DefaultChatTransport.
// Usage: node ai_sdk_chat.mjs <api url> <api key> <chat id> <text>; the initial
// messages (UIMessage[] JSON) on stdin. Prints {messages, status, error} as JSON.
import { DefaultChatTransport, validateUIMessages } from "ai";
import { Chat } from "./ai_sdk_chat_state.mjs";

const [api, key, chatId, text] = process.argv.slice(2);
const input = await new Promise((resolve) => {
  const parts = [];
  process.stdin.on("data", (d) => parts.push(d));
  process.stdin.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
});

let error = null;
const chat = new Chat({
  id: chatId,
  messages: await validateUIMessages({ messages: JSON.parse(input) }),
  transport: new DefaultChatTransport({ api, headers: { Authorization: `Bearer ${key}` } }),
  onError: (e) => { error = String(e); },
});
await chat.sendMessage({ text });
process.stdout.write(JSON.stringify({ messages: chat.messages, status: chat.status, error }));
