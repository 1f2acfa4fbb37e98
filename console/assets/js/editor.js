// Rego editors (CodeMirror 6, vendored) with server-side diagnostics.
import {
  basicSetup, EditorView, EditorState, keymap, indentWithTab, lintGutter, setDiagnostics, rego, placeholder,
} from "../vendor/codemirror.min.js";

// toDiagnostics maps the API's problems ({line, column, message, code}) to
// CodeMirror diagnostics on doc: from the column to the end of the word
// there (or of the line).
export function toDiagnostics(doc, problems, severity = "error") {
  const out = [];
  for (const p of problems || []) {
    const lineNo = Math.min(Math.max(1, Number(p.line) || 1), doc.lines);
    const line = doc.line(lineNo);
    let from = line.from + Math.min(Math.max(0, (Number(p.column) || 1) - 1), line.length);
    let to = from;
    const rest = doc.sliceString(from, line.to);
    const m = rest.match(/^[A-Za-z0-9_."]+/);
    to = from + (m ? m[0].length : Math.min(1, rest.length));
    if (to === from && from > line.from) from--; // mark the last character of a line
    out.push({ from, to, severity, message: (p.code ? p.code + ": " : "") + (p.message || "problem"), source: p.field || "" });
  }
  return out;
}

// createEditor makes an editor in parent; onChange(text) hears every
// change of its text. Problems are shown with mark (the page checks the
// whole draft, both editors at once).
export function createEditor(parent, { label, onChange, hint }) {
  const extensions = [
    basicSetup,
    keymap.of([indentWithTab]),
    rego,
    lintGutter(),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({ "aria-label": label, "aria-multiline": "true" }),
    EditorView.updateListener.of((u) => { if (u.docChanged && onChange) onChange(u.state.doc.toString()); }),
  ];
  if (hint) extensions.push(placeholder(hint));
  // The editor's generated style sheets carry the page's style nonce (the
  // Content-Security-Policy allows no other inline style).
  const nonce = document.querySelector('meta[name="gatehouse-style-nonce"]')?.content;
  if (nonce) extensions.push(EditorView.cspNonce.of(nonce));
  const view = new EditorView({ parent, state: EditorState.create({ doc: "", extensions }) });
  return {
    view,
    get text() { return view.state.doc.toString(); },
    set text(v) { view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: v } }); },
    // mark shows problems ({line, column, code, message}) as diagnostics;
    // problems without a line are not marked.
    mark(problems) {
      view.dispatch(setDiagnostics(view.state, toDiagnostics(view.state.doc, (problems || []).filter((p) => p.line))));
    },
    // goTo puts the cursor on line:column and focuses the editor.
    goTo(line, column = 1) {
      const doc = view.state.doc;
      const l = doc.line(Math.min(Math.max(1, line), doc.lines));
      const pos = l.from + Math.min(Math.max(0, column - 1), l.length);
      view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
      view.focus();
    },
  };
}
