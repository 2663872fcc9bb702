package harness

import (
	"slices"
	"testing"

	"github.com/duplexws/duplex/bench/internal/report"
)

// The full run measures, beside Open, the idle modes servers/duplex lists
// in its features (so the event loop joins once the server serves it); the
// short run none; a -duplex-variants list is kept as given.
func TestDefaultDuplexVariants(t *testing.T) {
	for _, c := range []struct {
		name     string
		short    bool
		given    []string
		features string
		want     []string
	}{
		{"full, no event loop yet", false, nil, "compression=true\nvariants=accept,nocontext,prepared\n", []string{"accept"}},
		{"full, with the event loop", false, nil, "compression=true\nvariants=accept,nocontext,prepared,events\n", []string{"accept", "events"}},
		{"full, a server that lists none", false, nil, "compression=true\n", []string{}},
		{"short", true, nil, "variants=accept,events\n", []string{}},
		{"given", true, []string{"events"}, "variants=accept\n", []string{"events"}},
		{"given none", false, []string{}, "variants=accept,events\n", []string{}},
	} {
		r := &runner{opt: Options{Short: c.short, DuplexVariants: c.given},
			variants: map[string][]string{report.Ours: featureVariants(c.features)}}
		r.defaultDuplexVariants()
		if !slices.Equal(r.opt.DuplexVariants, c.want) || r.opt.DuplexVariants == nil {
			t.Errorf("%s: %q, want %q", c.name, r.opt.DuplexVariants, c.want)
		}
	}
}

// Echo and pipelined run the event loop beside Open whenever servers/duplex
// lists it, the short run too; a -duplex-echo-variants list is kept as
// given.
func TestDefaultDuplexEchoVariants(t *testing.T) {
	for _, c := range []struct {
		name     string
		short    bool
		given    []string
		features string
		want     []string
	}{
		{"no event loop yet", false, nil, "variants=accept,nocontext,prepared\n", []string{}},
		{"full", false, nil, "variants=accept,nocontext,prepared,events\n", []string{"events"}},
		{"short", true, nil, "variants=accept,events\n", []string{"events"}},
		{"given", false, []string{"accept", "events"}, "variants=accept,events\n", []string{"accept", "events"}},
		{"given none", false, []string{}, "variants=accept,events\n", []string{}},
	} {
		r := &runner{opt: Options{Short: c.short, DuplexEchoVariants: c.given},
			variants: map[string][]string{report.Ours: featureVariants(c.features)}}
		r.defaultDuplexVariants()
		if !slices.Equal(r.opt.DuplexEchoVariants, c.want) || r.opt.DuplexEchoVariants == nil {
			t.Errorf("%s: %q, want %q", c.name, r.opt.DuplexEchoVariants, c.want)
		}
	}
}
