package embedded

// SetWriteFault makes every write transaction of s fail with f's error
// from inside bbolt's transaction, as a failed disk write fails it (nil
// stops it). Tests only.
func SetWriteFault(s *Store, f func() error) {
	if f == nil {
		s.writeFault.Store(nil)
		return
	}
	s.writeFault.Store(&f)
}

// Classify is classify (tests only).
var Classify = classify
