package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/duplexws/duplex/bench/internal/report"
)

// build compiles every server into bin/ and asks each what it supports.
func (r *runner) build() error {
	versions := moduleVersions(filepath.Join(r.opt.ModDir, "go.mod"))
	binDir := filepath.Join(r.opt.ModDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(r.opt.Log, "building %d servers...\n", len(r.opt.Libs))
	var order []string
	for _, name := range r.opt.Libs {
		known := false
		for _, l := range Libraries {
			known = known || l.Name == name
		}
		if !known {
			return fmt.Errorf("unknown library %q", name)
		}
	}
	for _, l := range Libraries { // the report's order, whatever the flag's
		for _, name := range r.opt.Libs {
			if l.Name == name {
				order = append(order, name)
			}
		}
	}
	r.opt.Libs = order
	for _, name := range order {
		var lib *report.Lib
		for _, l := range Libraries {
			if l.Name == name {
				l := l
				lib = &l
			}
		}
		lib.Version = versions[lib.Module]
		if lib.Name == "duplex" {
			lib.Version = duplexVersion(r.opt.ModDir)
		}
		bin := filepath.Join(binDir, "srv-"+name)
		cmd := exec.Command("go", "build", "-o", bin, "./servers/"+name)
		cmd.Dir = r.opt.ModDir
		if out, err := cmd.CombinedOutput(); err != nil {
			lib.BuildErr = strings.TrimSpace(string(out))
			fmt.Fprintf(r.opt.Log, "  %s: build failed, it will be reported as such:\n%s\n", name, out)
		} else {
			lib.Built = true
			out, _ := exec.Command(bin, "-features").Output()
			lib.Compression = strings.Contains(string(out), "compression=true")
			r.variants[name] = featureVariants(string(out))
		}
		r.libs[name] = lib
		r.bin[name] = bin
		r.res.Libs = append(r.res.Libs, *lib)
	}
	return nil
}

var requireLine = regexp.MustCompile(`(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)`)

func moduleVersions(gomod string) map[string]string {
	b, _ := os.ReadFile(gomod)
	m := map[string]string{}
	for _, s := range requireLine.FindAllStringSubmatch(string(b), -1) {
		m[s[1]] = s[2]
	}
	return m
}

// buildHub compiles servers/hub, for the hub-broadcast scenario.
func (r *runner) buildHub() error {
	lib := HubServer
	lib.Version = treeVersion(r.opt.ModDir, "../hub")
	bin := filepath.Join(r.opt.ModDir, "bin", "srv-"+lib.Name)
	cmd := exec.Command("go", "build", "-o", bin, "./servers/"+lib.Name)
	cmd.Dir = r.opt.ModDir
	if out, err := cmd.CombinedOutput(); err != nil {
		lib.BuildErr = strings.TrimSpace(string(out))
		fmt.Fprintf(r.opt.Log, "  %s: build failed, it will be reported as such:\n%s\n", lib.Name, out)
	} else {
		lib.Built = true
	}
	r.libs[lib.Name] = &lib
	r.bin[lib.Name] = bin
	r.res.Libs = append(r.res.Libs, lib)
	return nil
}

func duplexVersion(modDir string) string { return treeVersion(modDir, "../websocket") }

// treeVersion is the last commit that touched dir (relative to modDir).
func treeVersion(modDir, dir string) string {
	out, err := exec.Command("git", "-C", modDir, "log", "-1", "--format=%h %cs", "--", dir).Output()
	if err != nil || len(out) == 0 {
		return "working tree"
	}
	return "main@" + strings.TrimSpace(string(out)) + " (+ working tree)"
}

// machine describes this machine.
func machine(fdLimit uint64) report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), FDLimit: fdLimit, LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(line)[1:], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	} else {
		m.GoVersion = runtime.Version()
	}
	return m
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// featureVariants reads the "variants=a,b" line of a server's -features.
func featureVariants(features string) []string {
	for _, line := range strings.Split(features, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "variants="); ok {
			return strings.Split(v, ",")
		}
	}
	return nil
}
