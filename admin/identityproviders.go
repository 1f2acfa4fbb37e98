package admin

import "github.com/gatehouse-dev/gatehouse/resource"

// addIdentityProviderKinds registers the kinds of this file (issue 14; being built).
func addIdentityProviderKinds(sch *resource.Scheme) {}
