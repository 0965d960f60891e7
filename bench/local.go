//go:build bench

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// localServer serves an HTTP receiver of the harness on 127.0.0.1: its
// goroutine is started by serveLocal and stopped and waited for by close.
type localServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// serveLocal serves h on a free port of 127.0.0.1; what names the
// receiver in errors.
func serveLocal(what string, h http.Handler) (*localServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s receiver: %w", what, err)
	}
	s := &localServer{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // ends with ErrServerClosed
	}()
	return s, nil
}

// base is the server's base URL.
func (s *localServer) base() string { return "http://" + s.ln.Addr().String() }

// close stops the server, waiting up to a few seconds for requests in
// flight.
func (s *localServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
