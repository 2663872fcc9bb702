package websocket

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestSemExclusion has goroutines take the semaphore against each other,
// so that a lost wake-up hangs it and two holders at once are seen.
func TestSemExclusion(t *testing.T) {
	var s sem
	var holders, total int
	var mu sync.Mutex // only to let the race detector see the counters
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				for wake := s.tryLockOrWait(); wake != nil; wake = s.tryLockOrWait() {
					<-wake
				}
				mu.Lock()
				holders++
				if holders != 1 {
					t.Errorf("%d holders at once", holders)
				}
				mu.Unlock()
				total++ // guarded by s alone: the race detector checks it
				mu.Lock()
				holders--
				mu.Unlock()
				s.unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a waiter was never woken")
	}
	if total != 8*2000 {
		t.Fatalf("total %d", total)
	}
}

// TestLockSemGivesUp checks that a held semaphore's waiter gives up when its
// context ends or the connection closes, and is woken by the unlock.
func TestLockSemGivesUp(t *testing.T) {
	c := &Conn{}
	c.readSem.tryLock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.lockSem(ctx, &c.readSem); err != context.DeadlineExceeded {
		t.Fatalf("lockSem with an ended context: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- c.lockSem(context.Background(), &c.readSem) }()
	time.Sleep(10 * time.Millisecond)
	c.closed.fire()
	if err := <-got; err != ErrClosed {
		t.Fatalf("lockSem on a closing connection: %v", err)
	}
	c = &Conn{}
	c.readSem.tryLock()
	go func() { got <- c.lockSem(context.Background(), &c.readSem) }()
	time.Sleep(10 * time.Millisecond)
	c.readSem.unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("lockSem after the unlock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unlock did not wake the waiter")
	}
	if c.readSem.tryLock() {
		t.Fatal("the semaphore is free while the waiter holds it")
	}
}
