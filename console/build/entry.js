// The editor bundle of the Gatehouse console: CodeMirror 6 with the
// basic setup, the lint extension (diagnostics, gutter) and a Rego mode.
// `make console-assets` bundles this file into
// ../assets/vendor/codemirror.min.js (one ES module).
export { basicSetup } from "codemirror";
export { EditorView, keymap, placeholder } from "@codemirror/view";
export { EditorState, Compartment } from "@codemirror/state";
export { indentWithTab } from "@codemirror/commands";
export { linter, lintGutter, setDiagnostics, forceLinting, diagnosticCount } from "@codemirror/lint";
export { rego } from "./rego.js";
