package harness

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar on stderr: runs done, the current
// run, elapsed time and an estimate of what is left (from each run's expected
// duration, corrected by how fast the run has gone so far).
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	est     []float64
	total   float64
	doneEst float64
	cur     int
	label   string
	start   time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newProgress(w io.Writer, tasks []task) *progress {
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{})}
	for _, t := range tasks {
		p.est = append(p.est, t.est)
		p.total += t.est
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progress) begin(i int, label string) {
	p.mu.Lock()
	p.cur, p.label = i, label
	p.mu.Unlock()
	p.draw()
}

func (p *progress) end(i int) {
	p.mu.Lock()
	p.doneEst += p.est[i]
	p.mu.Unlock()
}

func (p *progress) finish() {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	p.cur, p.label = len(p.est), "done"
	p.mu.Unlock()
	p.draw()
	fmt.Fprintln(p.w)
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = p.doneEst / p.total
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	if filled < width {
		bar = bar[:filled] + ">" + bar[filled+1:]
	}
	elapsed := time.Since(p.start)
	left := time.Duration((p.total - p.doneEst) * float64(time.Second))
	if frac > 0.05 {
		left = time.Duration(float64(elapsed) / frac * (1 - frac))
	}
	label := p.label
	if len(label) > 40 {
		label = label[:40]
	}
	fmt.Fprintf(p.w, "\r[%s] %3d/%d %-40s %s elapsed, ~%s left ", bar, min(p.cur+1, len(p.est)), len(p.est), label,
		elapsed.Round(time.Second), left.Round(time.Second))
}
