// DOM helpers. Text always goes in as text nodes (never innerHTML), so
// nothing the API returns can inject markup.

// h builds an element: attrs are properties, or attributes for names with
// a dash and for "for", "role", "aria-*", "data-*"; children are nodes,
// strings, numbers or arrays of them (null and false are skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k.includes("-") || ["for", "role", "tabindex", "scope"].includes(k)) el.setAttribute(k, v === true ? "" : String(v));
    else el[k] = v;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// $ is document.getElementById.
export const $ = (id) => document.getElementById(id);

// replace empties el and appends the children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// json renders a value as indented JSON in a <pre>.
export function json(v) {
  return h("pre", { class: "json" }, JSON.stringify(v, null, 2));
}

// fmtValue is a short text for a scalar, or null for objects.
export function fmtValue(v) {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number" || typeof v === "string") return String(v);
  return null;
}

// dl renders the present fields of obj as a definition list: scalars as
// text, arrays of scalars joined, anything else as JSON. labels maps keys
// to their captions (and orders them first); other keys follow.
export function dl(obj, labels = {}, skip = []) {
  const list = h("dl", { class: "kv" });
  if (!obj || typeof obj !== "object") return list;
  const keys = [...Object.keys(labels).filter((k) => k in obj), ...Object.keys(obj).filter((k) => !(k in labels))];
  for (const k of keys) {
    if (skip.includes(k)) continue;
    const v = obj[k];
    if (v === undefined) continue;
    list.append(h("dt", {}, labels[k] || k.replaceAll("_", " ")), h("dd", {}, v instanceof Node ? v : valueNode(v)));
  }
  return list;
}

// valueNode renders any JSON value compactly.
export function valueNode(v) {
  if (v === "") return "—";
  const s = fmtValue(v);
  if (s !== null) return s;
  if (Array.isArray(v) && v.every((x) => fmtValue(x) !== null)) return v.length ? v.map(fmtValue).join(", ") : "—";
  if (v && typeof v === "object" && Object.keys(v).length === 0) return "—";
  // A small object of scalars reads better on one line.
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const entries = Object.entries(v);
    if (entries.length <= 8 && entries.every(([, x]) => fmtValue(x) !== null)) {
      return entries.map(([k, x]) => `${k.replaceAll("_", " ")} ${fmtValue(x)}`).join(" · ");
    }
  }
  return json(v);
}

// table renders rows (arrays of cells) under a header row.
export function table(caption, headers, rows, cls = "") {
  return h("table", { class: "data " + cls },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

// when formats an RFC 3339 time in the browser's locale (with the raw
// value as its title).
export function when(s) {
  if (!s) return "—";
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return h("time", { dateTime: s, title: s }, d.toLocaleString());
}

// toast shows a short message in the live region.
let toastTimer;
export function toast(msg) {
  const t = $("toast");
  t.textContent = msg;
  t.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("shown"), 4000);
}
