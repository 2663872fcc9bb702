// Package http2xconnect turns on WebSockets over HTTP/2 in net/http's
// server. Import it for its side effect, in the main package:
//
//	import _ "github.com/duplexws/duplex/websocket/http2xconnect"
//
// Go's HTTP/2 server accepts the extended CONNECT of RFC 8441, which opens a
// WebSocket on an HTTP/2 stream, only when the GODEBUG environment variable
// holds http2xconnect=1 as net/http starts: net/http reads the variable
// itself, in an init function, and the setting is not one the go command
// knows, so neither a //go:debug directive nor a godebug line in go.mod can
// give it (both are refused as unknown). This package sets the variable in
// its own init function, which runs before net/http's: Go initializes, among
// the packages whose imports are ready, the one first in import-path order
// (the language spec, since Go 1.21), this package imports only os and
// strings, and its path sorts before "net/http".
//
// A GODEBUG that already names http2xconnect (http2xconnect=0 too) is left
// as it is. The change is made to the process's environment, so programs it
// starts inherit it.
//
// With extended CONNECT on, the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL
// on every HTTP/2 connection, and browsers then open their WebSockets to it
// over HTTP/2. Turn it on only when every WebSocket endpoint of the program
// answers an extended CONNECT, as those of package websocket do; Go leaves it
// off by default because other WebSocket libraries do not (Go issue 71128).
package http2xconnect

import (
	"os"
	"strings"
)

func init() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "http2xconnect=") {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	os.Setenv("GODEBUG", godebug+"http2xconnect=1")
}
