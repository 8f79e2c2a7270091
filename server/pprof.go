package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// startPprof serves Go's profiles (net/http/pprof, under /debug/pprof/) on addr, on a listener
// of its own so that they never share the API's port; empty addr serves none. It returns the
// address it listens on, and a func that stops it.
func startPprof(addr string, log *zap.Logger) (listening string, stop func(), err error) {
	if addr == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("EXECDB_PPROF: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener stopped", zap.Error(err))
		}
	}()
	if !loopbackAddress(ln.Addr().String()) {
		log.Warn("profiles served beyond loopback: anyone who reaches them can read the process's memory and stacks",
			zap.String("pprof", ln.Addr().String()))
	} else {
		log.Info("serving profiles", zap.String("pprof", "http://"+ln.Addr().String()+"/debug/pprof/"))
	}
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck // a profile in flight is cut short
	}, nil
}
