# Bearer token information for policies (input.gatehouse.token).
package gatehouse.lib.token

# Token verification is added with the authorizer; until then no token is
# ever reported as valid.
info := {"present": false, "valid": false}
