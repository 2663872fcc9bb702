package harness

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/duplexws/duplex/bench/internal/report"
)

// micro runs the peers' microbenchmarks (bench/micro) and Duplex's own
// (../websocket), pinned to the server core, and parses both.
func (r *runner) micro() ([]report.Micro, error) {
	var out []report.Micro
	var errs []string
	for _, m := range []struct{ dir, pkg, lib string }{
		{r.opt.ModDir, "./micro/", ""},
		{filepath.Dir(r.opt.ModDir), "./websocket/", "duplex"},
	} {
		args := []string{"-c", r.opt.ServerCPU, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "300ms", "-count", "1", m.pkg}
		cmd := exec.Command("taskset", args...)
		cmd.Dir = m.dir
		b, err := cmd.CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v: %s", m.pkg, err, lastLines(string(b), 5)))
		}
		out = append(out, parseBench(string(b), m.lib)...)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// parseBench reads "BenchmarkName/sub/cases-N  iters  x ns/op  [y MB/s]  z B/op  w allocs/op"
// lines. Without lib, the library is the first sub-benchmark name.
func parseBench(text, lib string) []report.Micro {
	var out []report.Micro
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		parts := strings.Split(strings.TrimPrefix(name, "Benchmark"), "/")
		m := report.Micro{Bench: parts[0], Lib: lib}
		rest := parts[1:]
		if lib == "" && len(rest) > 0 {
			m.Lib, rest = rest[0], rest[1:]
		}
		m.Case = strings.Join(rest, "/")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				m.NsOp = v
			case "B/op":
				m.BytesOp = v
			case "allocs/op":
				m.AllocsOp = v
			case "MB/s":
				m.MBs = v
			}
		}
		out = append(out, m)
	}
	return out
}
