package websocket

import (
	"testing"
	"unsafe"
)

// TestConnSizeClass keeps Conn within its allocation size class: every idle
// connection holds one for its whole life, in every mode, and one field too
// many moves them all up a class (384 to 416 bytes). What only some
// connections need belongs in connRare.
func TestConnSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(Conn{}); size > connSizeClass {
		t.Errorf("Conn is %d bytes, over its %d-byte size class", size, connSizeClass)
	}
}
