package feedback

// InflateWaitingForTest adds n to the bytes counted for feedback waiting for
// its span, as the reasons its records gather can.
func (s *Service) InflateWaitingForTest(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.waitingBytes += n
}
