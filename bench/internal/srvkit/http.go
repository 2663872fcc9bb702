package srvkit

import (
	"net"
	"net/http"
)

// ServeHTTP listens on cfg.Addr and serves h with net/http until Stop.
// Hijacked (upgraded) connections belong to their handlers and end when the
// client closes them.
func ServeHTTP(cfg Config, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return &Server{Addr: ln.Addr().String(), Stop: func() { _ = srv.Close() }}, nil
}
