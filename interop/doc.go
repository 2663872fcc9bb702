// Package interop holds the interoperability tests of the Duplex websocket
// package against other WebSocket implementations: gorilla/websocket and
// coder/websocket (clients and servers), Debian's python3-websockets and the
// npm ws package (clients). Everything is in the _test.go files and in the
// python/ and node/ peer scripts; run it with
//
//	bash setup.sh && go test -race ./...
package interop
