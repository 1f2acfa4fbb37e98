package admin

import "github.com/gatehouse-dev/gatehouse/resource"

// addServiceAccountKinds registers the kinds of this file (issue 14; being built).
func addServiceAccountKinds(sch *resource.Scheme) {}
