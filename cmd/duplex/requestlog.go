package main

import (
	"log/slog"
	"net/http"
)

// logRequests logs each request at debug level, with its HTTP version: an
// HTTP/2 WebSocket shows as "CONNECT /chat/connect HTTP/2.0". It does not
// wrap the ResponseWriter, so hijacking and flushing work as without it.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.Debug("request", "method", r.Method, "path", r.URL.Path, "proto", r.Proto, "remote", r.RemoteAddr)
		next.ServeHTTP(w, r)
	})
}
