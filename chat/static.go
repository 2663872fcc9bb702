package chat

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
)

// static holds the page and its script: plain files, no build step.
//
//go:embed static
var static embed.FS

// contentSecurityPolicy lets the page load only its own script and style and
// open WebSockets only to its own host.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveStatic serves one embedded file. Embedded files have no modification
// time, so an ETag from the content lets browsers revalidate cheaply.
func serveStatic(name string) http.HandlerFunc {
	path := "static/" + name
	data, err := fs.ReadFile(static, path)
	if err != nil {
		panic("chat: missing embedded file " + path)
	}
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		http.ServeFileFS(w, r, static, path)
	}
}
