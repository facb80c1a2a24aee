// The AI SDK's own tool approval round trip against /api/chat, as its docs show it:
// Chat (AbstractChat, what useChat builds) with DefaultChatTransport and
// `sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses`; the
// answer stops at the approval request (status `ready`), `addToolApprovalResponse`
// answers it, and the Chat sends by itself and streams the rest of the answer.
// Usage: node ai_sdk_approvals.mjs <api url> <api key> <chat id> <approve|deny>
// Prints {parked, messages, status, error, requests} as JSON.
import {
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
} from "ai";
import { Chat } from "./ai_sdk_chat_state.mjs";

const [api, key, chatId, decision] = process.argv.slice(2);

// Every request the transport makes: which message it ends with, and its answer.
const requests = [];
const tracing = async (url, init) => {
  const body = JSON.parse(init.body);
  const last = body.messages[body.messages.length - 1];
  const response = await fetch(url, init);
  requests.push({ lastRole: last.role, trigger: body.trigger, status: response.status });
  return response;
};

let error = null;
const chat = new Chat({
  id: chatId,
  transport: new DefaultChatTransport({
    api,
    headers: { Authorization: `Bearer ${key}` },
    fetch: tracing,
  }),
  sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  onError: (e) => { error = String(e); },
});

const toolParts = () =>
  chat.messages.flatMap((m) => m.parts.filter((p) => p.type.startsWith("tool-")));

// Resolves once the stream ends: at the approval request, not at the end of the answer.
const timeout = setTimeout(() => {
  process.stderr.write(`stuck: status ${chat.status}, ${JSON.stringify(chat.messages)}\n`);
  process.exit(3);
}, 30_000);
await chat.sendMessage({ text: "please run it" });
const [asked] = toolParts();
const parked = { status: chat.status, state: asked?.state, approval: asked?.approval };

await chat.addToolApprovalResponse({
  id: asked.approval.id,
  approved: decision === "approve",
  reason: decision === "approve" ? undefined : "not today",
});
// The Chat sends the answered approval by itself; wait until that answer has ended.
while (chat.status !== "ready" && chat.status !== "error" || requests.length < 2) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
clearTimeout(timeout);
process.stdout.write(
  JSON.stringify({ parked, messages: chat.messages, status: chat.status, error, requests }),
);
