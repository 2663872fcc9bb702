package websocket

import (
	"net/http"
	"strings"
)

// extension is one element of a Sec-WebSocket-Extensions header: a name and
// its parameters in order (RFC 6455 §9.1). A parameter without a value has
// value "" and hasValue false.
type extension struct {
	name   string
	params []extensionParam
}

type extensionParam struct {
	name, value string
	hasValue    bool
}

// parseExtensions reads every Sec-WebSocket-Extensions header of h. It
// returns false when the header is malformed.
func parseExtensions(h http.Header) ([]extension, bool) {
	var exts []extension
	for _, line := range h.Values(headerExtensions) {
		s := line
		for {
			s = strings.TrimLeft(s, " \t")
			if s == "" {
				break
			}
			var ext extension
			var ok bool
			ext.name, s, ok = readToken(s)
			if !ok {
				return nil, false
			}
			for {
				s = strings.TrimLeft(s, " \t")
				if s == "" || s[0] == ',' {
					break
				}
				if s[0] != ';' {
					return nil, false
				}
				s = strings.TrimLeft(s[1:], " \t")
				var p extensionParam
				if p.name, s, ok = readToken(s); !ok {
					return nil, false
				}
				s = strings.TrimLeft(s, " \t")
				if s != "" && s[0] == '=' {
					s = strings.TrimLeft(s[1:], " \t")
					p.hasValue = true
					if s != "" && s[0] == '"' {
						if p.value, s, ok = readQuoted(s); !ok {
							return nil, false
						}
					} else if p.value, s, ok = readToken(s); !ok {
						return nil, false
					}
				}
				ext.params = append(ext.params, p)
			}
			exts = append(exts, ext)
			if s != "" { // a comma
				s = s[1:]
			}
		}
	}
	return exts, true
}

// readToken reads an RFC 7230 token at the start of s.
func readToken(s string) (token, rest string, ok bool) {
	i := 0
	for i < len(s) && validToken(s[i:i+1]) {
		i++
	}
	return s[:i], s[i:], i > 0
}

// readQuoted reads a quoted-string at the start of s; RFC 6455 §9.1 requires
// its content to be a token too.
func readQuoted(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			v := b.String()
			return v, s[i+1:], validToken(v)
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
