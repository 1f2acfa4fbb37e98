package admin

// PolicyTestsRunning is how many policy tests hold a slot (tests only).
func (s *Server) PolicyTestsRunning() int { return s.tester.Running() }
