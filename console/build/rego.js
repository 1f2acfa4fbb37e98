// A small Rego mode for CodeMirror's StreamLanguage: keywords, built-in
// values, strings (double-quoted and raw), numbers, comments, operators.
// Enough to read a policy comfortably; the server's check endpoint is
// what knows the language.
import { StreamLanguage } from "@codemirror/language";

const keywords = new Set([
  "package", "import", "default", "not", "some", "every", "in", "if",
  "contains", "else", "with", "as",
]);
const atoms = new Set(["true", "false", "null"]);
const known = new Set(["input", "data", "future", "rego"]);

export const rego = StreamLanguage.define({
  name: "rego",
  startState: () => ({ inRaw: false }),
  token(stream, state) {
    if (state.inRaw) {
      if (stream.skipTo("`")) {
        stream.next();
        state.inRaw = false;
      } else {
        stream.skipToEnd();
      }
      return "string";
    }
    if (stream.eatSpace()) return null;
    if (stream.match("#")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match("`")) {
      state.inRaw = true;
      if (stream.skipTo("`")) {
        stream.next();
        state.inRaw = false;
      } else {
        stream.skipToEnd();
      }
      return "string";
    }
    if (stream.match('"')) {
      let escaped = false, ch;
      while ((ch = stream.next()) != null) {
        if (ch === '"' && !escaped) break;
        escaped = !escaped && ch === "\\";
      }
      return "string";
    }
    if (stream.match(/^-?\d+(\.\d+)?([eE][+-]?\d+)?/)) return "number";
    if (stream.match(/^[A-Za-z_][A-Za-z0-9_]*/)) {
      const w = stream.current();
      if (keywords.has(w)) return "keyword";
      if (atoms.has(w)) return "atom";
      if (known.has(w)) return "variableName.special";
      if (stream.peek() === "(") return "variableName.function";
      return "variableName";
    }
    if (stream.match(/^(:=|==|!=|<=|>=|[=<>+\-*\/%|&])/)) return "operator";
    if (stream.match(/^[\[\]{}()]/)) return "bracket";
    stream.next();
    return null;
  },
  languageData: { commentTokens: { line: "#" } },
});
