package admin

import "github.com/gatehouse-dev/gatehouse/resource"

// addGroupKinds registers the kinds of this file (issue 14; being built).
func addGroupKinds(sch *resource.Scheme) {}
