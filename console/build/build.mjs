// Builds console/assets/vendor/codemirror.min.js (one minified ES module)
// and its notice file (every bundled package with its version and licence
// text). Run by `make console-assets` after `npm ci`; the output is
// committed, so building Gatehouse needs no Node.js.
import { build } from "esbuild";
import { readFileSync, writeFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "assets", "vendor");

const result = await build({
  entryPoints: [join(here, "entry.js")],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  metafile: true,
  write: false,
  charset: "utf8",
});
const js = result.outputFiles[0].text;
writeFileSync(join(out, "codemirror.min.js"),
  "/* CodeMirror 6 and its dependencies, bundled for the Gatehouse console; see codemirror.LICENSE.txt. */\n" + js);

// The packages the bundle took code from, by their package.json.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (!m || pkgs.has(m[1])) continue;
  const dir = join(here, "node_modules", m[1]);
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const lic = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  pkgs.set(m[1], { version: meta.version, license: meta.license, text: lic ? readFileSync(join(dir, lic), "utf8").trim() : "" });
}
const names = [...pkgs.keys()].sort();
let notice = "The Gatehouse console's editor bundle (codemirror.min.js) contains these packages,\n" +
  "built by console/build/build.mjs with esbuild " + JSON.parse(readFileSync(join(here, "node_modules", "esbuild", "package.json"), "utf8")).version + ":\n\n";
for (const n of names) notice += `  ${n}@${pkgs.get(n).version} (${pkgs.get(n).license})\n`;
for (const n of names) {
  const p = pkgs.get(n);
  notice += `\n${"=".repeat(72)}\n${n}@${p.version} — ${p.license}\n${"=".repeat(72)}\n\n${p.text || "(no licence file in the package; licence: " + p.license + ")"}\n`;
}
writeFileSync(join(out, "codemirror.LICENSE.txt"), notice);
console.log(`codemirror.min.js: ${js.length} bytes from ${names.length} packages: ${names.map((n) => n + "@" + pkgs.get(n).version).join(", ")}`);
if (!existsSync(join(out, "codemirror.min.js"))) process.exit(1);
