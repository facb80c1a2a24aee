// Runs the AI SDK's own validateUIMessages on the JSON array of UIMessages on stdin.
// Prints {ok, error, messages} as JSON (messages: what the validator returned).
import { safeValidateUIMessages } from "ai";

const input = await new Promise((resolve) => {
  const parts = [];
  process.stdin.on("data", (d) => parts.push(d));
  process.stdin.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
});
const result = await safeValidateUIMessages({ messages: JSON.parse(input) });
process.stdout.write(
  JSON.stringify({
    ok: result.success,
    error: result.success ? null : String(result.error),
    messages: result.success ? result.data : null,
  }),
);
