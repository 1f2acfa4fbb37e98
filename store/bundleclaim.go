package store

import "fmt"

// CheckBundleClaim validates the arguments of Runtime.ClaimBundleRevision
// (for backends): a gateway, a content hash and a positive candidate
// revision. The tenant may be empty only for system-level gateways, which
// do not exist today, so it is required too.
func CheckBundleClaim(tenantID, gatewayID, contentHash string, candidate int64) error {
	if tenantID == "" || gatewayID == "" || contentHash == "" || candidate <= 0 {
		return fmt.Errorf("%w: a bundle revision claim needs a tenant, a gateway, a content hash and a positive revision", ErrInvalid)
	}
	return nil
}

// BundleClaimConflict is the error of a claim whose candidate revision is
// not above the revision of other content already recorded (for backends).
func BundleClaimConflict(tenantID, gatewayID string, candidate, recorded int64) error {
	return fmt.Errorf("bundle of %s/%s: other content is recorded at revision %d, not below the claim's %d: %w",
		tenantID, gatewayID, recorded, candidate, ErrConflict)
}
