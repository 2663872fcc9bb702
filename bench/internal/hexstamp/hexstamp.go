// Package hexstamp writes and reads the fixed-width lowercase hex numbers
// that the load generators stamp into messages (sequence numbers, send
// times): text, so that a stamp survives a JSON string and a text message,
// and fixed-width, so that it is written in place without allocating.
package hexstamp

const digits = "0123456789abcdef"

// Put writes v into b as len(b) hex digits, dropping what does not fit.
func Put(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
}

// Append appends v as n hex digits.
func Append(b []byte, v uint64, n int) []byte {
	b = append(b, make([]byte, n)...)
	Put(b[len(b)-n:], v)
	return b
}

// Parse reads b as lowercase hex digits; it reports false for any other
// byte.
func Parse(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
