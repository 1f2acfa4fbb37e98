// Services and their APIs, with the policy each API is bound to and
// whether it is public.
import { $, h, replace } from "./dom.js";
import { errorBox, listAll, tenantPath } from "./api.js";

let ctx;

export function init(c) {
  ctx = c;
  $("services-refresh").addEventListener("click", () => load());
}

export async function load() {
  replace($("services-error"));
  const body = $("services-body");
  replace(body, h("p", { class: "hint" }, "Loading…"));
  try {
    const [svcs, apis] = await Promise.all([listAll(tenantPath("/services"), "services"), listAll(tenantPath("/apis"), "apis")]);
    render(body, svcs, apis);
  } catch (err) {
    replace(body);
    replace($("services-error"), errorBox(err, "Could not list the services"));
  }
}

function render(body, svcs, apis) {
  if (!svcs.length) {
    replace(body, h("p", {}, "This tenant has no services yet."));
    return;
  }
  const byService = new Map(svcs.map((s) => [s.id, []]));
  for (const a of apis) {
    if (!byService.has(a.service_id)) byService.set(a.service_id, []);
    byService.get(a.service_id).push(a);
  }
  const svcByID = new Map(svcs.map((s) => [s.id, s]));
  replace(body, [...byService.entries()].map(([sid, list]) => {
    const s = svcByID.get(sid) || { id: sid };
    return h("section", { class: "card", "aria-labelledby": "svc-" + sid },
      h("h3", { id: "svc-" + sid }, s.name && s.name !== s.id ? `${s.name} ` : "", h("code", {}, s.id)),
      h("p", { class: "hint" }, s.url ? `upstream ${s.url}` : "", s.hosts?.length ? ` · hosts ${s.hosts.join(", ")}` : " · any host",
        s.description ? ` · ${s.description}` : ""),
      list.length ? h("table", { class: "data apis" },
        h("thead", {}, h("tr", {}, ["Method", "Path", "API id", "Policy", "Public"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, list.map((a) => h("tr", { "data-api": a.id },
          h("td", {}, h("code", {}, a.method || "*")),
          h("td", {}, h("code", {}, a.path)),
          h("td", {}, a.id),
          h("td", {}, a.policy_id
            ? h("button", { type: "button", class: "link", "data-policy": a.policy_id, on: { click: () => ctx.navigate("policies", a.policy_id) } }, a.policy_id)
            : h("span", { class: "hint" }, "none")),
          h("td", {}, a.public ? h("span", { class: "yes" }, "public") : h("span", { class: "hint" }, "no"))))))
        : h("p", { class: "hint" }, "No APIs."));
  }));
}
