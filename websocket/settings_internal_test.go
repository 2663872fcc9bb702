package websocket

import (
	"testing"
	"time"
)

// TestSharedSettings checks that connections with equal Options share one
// resolved settings (the Conn keeps only a pointer), and that Options made
// per connection, past the table's bound, still get their own values.
func TestSharedSettings(t *testing.T) {
	opts := &Options{WriteTimeout: 3 * time.Second}
	a, b := sharedSettings(opts.resolve()), sharedSettings((&Options{WriteTimeout: 3 * time.Second}).resolve())
	if a != b {
		t.Error("equal settings are not shared")
	}
	for i := range 2 * maxSharedSettings {
		want := (&Options{ReadLimit: int64(1000 + i)}).resolve()
		if got := sharedSettings(want); *got != want {
			t.Fatalf("settings %d: got %+v, want %+v", i, *got, want)
		}
	}
	if c := sharedSettings(opts.resolve()); c != a || c.writeTimeout != 3*time.Second {
		t.Errorf("shared settings changed: %+v", *c)
	}
}
