# Policies used by authz_test.rego, as the compiler would package them.
package gatehouse.policies.fixture_header

default allow := false

allow if input.attributes.request.http.headers["x-pet-key"] == "ok"

reason := "key accepted" if allow

http_status := 401 if not allow

body := "need a key" if not allow

headers := {"x-pet-id": input.gatehouse.path_params.id} if allow

headers := {"www-authenticate": "Key"} if not allow
