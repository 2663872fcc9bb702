package natsbroker

import (
	"errors"
	"strings"
)

// A room name is arbitrary UTF-8 (the hub allows up to 256 bytes); a NATS
// subject token may not hold '.', '*', '>' or white space, and tools handle
// plain ASCII best. token keeps ASCII letters, digits and '-' as they are
// and writes every other byte as '_' and two upper-case hex digits, so that
// "lobby" stays "lobby" (readable in `nats sub`) and the mapping is
// one-to-one: '_' itself is always escaped, so a token never holds "__" or a
// '_' without two hex digits after it.
func token(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// untoken reverses token.
func untoken(t string) (string, error) {
	if !strings.Contains(t, "_") {
		return t, nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(t) {
			return "", errBadToken
		}
		hi, ok1 := unhex(t[i+1])
		lo, ok2 := unhex(t[i+2])
		if !ok1 || !ok2 {
			return "", errBadToken
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

var errBadToken = errors.New("natsbroker: malformed subject token")

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// userToken is the user token of a client without a user: "__" and the
// client's token, which no encoded user name can be (token never writes
// "__"), so that each anonymous client counts as a user of its own, as in
// the memory broker.
func userToken(user, client string) string {
	if user == "" {
		return "__" + token(client)
	}
	return token(user)
}
