package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// ParseTokens reads a tokens file: one `name:token` a line; blank lines and lines starting with
// '#' are skipped. It returns token → name.
func ParseTokens(r io.Reader) (map[string]string, error) {
	tokens := map[string]string{}
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, token, ok := strings.Cut(line, ":")
		name, token = strings.TrimSpace(name), strings.TrimSpace(token)
		if !ok || name == "" || token == "" {
			return nil, fmt.Errorf("line %d: want name:token", n)
		}
		if _, dup := tokens[token]; dup {
			return nil, fmt.Errorf("line %d: token of %q repeats an earlier one", n, name)
		}
		if names[name] {
			return nil, fmt.Errorf("line %d: name %q repeats an earlier one", n, name)
		}
		tokens[token] = name
		names[name] = true
	}
	return tokens, sc.Err()
}

type tokenEntry struct {
	hash [sha256.Size]byte
	name string
}

// authenticator checks bearer tokens in constant time: every known token is compared, by hash,
// whatever matches first.
type authenticator struct {
	entries []tokenEntry
}

func newAuthenticator(tokens map[string]string) *authenticator {
	a := &authenticator{}
	for token, name := range tokens {
		a.entries = append(a.entries, tokenEntry{hash: sha256.Sum256([]byte(token)), name: name})
	}
	return a
}

// identify returns the token name of a write, or an error response. Without tokens only
// loopback clients may write, and their name is empty.
func (a *authenticator) identify(r *http.Request) (string, *httpError) {
	if len(a.entries) == 0 {
		if isLoopback(r.RemoteAddr) {
			return "", nil
		}
		return "", &httpError{status: http.StatusForbidden, message: "no tokens are configured: writes are accepted from loopback only"}
	}
	header := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(header, " ")
	if header == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &httpError{status: http.StatusUnauthorized, message: "missing bearer token (Authorization: Bearer <token>)"}
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	name, found := "", 0
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			name, found = e.name, 1
		}
	}
	if found == 0 {
		return "", &httpError{status: http.StatusForbidden, message: "unknown token"}
	}
	return name, nil
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
