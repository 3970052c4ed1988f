package server

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// originAllowed decides the Origin of a WebSocket upgrade. A browser page
// may open a WebSocket to any site, borrowing its user's network position
// (a listener behind a firewall, or on loopback): only a page of the
// listener's own host (the request's Host) or of an allowed_origins pattern
// may. Clients that are not browsers send no Origin and are allowed.
//
// A pattern matches, case-insensitively with path.Match, the Origin's host
// ("*.example.com"), or its scheme and host when it names a scheme
// ("https://app.example.com").
func originAllowed(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed on this listener", origin)
}
