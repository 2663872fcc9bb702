package harness

import (
	"slices"
	"testing"

	"github.com/duplexws/duplex/bench/internal/report"
)

// variantCase is a run's settings, servers/duplex's features and the
// variants defaultDuplexVariants should pick from them.
type variantCase struct {
	name     string
	short    bool
	given    []string
	features string
	want     []string
}

// checkDefaultVariants runs defaultDuplexVariants on each case, with the
// option field names given and expected.
func checkDefaultVariants(t *testing.T, cases []variantCase, field func(*Options) *[]string) {
	t.Helper()
	for _, c := range cases {
		r := &runner{opt: Options{Short: c.short}, variants: map[string][]string{report.Ours: featureVariants(c.features)}}
		*field(&r.opt) = c.given
		r.defaultDuplexVariants()
		if got := *field(&r.opt); !slices.Equal(got, c.want) || got == nil {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The full run measures, beside Open, the idle modes servers/duplex lists
// in its features (so the event loop joins once the server serves it); the
// short run none; a -duplex-variants list is kept as given.
func TestDefaultDuplexVariants(t *testing.T) {
	checkDefaultVariants(t, []variantCase{
		{"full, no event loop yet", false, nil, "compression=true\nvariants=accept,nocontext,prepared\n", []string{"accept"}},
		{"full, with the event loop", false, nil, "compression=true\nvariants=accept,nocontext,prepared,events\n", []string{"accept", "events"}},
		{"full, a server that lists none", false, nil, "compression=true\n", []string{}},
		{"short", true, nil, "variants=accept,events\n", []string{}},
		{"given", true, []string{"events"}, "variants=accept\n", []string{"events"}},
		{"given none", false, []string{}, "variants=accept,events\n", []string{}},
	}, func(o *Options) *[]string { return &o.DuplexVariants })
}

// Echo and pipelined run the event loop beside Open whenever servers/duplex
// lists it, the short run too; a -duplex-echo-variants list is kept as
// given.
func TestDefaultDuplexEchoVariants(t *testing.T) {
	checkDefaultVariants(t, []variantCase{
		{"no event loop yet", false, nil, "variants=accept,nocontext,prepared\n", []string{}},
		{"full", false, nil, "variants=accept,nocontext,prepared,events\n", []string{"events"}},
		{"short", true, nil, "variants=accept,events\n", []string{"events"}},
		{"given", false, []string{"accept", "events"}, "variants=accept,events\n", []string{"accept", "events"}},
		{"given none", false, []string{}, "variants=accept,events\n", []string{}},
	}, func(o *Options) *[]string { return &o.DuplexEchoVariants })
}
