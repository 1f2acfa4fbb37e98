// Gateway status: the bundle being served, the authorizers (OPA status
// reports, the in-process authorizer) and their active revision, decision
// log drops, and the Envoys connected over xDS with their ACKs and NACKs.
import { $, h, replace, dl, json, when, valueNode } from "./dom.js";
import { call, errorBox, listAll, tenantPath } from "./api.js";

let selected = "";

export function init() {
  $("gateways-refresh").addEventListener("click", () => load());
}

export function reset() {
  selected = "";
  replace($("gateway-detail"));
}

export async function load() {
  replace($("gateways-error"));
  try {
    const gws = await listAll(tenantPath("/gateways"), "gateways");
    const ul = $("gateway-list");
    if (!gws.length) {
      replace(ul, h("li", { class: "hint" }, "No gateways yet."));
      replace($("gateway-detail"));
      return;
    }
    if (!gws.some((g) => g.id === selected)) selected = gws[0].id;
    replace(ul, gws.map((g) => h("li", {},
      h("button", { type: "button", class: "pick", "data-gateway": g.id, "aria-current": g.id === selected ? "true" : null,
        on: { click: () => { selected = g.id; load(); } } },
      h("span", { class: "pick-title" }, g.name || g.id), h("span", { class: "hint" }, ` ${g.id} · ${g.type || ""}`)))));
    await show(selected);
  } catch (err) {
    replace($("gateways-error"), errorBox(err, "Could not list the gateways"));
  }
}

async function show(id) {
  const out = $("gateway-detail");
  try {
    const { data } = await call("GET", tenantPath("/gateways/" + encodeURIComponent(id)));
    replace(out, render(data));
  } catch (err) {
    replace(out, errorBox(err, `Could not read gateway ${id}`));
  }
}

function section(title, state, ...body) {
  return h("section", { class: "card", "data-section": title.toLowerCase().replace(/[^a-z]+/g, "-") },
    h("h4", {}, title, state ? h("span", { class: "pill " + state[0] }, state[1]) : null), body);
}

export function render(g) {
  const st = g.status || {};
  const parts = [h("h3", {}, "Gateway ", h("code", {}, g.id)),
    dl({ name: g.name, type: g.type, services: g.service_ids, decision_logs: g.decision_logs, dry_run: g.dry_run,
      allow_unmatched_routes: g.allow_unmatched_routes, policy_timeout_ms: g.policy_timeout_ms, server_id: g.server_id })];

  const b = st.bundle || {};
  parts.push(section("Bundle", b.error ? ["fail", "build failing"] : b.revision ? ["ok", `revision ${b.revision}`] : ["none", "not built"],
    dl({ revision: b.revision, etag: b.etag, built_at: b.built_at ? when(b.built_at) : undefined, bytes: b.bytes, key_id: b.key_id, error: b.error }),
    st.build_error ? h("div", { class: "error", role: "alert" },
      `Build failing since ${st.build_error.since} (${st.build_error.failures} failures${st.build_error.retrying ? ", retrying" : ""}): ${st.build_error.error}`) : null));

  if (st.in_process_authorizer) {
    const ip = st.in_process_authorizer;
    const problems = ip.token_issuers || [];
    parts.push(section("In-process authorizer", ip.active_revision ? [problems.length ? "fail" : "ok", `active revision ${ip.active_revision}`] : ["none", "no bundle active"],
      dl({ active_revision: ip.active_revision }, {}, ["token_issuers"]),
      problems.length ? h("table", { class: "data" },
        h("caption", {}, "Token issuers whose keys cannot be fetched"),
        h("thead", {}, h("tr", {}, ["Issuer", "Error", "Since", "Has keys"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, problems.map((p) => h("tr", {}, h("td", {}, p.issuer_id), h("td", {}, p.error), h("td", {}, when(p.since)), h("td", {}, valueNode(!!p.has_keys))))))
        : null));
  }

  const opa = st.opa || {};
  const inst = opa.instances || [];
  parts.push(section("Authorizers (status reports)", inst.length ? ["ok", `${inst.length} connected`] : ["none", "none reporting"],
    dl({ active_revision: opa.active_revision, last_seen: opa.last_seen ? when(opa.last_seen) : undefined,
      last_fetch: opa.last_fetch ? when(opa.last_fetch) : undefined, errors: opa.errors?.length ? opa.errors : undefined }),
    inst.length ? h("table", { class: "data" },
      h("thead", {}, h("tr", {}, ["Instance", "Last seen", "Active revision", "Decision logs", "Dropped", "Errors"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, inst.map((i) => h("tr", {},
        h("td", {}, h("code", {}, i.id)), h("td", {}, when(i.last_seen)), h("td", {}, i.active_revision || "—"),
        h("td", {}, i.decision_logs ? [i.decision_logs.state || "", i.decision_logs.mode ? ` (${i.decision_logs.mode})` : ""].join("") : "—"),
        h("td", {}, i.decision_logs ? String(i.decision_logs.dropped ?? 0) : "—"),
        h("td", {}, i.errors?.length ? i.errors.join("; ") : "—"))))) : null));

  const logs = opa.decision_logs;
  if (logs) {
    parts.push(section("Decision logs", logs.dropped ? ["fail", `${logs.dropped} dropped`] : ["ok", "none dropped"],
      dl({ dropped: logs.dropped, dropped_by_reason: logs.dropped_by_reason, sent: logs.sent, buffered_events: logs.buffered_events,
        skipped: logs.skipped, modes: logs.modes, failing: logs.failing })));
  }

  const xds = st.xds;
  if (xds) {
    const nodes = xds.nodes || [];
    parts.push(section("Envoys (xDS)", xds.error ? ["fail", "configuration refused"] : xds.last_nack ? ["fail", "NACK"] : nodes.length ? ["ok", `${nodes.length} connected`] : ["none", "none connected"],
      dl({ node_id: xds.node_id, version: xds.version, bundle_revision: xds.bundle_revision, updated_at: xds.updated_at ? when(xds.updated_at) : undefined, error: xds.error }),
      nodes.length ? h("table", { class: "data" },
        h("thead", {}, h("tr", {}, ["Peer", "Cluster", "Agent", "Connected", "Resources (sent / acked)"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, nodes.map((n) => h("tr", {},
          h("td", {}, n.peer || "—"), h("td", {}, n.cluster || "—"), h("td", {}, n.user_agent || "—"), h("td", {}, when(n.connected_at)),
          h("td", {}, h("ul", { class: "plain" }, Object.entries(n.resources || {}).map(([t, r]) =>
            h("li", {}, h("code", {}, t.split("/").pop()), ` ${r.sent_version || "—"} / ${r.acked_version || "—"}`,
              r.last_nack ? h("span", { class: "no" }, ` NACK ${r.last_nack.version}: ${r.last_nack.error}`) : null)))))))) : null,
      xds.last_nack ? h("div", { class: "error", role: "alert" },
        `Last NACK (${xds.last_nack.type_url?.split("/").pop() || ""} version ${xds.last_nack.version}, `, when(xds.last_nack.at), `): ${xds.last_nack.error}`) : null));
  }
  parts.push(h("details", {}, h("summary", {}, "The whole status"), json(st)));
  parts.push(section("What was generated", null,
    h("p", { class: "hint" }, "The compiled bundle (data.json, modules) and the xDS resources served to this gateway's Envoys."),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", "data-generated": "bundle-content", on: { click: (e) => generated(g.id, "bundle-content", e.target) } }, "Show the bundle content"),
      h("button", { type: "button", class: "secondary", "data-generated": "envoy-config", on: { click: (e) => generated(g.id, "envoy-config", e.target) } }, "Show the Envoy configuration")),
    h("div", { id: "gateway-generated", "aria-live": "polite" })));
  return h("div", {}, parts);
}

// generated shows GET …/gateways/{gw}/{what} (bundle-content,
// envoy-config) as JSON.
async function generated(id, what, button) {
  const out = $("gateway-generated");
  button.disabled = true;
  try {
    const { data } = await call("GET", tenantPath("/gateways/" + encodeURIComponent(id) + "/" + what));
    replace(out, h("h4", {}, what === "envoy-config" ? "Envoy configuration" : "Bundle content"), json(data));
  } catch (err) {
    replace(out, errorBox(err, "Could not read " + what));
  } finally {
    button.disabled = false;
  }
}
