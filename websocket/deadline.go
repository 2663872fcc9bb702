package websocket

import (
	"context"
	"sync"
	"time"
)

// deadlineWatcher lets a context interrupt blocking reads or writes on the
// transport by moving its deadline into the past when the context ends.
//
// Registering with context.AfterFunc costs allocations, and a read loop
// passes the same context to every Read, so the registration is kept until
// a different context comes or the connection closes.
type deadlineWatcher struct {
	mu   sync.Mutex
	ctx  context.Context
	stop func() bool
	set  func(time.Time) error
}

// pastDeadline is any time already gone.
var pastDeadline = time.Unix(1, 0)

// watch makes ctx interrupt the transport until the next watch or clear.
func (w *deadlineWatcher) watch(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == ctx {
		return
	}
	w.clearLocked()
	if ctx.Done() == nil {
		return
	}
	w.ctx = ctx
	w.stop = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		if w.ctx == ctx {
			w.set(pastDeadline)
		}
		w.mu.Unlock()
	})
}

func (w *deadlineWatcher) clear() {
	w.mu.Lock()
	w.clearLocked()
	w.mu.Unlock()
}

func (w *deadlineWatcher) clearLocked() {
	if w.ctx == nil {
		return
	}
	if !w.stop() {
		// The context ended and moved the deadline: undo it.
		w.set(time.Time{})
	}
	w.ctx, w.stop = nil, nil
}
