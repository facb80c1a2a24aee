// A Chat as useChat builds it, without React: the AI SDK's AbstractChat over the
// smallest ChatState (what @ai-sdk/react keeps in React state, kept in a field here).
// Shared by the scripts that drive /api/chat (ai_sdk_chat.mjs, ai_sdk_approvals.mjs).
import { AbstractChat } from "ai";

class State {
  constructor(messages) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => { this.messages = this.messages.concat(message); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (thing) => structuredClone(thing);
}

export class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new State(messages ?? []) });
  }
}
