package hub

// A fan-out to a room's subscribers queues the message on each session; a
// session whose queue was empty must have its writing started. Starting a
// goroutine for each (10,000 per publication to 10,000 idle subscribers)
// costs more than the writes' own work outside the kernel, so the
// sessions a fan-out finds idle are gathered, writerChunk at a time, and
// each group is written by one goroutine, session after session, with
// writes that never wait (session.tryWrite): a client that reads slowly
// gets a writer goroutine of its own and holds up no other. Groups run in
// parallel where there are cores for them.

// writerChunk is how many sessions one goroutine writes to in turn.
const writerChunk = 64

// writerStarts gathers the sessions whose writing a fan-out must start.
// Each full group goes to a goroutine at once, the last one at flush.
type writerStarts struct {
	group []*session
}

// add takes s, whose queue the fan-out just made non-empty.
func (w *writerStarts) add(s *session) {
	if w.group == nil {
		w.group = make([]*session, 0, writerChunk)
	}
	w.group = append(w.group, s)
	if len(w.group) == writerChunk {
		w.flush()
	}
}

// flush starts the writing of the sessions gathered so far.
func (w *writerStarts) flush() {
	if len(w.group) == 0 {
		return
	}
	group := w.group
	w.group = nil // the goroutine owns it now
	go writeGroup(group)
}

func writeGroup(group []*session) {
	for _, s := range group {
		s.tryWrite()
	}
}
