package hub

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// clientScript is the hub's JavaScript client, an ES module with no
// dependencies and no build step (client/README.md).
//
//go:embed client/duplex.js
var clientScript string

// ClientScript serves the hub's JavaScript client (client/duplex.js): mount
// it where a page can import it, as chat does at /chat/duplex.js.
func ClientScript() http.Handler {
	sum := sha256.Sum256([]byte(clientScript))
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "duplex.js", time.Time{}, strings.NewReader(clientScript))
	})
}
