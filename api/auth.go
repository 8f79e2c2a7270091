package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Scope is what a token may write (CONTRACT section 6, v1.1).
type Scope string

// The scopes. A token without scopes has them all.
const (
	// ScopeTrigger creates jobs: Trigger's token.
	ScopeTrigger Scope = "trigger"
	// ScopeRunner starts and finishes jobs: Buildbot's token.
	ScopeRunner Scope = "runner"
	// ScopeAdmin reschedules jobs (one or in bulk) and replays rejected messages: people's.
	ScopeAdmin Scope = "admin"
)

// Scopes lists every scope.
var Scopes = []Scope{ScopeTrigger, ScopeRunner, ScopeAdmin}

// Token is what a write token stands for: its name, recorded as the actor of every write, and
// its scopes; no scopes means every scope.
type Token struct {
	Name   string
	Scopes []Scope
}

// Allows reports whether the token may write what needs scope.
func (t Token) Allows(scope Scope) bool {
	return len(t.Scopes) == 0 || slices.Contains(t.Scopes, scope)
}

// ParseTokens reads a tokens file: one token a line, `name:token` or `name:token:scope,scope`
// (scopes trigger, runner, admin; none means all, so files of name:token lines keep working).
// A token may itself contain ':'; a last ':'-separated part made only of scope names is read as
// the scopes. Blank lines and lines starting with '#' are skipped. It returns token → Token.
func ParseTokens(r io.Reader) (map[string]Token, error) {
	tokens := map[string]Token{}
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
			return nil, fmt.Errorf("line %d: want name:token or name:token:scope,scope", n)
		}
		var scopes []Scope
		if i := strings.LastIndexByte(token, ':'); i >= 0 {
			if s, ok := parseScopes(token[i+1:]); ok {
				token, scopes = strings.TrimSpace(token[:i]), s
			}
		}
		if token == "" {
			return nil, fmt.Errorf("line %d: %q has no token", n, name)
		}
		if _, dup := tokens[token]; dup {
			return nil, fmt.Errorf("line %d: token of %q repeats an earlier one", n, name)
		}
		if names[name] {
			return nil, fmt.Errorf("line %d: name %q repeats an earlier one", n, name)
		}
		tokens[token] = Token{Name: name, Scopes: scopes}
		names[name] = true
	}
	return tokens, sc.Err()
}

// parseScopes reads "trigger,runner"; ok is false unless every part is a scope.
func parseScopes(s string) ([]Scope, bool) {
	var scopes []Scope
	for _, part := range strings.Split(s, ",") {
		sc := Scope(strings.TrimSpace(part))
		if !slices.Contains(Scopes, sc) {
			return nil, false
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return scopes, len(scopes) > 0
}

type tokenEntry struct {
	hash  [sha256.Size]byte
	token Token
}

// authenticator checks bearer tokens in constant time: every known token is compared, by hash,
// whatever matches first.
type authenticator struct {
	entries []tokenEntry
}

func newAuthenticator(tokens map[string]Token) *authenticator {
	a := &authenticator{}
	for secret, t := range tokens {
		a.entries = append(a.entries, tokenEntry{hash: sha256.Sum256([]byte(secret)), token: t})
	}
	return a
}

// proxyHeaders are the headers a reverse proxy adds; their presence means the client is not
// where the connection comes from.
var proxyHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Real-IP"}

// identify returns the token name of a write that needs scope, or an error response. Without
// tokens only loopback clients may write, and only directly: a request that came through a
// reverse proxy on the same host (it carries Forwarded, X-Forwarded-For or X-Real-IP) is
// refused, for the proxy makes every client on the internet look local. Their name is empty.
func (a *authenticator) identify(r *http.Request, scope Scope) (string, *httpError) {
	if len(a.entries) == 0 {
		if !isLoopback(r.RemoteAddr) {
			return "", &httpError{status: http.StatusForbidden, message: "no tokens are configured: writes are accepted from loopback only"}
		}
		for _, h := range proxyHeaders {
			if r.Header.Get(h) != "" {
				return "", &httpError{status: http.StatusForbidden, message: "this write came through a proxy (" + h +
					"); without tokens ExecDB accepts writes only from loopback clients directly: configure EXECDB_TOKENS_FILE and send Authorization: Bearer <token>"}
			}
		}
		return "", nil
	}
	header := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(header, " ")
	if header == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &httpError{status: http.StatusUnauthorized, message: "missing bearer token (Authorization: Bearer <token>)"}
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	var token Token
	found := 0
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			token, found = e.token, 1
		}
	}
	if found == 0 {
		return "", &httpError{status: http.StatusForbidden, message: "unknown token"}
	}
	if !token.Allows(scope) {
		return "", &httpError{status: http.StatusForbidden, message: fmt.Sprintf("token %q lacks the %s scope this write needs (it has %s)",
			token.Name, scope, joinScopes(token.Scopes))}
	}
	return token.Name, nil
}

func joinScopes(scopes []Scope) string {
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
