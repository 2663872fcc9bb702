package websocket

import "sync/atomic"

// sem is a one-slot semaphore (Conn's readSem and msgSem) that costs an
// idle connection no heap: a buffered channel is 96 bytes, and a connection
// has two. Its wait channel is made only when someone waits for it.
type sem struct {
	// state is semFree, semHeld, or semWaited: held, and someone may be
	// waiting on wait, so that unlock must close it.
	state atomic.Uint32
	// wait is closed, and taken out, by the unlock that follows a waiter's
	// semWaited; every waiter then tries again.
	wait atomic.Pointer[chan struct{}]
}

const (
	semFree uint32 = iota
	semHeld
	semWaited
)

// tryLock takes the semaphore if it is free.
func (s *sem) tryLock() bool { return s.state.CompareAndSwap(semFree, semHeld) }

// tryLockOrWait takes the semaphore and returns nil, or, when it is held,
// returns a channel closed when it is worth trying again: the caller waits on
// it along with whatever else may end its wait.
func (s *sem) tryLockOrWait() <-chan struct{} {
	for {
		if s.tryLock() {
			return nil
		}
		ch := s.waitChan()
		// Announce the waiter, then check that ch is still the one the
		// next unlock closes: an unlock that took it out before the
		// announcement would not close a later one.
		st := s.state.Load()
		if st == semFree || (st == semHeld && !s.state.CompareAndSwap(semHeld, semWaited)) {
			continue
		}
		if s.wait.Load() == ch {
			return *ch
		}
	}
}

// waitChan returns the channel the next unlock closes, making it if needed.
func (s *sem) waitChan() *chan struct{} {
	for {
		if p := s.wait.Load(); p != nil {
			return p
		}
		ch := make(chan struct{})
		if s.wait.CompareAndSwap(nil, &ch) {
			return &ch
		}
	}
}

// unlock frees the semaphore and wakes whoever waits for it.
func (s *sem) unlock() {
	if s.state.CompareAndSwap(semHeld, semFree) {
		return
	}
	s.state.Store(semFree)
	if p := s.wait.Swap(nil); p != nil {
		close(*p)
	}
}
