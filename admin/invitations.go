package admin

import "github.com/gatehouse-dev/gatehouse/resource"

// addInvitationKinds registers the kinds of this file (issue 14; being built).
func addInvitationKinds(sch *resource.Scheme) {}
