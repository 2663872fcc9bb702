package websocket

import (
	"testing"
	"unicode/utf8"
)

var utf8Samples = []string{
	"", "hello", "κόσμε", "\u0000", "\u0080", "\u0800", "\U00010000", "\u007f", "\u07ff", "\uffff", "\U0010FFFF",
	"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", // around the surrogates
	"\xc0\x80", "\xc1\xbf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x88\x80\x80\xaf", "\xfc\x84\x80\x80\x80\xaf", // overlong / 5,6-byte
	"\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\x80\xed\xb0\x80", // surrogates
	"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", // beyond U+10FFFF, invalid bytes
	"\x80", "\xbf", "\xc2", "\xe2\x82", "\xf0\x9f\x98", "κόσμε\xed\xa0\x80edited", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
}

// TestUTF8ValidatorMatchesStdlib splits every sample at every point (and in
// single bytes) and checks the incremental verdict equals utf8.Valid.
func TestUTF8ValidatorMatchesStdlib(t *testing.T) {
	for _, s := range utf8Samples {
		want := utf8.ValidString(s)
		for i := 0; i <= len(s); i++ {
			var v utf8Validator
			got := v.write([]byte(s[:i])) && v.write([]byte(s[i:])) && v.complete()
			if got != want {
				t.Errorf("%q split at %d: got %v, want %v", s, i, got, want)
			}
		}
		var v utf8Validator
		ok := true
		for i := 0; i < len(s) && ok; i++ {
			ok = v.write([]byte{s[i]})
		}
		if got := ok && v.complete(); got != want {
			t.Errorf("%q byte by byte: got %v, want %v", s, got, want)
		}
	}
}

// TestUTF8FailsFast checks that the validator rejects the first byte that can
// no longer begin or continue valid UTF-8, without waiting for more.
func TestUTF8FailsFast(t *testing.T) {
	type failCase struct {
		prefix string // valid so far
		bad    byte   // the byte that must be rejected at once
	}
	cases := []failCase{
		{"κόσμε\xf4", 0x90}, // U+110000 and up
		{"ab\xed", 0xa0},    // surrogate
		{"\xe0", 0x80},      // overlong 3-byte form
		{"\xf0", 0x80},      // overlong 4-byte form
		{"abc", 0xc0},       // never valid
		{"abc", 0xf8},       // 5-byte form
		{"\xc2", 0x41},      // missing continuation
	}
	for _, c := range cases {
		var v utf8Validator
		if !v.write([]byte(c.prefix)) {
			t.Fatalf("%q rejected too early", c.prefix)
		}
		if v.write([]byte{c.bad}) {
			t.Errorf("%q then %#x: accepted, want rejected at once", c.prefix, c.bad)
		}
	}
}
