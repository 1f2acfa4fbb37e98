package token

// OnSignature makes v call f before each signature check (set it before
// the first Verify).
func OnSignature(v *Verifier, f func()) { v.onSignature = f }
