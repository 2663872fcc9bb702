package loadgen

import (
	"encoding/json"
	"testing"

	"github.com/duplexws/duplex/bench/internal/hexstamp"
)

func TestStamp(t *testing.T) {
	tmpl, at := stampTemplate(64)
	if len(tmpl) != 64 || !json.Valid(tmpl) {
		t.Fatalf("template %q", tmpl)
	}
	b := append([]byte(nil), tmpl...)
	hexstamp.Put(b[at:at+16], 0x1234)
	hexstamp.Put(b[at+16:at+32], 987654321012)
	hub := append(append([]byte(`{"push":"pub","room":"r","offset":7,"epoch":"e","time":1,"data":`), b...), '}')
	if !json.Valid(hub) {
		t.Fatalf("%q", hub)
	}
	for _, msg := range [][]byte{b, hub} {
		var c conn
		for i := 0; i < len(msg); i += 5 { // in pieces, as reads may cut it
			c.keepTail(msg[i:min(i+5, len(msg))])
		}
		seq, sent, ok := stamp(c.tail[:])
		if !ok || seq != 0x1234 || sent != 987654321012 {
			t.Errorf("%q: %d %d %v", msg, seq, sent, ok)
		}
	}
	if _, _, ok := stamp([]byte(`{"id":2,"result":{"room":"bench","x":1}}`)); ok {
		t.Error("a reply read as a stamp")
	}
}
