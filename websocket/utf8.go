package websocket

import "unicode/utf8"

// utf8Validator checks a text message for valid UTF-8 as it arrives, chunk by
// chunk, so that an invalid byte fails the connection as soon as it is read
// (RFC 6455 §8.1), even in the middle of a frame, and a code point split
// across frames or reads is still checked exactly.
type utf8Validator struct {
	need   int8 // continuation bytes still expected
	lo, hi byte // range the next continuation byte must fall in
}

// firstContinuation returns, for a lead byte, how many continuation bytes
// follow and the range of the first one (Unicode Table 3-7), or n == 0 when
// the byte cannot start a sequence.
func firstContinuation(lead byte) (n int8, lo, hi byte) {
	switch {
	case lead >= 0xC2 && lead <= 0xDF:
		return 1, 0x80, 0xBF
	case lead == 0xE0:
		return 2, 0xA0, 0xBF
	case lead == 0xED:
		return 2, 0x80, 0x9F // no surrogates
	case lead >= 0xE1 && lead <= 0xEF:
		return 2, 0x80, 0xBF
	case lead == 0xF0:
		return 3, 0x90, 0xBF
	case lead >= 0xF1 && lead <= 0xF3:
		return 3, 0x80, 0xBF
	case lead == 0xF4:
		return 3, 0x80, 0x8F // nothing above U+10FFFF
	}
	return 0, 0, 0
}

// write validates the next chunk of the message. It returns false at the
// first byte that can no longer be part of valid UTF-8.
func (v *utf8Validator) write(p []byte) bool {
	for v.need > 0 {
		if len(p) == 0 {
			return true
		}
		if p[0] < v.lo || p[0] > v.hi {
			return false
		}
		v.lo, v.hi = 0x80, 0xBF
		v.need--
		p = p[1:]
	}
	// Find a sequence cut off at the end of p: back up over at most three
	// continuation bytes to a lead byte.
	end := len(p)
	i := end
	for i > 0 && end-i < 3 && p[i-1]&0xC0 == 0x80 {
		i--
	}
	if i > 0 && p[i-1] >= 0xC0 {
		lead := i - 1
		if n, _, _ := firstContinuation(p[lead]); n > 0 && int(n) > end-lead-1 {
			if !utf8.Valid(p[:lead]) {
				return false
			}
			return v.start(p[lead:])
		}
	}
	return utf8.Valid(p)
}

// start begins an incomplete sequence: p is a lead byte and fewer
// continuation bytes than it needs.
func (v *utf8Validator) start(p []byte) bool {
	n, lo, hi := firstContinuation(p[0])
	v.need, v.lo, v.hi = n, lo, hi
	return v.write(p[1:])
}

// complete reports whether the message ended on a code point boundary.
func (v *utf8Validator) complete() bool { return v.need == 0 }

func (v *utf8Validator) reset() { *v = utf8Validator{} }
