module github.com/duplexws/duplex/interop

go 1.26.0

replace github.com/duplexws/duplex => ../

require (
	github.com/coder/websocket v1.8.15
	github.com/duplexws/duplex v0.0.0-00010101000000-000000000000
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	go.uber.org/goleak v1.3.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
)
