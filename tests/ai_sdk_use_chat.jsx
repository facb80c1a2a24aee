// A React page that uses the AI SDK's useChat against the gateway's /api/chat, its
// tool approvals the way the AI SDK docs show them: approve/deny buttons call
// addToolApprovalResponse, and sendAutomaticallyWhen sends the answered approvals.
// Bundled by tests/test_web_page.py with esbuild; `window.CHAT` sets the chat id,
// the agent and the API key.
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses } from "ai";
import React from "react";
import { createRoot } from "react-dom/client";

const { id, agent, key } = window.CHAT;

function Tool({ part, answer }) {
  return (
    <div className="tool" data-state={part.state}>
      <code className="input">{JSON.stringify(part.input)}</code>
      {part.state === "approval-requested" && (
        <>
          <button className="approve" onClick={() => answer(part.approval.id, true)}>
            Approve
          </button>
          <button className="deny" onClick={() => answer(part.approval.id, false)}>
            Deny
          </button>
        </>
      )}
      {part.state === "output-available" && <pre className="output">{part.output.stdout}</pre>}
    </div>
  );
}

function App() {
  const { messages, sendMessage, addToolApprovalResponse, status, error } = useChat({
    id,
    transport: new DefaultChatTransport({
      api: `/api/chat?agent=${agent}`,
      headers: { Authorization: `Bearer ${key}` },
    }),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  const answer = (approvalId, approved) => addToolApprovalResponse({ id: approvalId, approved });
  return (
    <main>
      <div id="status">{status}</div>
      {error && <div id="error">{String(error)}</div>}
      <button id="send" onClick={() => sendMessage({ text: "please run it" })}>Send</button>
      {messages.map((m) => (
        <div key={m.id} className={`message ${m.role}`}>
          {m.parts.map((p, i) =>
            p.type === "text" ? (
              <span key={i} className="text">{p.text}</span>
            ) : p.type.startsWith("tool-") ? (
              <Tool key={i} part={p} answer={answer} />
            ) : null,
          )}
        </div>
      ))}
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);
