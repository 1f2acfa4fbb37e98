// Package envoy is Gatehouse's xDS control plane: it translates each
// gateway's compiled configuration (policies.Compiled, from the bundle
// manager) into Envoy resources, validates them, and serves one snapshot per
// gateway over ADS (go-control-plane), keyed by the node id in the
// gateway's bootstrap: NodeID(tenant, gateway) = "tenant/gateway".
//
// # Envoy gateways (type "envoy")
//
// One listener (ListenerName) on the gateway's listener address and port
// (default 0.0.0.0:10000) whose HTTP connection manager runs
// envoy.filters.http.ext_authz (gRPC to the authorizer cluster, API v3,
// failure_mode_allow false, no peer certificate, the request body when the
// gateway asks for it, packed as bytes) then the router. It strips the port
// from the host, normalises paths (dot segments, unreserved escapes),
// merges slashes and refuses escaped slashes, so routes, the authorizer and
// the upstream all see the same path.
//
// Routes come from RDS (RouteConfigName, over ADS): one virtual host per
// routing vhost with its domains ("*" for the default one), one route per
// API in the routing table's priority order, so that Envoy's first match is
// Gatehouse's match. A route matches the :method header exactly (no header
// for "*") and a path matcher equal to the template (see match.go: exact
// path, path_separated_prefix or an anchored RE2 regex, never uri_template),
// forwards to the service's cluster with the upstream's Host and its URL
// path prefixed, and carries ext_authz context extensions {tenant, gateway,
// service, api} — or ext_authz disabled for a public API. Each virtual host ends
// with a catch-all: a 404 from Envoy itself (the authorizer's answer for
// unmatched requests, without asking it); with AllowUnmatchedRoutes, a
// vhost serving a single service forwards unmatched requests to it through
// ext_authz (extensions without an api, so the authorizer matches and
// applies the gateway's rule), while a vhost of several services still
// answers 404, having no upstream to choose.
//
// Clusters: one per service (ServiceClusterName), STATIC for an IP literal
// and STRICT_DNS otherwise, from the URL's host and port (default 80/443);
// https upstreams get TLS with SNI, verified against a CA file and the
// host name. The authorizer cluster (AuthorizerClusterName) speaks HTTP/2,
// over TLS (ALPN h2, the client certificate for mTLS) with
// TranslateOptions.AuthorizerTLS.
//
// # Proxyless gRPC gateways (type "grpc")
//
// gRPC clients (grpc-go's xds:/// resolver and the like) read the resources
// themselves: an api_listener per exact service host and per service
// without one (named by the service id), its routes inline, EDS clusters
// with a weighted locality. What xDS enforces there is routing only: an RPC
// whose method no API (POST or "*") matches fails in the client. gRPC
// clients cannot run ext_authz, so nothing is authorized by the control
// plane's resources: the services must call the authorizer themselves (or
// sit behind an Envoy gateway). TLS to the upstream is the client's
// transport credentials' business; the service URL's scheme is not
// expressed.
//
// # Serving
//
// Server follows the bundle manager: a gateway is translated again only
// when its bundle's revision or hash changed and what Translate reads did
// change (translationKey): a policy edit pushes nothing. Every snapshot is
// ValidateDeep'ed (protoc-gen-validate rules, inside every Any too), then
// Snapshot.Consistent and a cluster reference check must pass before it is
// set; otherwise the previous snapshot stays and the gateway's status shows
// the error. Versions are "<bundle revision>.<per-process counter>", new at
// every set. Envoy nodes (user agent "envoy") are served by an ADS cache
// that orders responses CDS, EDS, LDS, RDS; other clients, which subscribe
// to parts of a snapshot by name (gRPC), by a plain one.
//
// The server records, per stream, what it sent and what the client ACKed
// or NACKed (Status, also the admin API's gateway status.xds). A NACK does
// not make it send the rejected version again (go-control-plane would, at
// once, forever): the request is recorded as being at the rejected version,
// so the next response is the next version. A deleted gateway's connected
// nodes get an empty snapshot (Envoy drops its listener); its state goes
// once none is connected.
//
// # Authentication
//
// Every xDS call must carry a gateway credential, gRPC metadata
// "authorization: Bearer ghg_…", checked by a CredentialVerifier
// (gatewaycred.Verifier on the control plane). Server.ServerOptions
// holds the interceptors that do it before go-control-plane sees the call
// (UNAUTHENTICATED for no, a malformed, unknown or revoked credential) and
// put the GatewayIdentity in the call's context; the server's callbacks
// then refuse, with PERMISSION_DENIED and before the status tracker
// records anything, every request whose node id is not that gateway's
// NodeID (SotW, delta and Fetch alike; a delta request without a node is
// held to the stream's first). Calls that bypassed the interceptors carry
// no identity and are refused. Reverify ends the open streams whose
// credential was revoked since; the control plane calls it from the
// store's change feed.
//
// # Bootstrap
//
// Bootstrap writes an Envoy bootstrap for a gateway: node id and cluster,
// ADS over gRPC to a static control-plane cluster (TLS with
// BootstrapOptions.XDSTLS) with the gateway credential in the stream's
// initial_metadata, the admin listener on
// loopback, and a runtime layer raising the RE2 program size limit (100 by
// default in Envoy, too small for long templates with parameters).
// GRPCBootstrap writes the xDS bootstrap of a proxyless gRPC gateway, its
// credential, and its TLS settings with GRPCBootstrapOptions.XDSTLS, in
// channel credentials of type "gatehouse" (package xdscreds registers that
// type with grpc-go).
package envoy
