package websocket

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineWatcher lets a context interrupt a blocking read or write on a
// transport by moving its deadline into the past when the context ends.
//
// A context bounds the call it was given to and nothing after it: the
// deadline moves only while a call under that context is in progress
// (between begin and end). Registering with context.AfterFunc costs
// allocations, and a read loop passes the same context to every Read, so the
// registration is kept until a different context comes; a context that ends
// between calls does nothing then, and the next call under it sees ctx.Err()
// before it starts.
type deadlineWatcher struct {
	// watching mirrors ctx != nil, so that a call with no context to watch
	// and none registered (every Read under Open's own context) takes no
	// lock: it has nothing to do.
	watching atomic.Bool

	mu     sync.Mutex
	ctx    context.Context // registered; nil when none
	stop   func() bool
	active bool // a call under ctx is in progress
	moved  bool // the context ended during a call and moved the deadline
	set    func(time.Time) error
}

// pastDeadline is any time already gone.
var pastDeadline = time.Unix(1, 0)

// begin makes the end of ctx interrupt the transport until end. A nil ctx,
// or one that never ends, interrupts nothing. A deadline an earlier context
// moved is cleared, so the caller sets its own after begin, and checks
// ctx.Err() after that: a context that ended before begin moved nothing.
func (w *deadlineWatcher) begin(ctx context.Context) {
	if ctx == nil && !w.watching.Load() {
		return // nothing registered, so nothing moved the deadline either
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.moved {
		w.set(time.Time{})
		w.moved = false
	}
	if ctx != nil && ctx.Done() == nil {
		ctx = nil
	}
	if w.ctx != ctx {
		w.clearLocked()
		if ctx != nil {
			w.ctx = ctx
			w.watching.Store(true)
			w.stop = context.AfterFunc(ctx, func() {
				w.mu.Lock()
				if w.ctx == ctx && w.active {
					w.set(pastDeadline)
					w.moved = true
				}
				w.mu.Unlock()
			})
		}
	}
	w.active = w.ctx != nil
}

// end marks the end of the call begun with begin.
func (w *deadlineWatcher) end() {
	if !w.watching.Load() {
		return // active is false whenever nothing is registered
	}
	w.mu.Lock()
	w.active = false
	w.mu.Unlock()
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
	w.stop()
	if w.moved {
		w.set(time.Time{})
		w.moved = false
	}
	w.ctx, w.stop, w.active = nil, nil, false
	w.watching.Store(false)
}
