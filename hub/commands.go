package hub

import (
	"context"
	"sync"
)

// maxPendingCommands bounds the commands of one session that wait their
// turn. A client that sends more while they wait is not read from until
// there is room: the pressure goes back to it, not into the hub's memory.
const maxPendingCommands = 64

// commandRunner runs a session's commands one at a time, in order, apart
// from the goroutine that reads them. Its goroutine exists only while
// commands wait, as the writer's does (queue.go).
type commandRunner struct {
	ctx context.Context
	run func(context.Context, *command)
	// slots holds one token per command waiting or running.
	slots chan struct{}
	// runFn is r.drain, made once.
	runFn func()

	mu      sync.Mutex
	queue   []command
	running bool
	// idle is made by stop while the goroutine runs, and closed by the
	// goroutine as it ends; nil otherwise.
	idle chan struct{}
}

func (r *commandRunner) start(ctx context.Context, run func(context.Context, *command)) {
	r.ctx, r.run = ctx, run
	r.slots = make(chan struct{}, maxPendingCommands)
	r.runFn = r.drain
}

// add queues cmd, waiting while maxPendingCommands are pending. Only the
// wait ends with ctx: a slot free is taken even when ctx has ended (the
// event-loop mode waits on the Hub's context, which ends at Shutdown while
// the connections drain, and their commands still run).
func (r *commandRunner) add(ctx context.Context, cmd command) error {
	select {
	case r.slots <- struct{}{}:
	default:
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.queue = append(r.queue, cmd)
	if !r.running {
		r.running = true
		r.idle = nil
		go r.runFn()
	}
	r.mu.Unlock()
	return nil
}

// drain runs the queued commands, and ends when none is left.
func (r *commandRunner) drain() {
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.running = false
			if r.idle != nil {
				close(r.idle)
			}
			r.mu.Unlock()
			return
		}
		// Shifted down rather than resliced, so that the backing array
		// (at most maxPendingCommands long) serves every later command
		// instead of a new one being allocated once it is used up.
		cmd := r.queue[0]
		n := copy(r.queue, r.queue[1:])
		r.queue[n] = command{}
		r.queue = r.queue[:n]
		r.mu.Unlock()
		// After its context ended, a command is not run: the session is
		// ending, and nobody will read its reply.
		if r.ctx.Err() == nil {
			r.run(r.ctx, &cmd)
		}
		<-r.slots
	}
}

// stop cancels the commands' context with cancel and waits until no
// command runs.
func (r *commandRunner) stop(cancel context.CancelFunc) {
	cancel()
	r.mu.Lock()
	if !r.running {
		r.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	r.idle = idle
	r.mu.Unlock()
	<-idle
}
