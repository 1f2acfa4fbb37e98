package grants

import "context"

// DeleteSubjectRefreshTokens deletes every refresh token of the tenant
// issued for sub of subType (SubjectUser: a directory user's id), at
// every server and client, and returns how many. It writes runtime state
// only: call it once the configuration transaction that revoked the
// subject (RevokeSubject at each server) has committed — the not-before
// revocations already refuse the access tokens; this ends the refreshes.
func (r *Records) DeleteSubjectRefreshTokens(ctx context.Context, tid, subType, sub string) (int, error) {
	tokens, err := r.RefreshTokens(ctx, tid)
	if err != nil {
		return 0, err
	}
	n := 0
	for hash, t := range tokens {
		if t.Subject != sub || t.SubjectType != subType {
			continue
		}
		if err := r.DeleteRefreshToken(ctx, tid, hash); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
