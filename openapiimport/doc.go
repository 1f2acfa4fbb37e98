// Package openapiimport turns an OpenAPI document into a service's APIs and
// scopes: it parses and validates the document (OpenAPI 3.0/3.1/3.2 or
// Swagger 2.0, JSON or YAML), fetches it from a URL when asked (refusing
// non-public addresses unless allowed), plans what to write against the
// stored state, and applies the plan in a store transaction, with the audit
// events of every write. It knows nothing about HTTP requests: the admin
// API decodes them and maps this package's errors to its error shape.
//
// What an import does (docs/openapi-import.md has the user's view):
//
//   - One API per operation: its method, and the path of the first server
//     URL (operation, path item, then document servers, variables replaced
//     by their defaults) followed by the operation's path, parameter names
//     sanitised. Operations that cannot be Gatehouse routes, or repeat an
//     earlier operation's method and path shape, are ignored (listed).
//   - API ids. An operation's API is, in this order: the service's API
//     with the same operationId (stored in operation_id), the service's
//     API whose id is the operation's API id (below), the service's API
//     with the same method and path shape; that API is updated in place
//     (same id, uid and created_at; user-owned fields kept). Otherwise a
//     new API is created whose id is the operation's API id: the
//     operationId sanitised to the object id rule (APIID), or a generated
//     id when the operation has none, sanitising leaves nothing, or the id
//     is held by an API of another service (ids are tenant-wide). The
//     service's other APIs are removed. Two operations whose operationIds
//     sanitise to the same id make the document invalid (SpecError naming
//     both): disambiguating by document order would make ids depend on the
//     order of operations.
//   - Policies. An operation's x-gatehouse-policy (a policy id) binds its
//     API to that policy; otherwise the import's default policy does: the
//     request's (Target.DefaultPolicyID), else the document's top-level
//     x-gatehouse-policy. A default skips public APIs and those with
//     can_have_policy false; an operation's own x-gatehouse-policy on such
//     an API is refused. When no policy is given, an API keeps the policy
//     it has (new APIs have none, so they deny until one is bound). Every
//     policy the request or the document names must exist (a field error
//     naming where it came from; nothing is written).
//   - Scopes: the OAuth2 scopes of the document's security schemes are
//     created, bound to the service, unless a scope with that name exists.
package openapiimport
