package websocket

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin accepts a request without Origin (not from a browser), one
// whose Origin names the request's own host, and one matching a pattern.
func checkOrigin(r *http.Request, patterns []string) (ok bool, why string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true, ""
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false, "the Origin header " + quote(origin) + " is not a valid origin"
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true, ""
	}
	for _, p := range patterns {
		target := strings.ToLower(u.Host)
		if strings.Contains(p, "://") {
			target = strings.ToLower(u.Scheme + "://" + u.Host)
		}
		if matched, err := path.Match(strings.ToLower(p), target); err == nil && matched {
			return true, ""
		}
	}
	return false, "origin " + quote(origin) + " is not allowed to open a WebSocket to " + quote(r.Host)
}

func quote(s string) string { return `"` + s + `"` }
