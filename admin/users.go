package admin

import "github.com/gatehouse-dev/gatehouse/resource"

// addUserKinds registers the kinds of this file (issue 14; being built).
func addUserKinds(sch *resource.Scheme) {}
