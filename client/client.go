// Package client talks to the ExecDB HTTP API (CONTRACT section 6): it creates, starts, finishes,
// reads and reschedules jobs and reads their history.
//
// Every call retries connection errors and 5xx answers (but 501 and 505) with exponential backoff
// within a time budget, and never retries a 4xx answer. Every write the client makes is safe to repeat: start
// and finish are idempotent in the state machine, a reschedule of an already rescheduled job
// answers with its successor, and a create carries an Idempotency-Key that stays the same across
// the retries of one call. So a Buildbot step that reports to ExecDB survives an ExecDB restart.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the client's settings.
const (
	// DefaultServer is the server a client command talks to when none is configured.
	DefaultServer = "http://127.0.0.1:5003"
	// DefaultBudget is how long a call keeps retrying before it gives up.
	DefaultBudget = 2 * time.Minute
	// DefaultInitialBackoff is the wait after the first failed attempt; it doubles after each
	// further failure.
	DefaultInitialBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff caps one wait between two attempts.
	DefaultMaxBackoff = 15 * time.Second
	// DefaultAttemptTimeout bounds one attempt, so that a server that accepts connections but
	// never answers does not hang a call forever.
	DefaultAttemptTimeout = 30 * time.Second
	// DefaultUnansweredRead is how long a read (GET) keeps retrying while the server has not
	// answered at all (connection refused, no such host): a mistyped server should not hang a
	// person's command for the whole budget. Once the server answered (a 503, say), the budget
	// applies. Writes always get the whole budget: a Buildbot step reporting an end waits for
	// an ExecDB that restarts.
	DefaultUnansweredRead = 10 * time.Second
)

// APIPrefix is the path under which the server serves the API.
const APIPrefix = "/api/v1"

// maxResponseBytes bounds how much of a response body the client reads.
const maxResponseBytes = 32 << 20

// Client is a client of one ExecDB server. Create one with New.
type Client struct {
	base           *url.URL // scheme, host and path prefix, without a trailing slash
	token          string
	hc             *http.Client
	budget         time.Duration
	initial        time.Duration
	maxBackoff     time.Duration
	attemptTimeout time.Duration
	unansweredRead time.Duration
	jitter         bool
	userAgent      string
	logf           func(format string, args ...any)
	newKey         func() string
}

// Option changes a setting of a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc instead of a default client.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithBudget sets how long a call keeps retrying after its first attempt failed: no new attempt
// starts later than budget after the first one. Zero or less means a single attempt, no retries.
func WithBudget(budget time.Duration) Option {
	return func(c *Client) { c.budget = budget }
}

// WithBackoff sets the wait after the first failed attempt, which doubles after each further
// failure up to max. Values of zero or less keep the defaults. Waits are spread by ±25% so that
// many clients retrying against a restarted server do not all come back at once.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *Client) {
		if initial > 0 {
			c.initial = initial
		}
		if max > 0 {
			c.maxBackoff = max
		}
	}
}

// WithAttemptTimeout bounds one attempt (connecting, sending and reading the answer). Zero or
// less keeps the default.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.attemptTimeout = d
		}
	}
}

// WithUnansweredRead sets how long a read keeps retrying while the server has not answered at
// all (DefaultUnansweredRead); zero or less gives reads the whole budget.
func WithUnansweredRead(d time.Duration) Option {
	return func(c *Client) { c.unansweredRead = d }
}

// WithLogf makes the client report each failed attempt it is going to retry, e.g. to a Buildbot
// step's log. By default it says nothing.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *Client) { c.logf = logf }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// withoutJitter makes the waits exact; for tests.
func withoutJitter() Option {
	return func(c *Client) { c.jitter = false }
}

// New makes a client of the server at baseURL, e.g. "http://127.0.0.1:5003" or
// "https://taskotron.example.org/execdb" behind a proxy; a trailing "/api/v1" is accepted too.
// A non-empty token is sent as "Authorization: Bearer <token>" with every write.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultServer
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server URL %q: no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("server URL %q: must not carry a query, fragment or user", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.Path = strings.TrimSuffix(u.Path, APIPrefix)
	u.RawPath = ""
	c := &Client{
		base:           u,
		token:          token,
		hc:             http.DefaultClient,
		budget:         DefaultBudget,
		initial:        DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
		attemptTimeout: DefaultAttemptTimeout,
		unansweredRead: DefaultUnansweredRead,
		jitter:         true,
		userAgent:      "execdb-client/1",
		logf:           func(string, ...any) {},
		newKey:         newIdempotencyKey,
	}
	for _, o := range opts {
		o(c)
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	return c, nil
}

// BaseURL is the server's URL the client was made with, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

// Response is a successful answer of the server: its status and its body as sent.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Get reads path with the given query parameters; use it for the endpoints this package has no
// method for (search, stats, rejected messages). A path starting with "/api/" is taken from the
// server's root (as the `next` and `href` links of the API give it); any other path is taken
// under /api/v1, so Get(ctx, "/stats", q) reads /api/v1/stats. A query already in path is kept
// and query's parameters are added to it. An answer other than 2xx is an *APIError.
func (c *Client) Get(ctx context.Context, path string, query url.Values) (*Response, error) {
	return c.do(ctx, http.MethodGet, path, query, nil, nil)
}

// Post sends body as JSON to path (resolved as Get resolves it), with the token and the same
// retries as the job methods; use it for the writes this package has no method for (bulk
// rescheduling). An answer other than 2xx is an *APIError.
func (c *Client) Post(ctx context.Context, path string, body any) (*Response, error) {
	return c.post(ctx, path, body, nil)
}

// post sends body as JSON to path under /api/v1. Its X-Request-ID header, which the server
// records as the message id of the event, stays the same across the retries of one call, so a
// retried write shows in the job's history as a duplicate of the same request.
func (c *Client) post(ctx context.Context, path string, body any, header http.Header) (*Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if header == nil {
		header = http.Header{}
	}
	if header.Get("X-Request-ID") == "" {
		header.Set("X-Request-ID", c.newKey())
	}
	return c.do(ctx, http.MethodPost, path, nil, b, header)
}

// resolve builds the URL of path (see Get) with query added.
func (c *Client) resolve(path string, query url.Values) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", path, err)
	}
	u := *c.base
	if ref.IsAbs() || ref.Host != "" {
		if ref.Scheme != c.base.Scheme || ref.Host != c.base.Host {
			return nil, fmt.Errorf("path %q: not on the server %s", path, c.base)
		}
		u.Path = ref.Path
	} else {
		p := ref.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		if !strings.HasPrefix(p, "/api/") {
			p = APIPrefix + p
		}
		u.Path = c.base.Path + p
	}
	u.RawPath = ""
	q := ref.Query()
	for k, vs := range query {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return &u, nil
}

// do sends one request, retrying it as the package documentation says.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) (*Response, error) {
	u, err := c.resolve(path, query)
	if err != nil {
		return nil, err
	}
	what := method + " " + u.Path
	start := time.Now()
	wait := c.initial
	budget := c.budget
	if method == http.MethodGet && c.unansweredRead > 0 && c.unansweredRead < budget {
		budget = c.unansweredRead // until the server answers
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, method, u.String(), body, header)
		if err == nil && resp.Status < 300 {
			return resp, nil
		}
		if err == nil {
			budget = c.budget // the server is there
		}
		if err == nil {
			apiErr := newAPIError(resp)
			if !retryableStatus(resp.Status) {
				return nil, fmt.Errorf("%s: %w", what, apiErr)
			}
			err = apiErr
		} else if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
		} else if permanent(err) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		// A connection error or a 5xx answer: retry while the budget lasts.
		elapsed := time.Since(start)
		left := budget - elapsed
		if left <= 0 {
			if attempt == 1 {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			if budget < c.budget {
				return nil, fmt.Errorf("%s: no answer from %s in %s (%d attempts; is the server's URL right?): %w",
					what, c.base.Host, elapsed.Round(time.Millisecond), attempt, err)
			}
			return nil, fmt.Errorf("%s: gave up after %d attempts in %s: %w",
				what, attempt, elapsed.Round(time.Millisecond), err)
		}
		d := c.spread(wait)
		d = max(d, min(retryAfter(resp), c.maxBackoff))
		d = min(d, left)
		c.logf("%s: attempt %d failed: %v; retrying in %s", what, attempt, err, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w (last error: %v)", what, context.Cause(ctx), err)
		case <-t.C:
		}
		wait = min(wait*2, c.maxBackoff)
	}
}

// once makes a single attempt. An error is a transport error; any answer is a Response.
func (c *Client) once(ctx context.Context, method, u string, body []byte, header http.Header) (*Response, error) {
	actx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet && method != http.MethodHead && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The *url.Error repeats the method and URL, which do's messages already name.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", c.attemptTimeout, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// retryableStatus reports the answers worth another attempt: 5xx, except 501 Not Implemented
// and 505 HTTP Version Not Supported, which no retry changes.
func retryableStatus(status int) bool {
	return status >= 500 && status != http.StatusNotImplemented && status != http.StatusHTTPVersionNotSupported
}

// spread applies ±25% jitter to d.
func (c *Client) spread(d time.Duration) time.Duration {
	if !c.jitter || d <= 0 {
		return d
	}
	return d*3/4 + rand.N(d/2+1)
}

// retryAfter is the wait a 503 or 429 answer asks for in seconds, or 0.
func retryAfter(resp *Response) time.Duration {
	if resp == nil {
		return 0
	}
	s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// permanent reports transport errors that no retry can cure: a certificate the client does not
// trust stays untrusted.
func permanent(err error) bool {
	var cert *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	return errors.As(err, &cert) || errors.As(err, &unknownAuthority) || errors.As(err, &hostname)
}
