package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedbench/embedbench/internal/api"
)

// Connection bounds. net/http has none of its own (golang.org/x/net/netutil's LimitListener
// only blocks Accept, which leaves refused clients hanging in the kernel's backlog), so the
// listener is wrapped: a connection over a bound is answered at once with a JSON error and
// closed, and everything else is counted until it closes.

const (
	// refusalLinger is how long a refused connection is read from after its answer, so that
	// the client's request bytes do not turn our close into a reset that eats the answer.
	refusalLinger = time.Second
	// maxRefusing bounds the goroutines that answer refused connections; past it a refused
	// connection is closed without an answer, so a connection flood costs no more than that.
	maxRefusing = 64
)

// connLimits counts open connections, in all and by client address.
type connLimits struct {
	max, perClient int // 0: unbounded

	mu     sync.Mutex
	open   int
	byHost map[string]int

	refusing atomic.Int32
	refused  func(reason string) // counts a refusal in the metrics
}

func newConnLimits(max, perClient int, refused func(string)) *connLimits {
	return &connLimits{max: max, perClient: perClient, byHost: map[string]int{}, refused: refused}
}

// Open is the number of connections open now.
func (l *connLimits) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// take admits a connection from host, or says why not: the status and message to answer.
func (l *connLimits) take(host string) *api.Error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		return api.Errorf(http.StatusServiceUnavailable, "", "server full: %d connections open, the limit (--max-connections); retry shortly", l.max)
	}
	if l.perClient > 0 && l.byHost[host] >= l.perClient {
		return api.Errorf(http.StatusTooManyRequests, "", "%d connections open from %s, the limit for one client (--max-connections-per-client); reuse them or retry shortly", l.perClient, host)
	}
	l.open++
	l.byHost[host]++
	return nil
}

func (l *connLimits) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byHost[host]--; l.byHost[host] <= 0 {
		delete(l.byHost, host)
	}
}

// listener applies connLimits to every connection it accepts.
type listener struct {
	net.Listener
	limits *connLimits
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := remoteHost(c.RemoteAddr())
		refusal := ln.limits.take(host)
		if refusal == nil {
			return &conn{Conn: c, release: func() { ln.limits.release(host) }}, nil
		}
		reason := "server_full"
		if refusal.Status == http.StatusTooManyRequests {
			reason = "client_full"
		}
		ln.limits.refused(reason)
		if ln.limits.refusing.Add(1) > maxRefusing {
			ln.limits.refusing.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer ln.limits.refusing.Add(-1)
			refuse(c, refusal)
		}()
	}
}

func remoteHost(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// refuse answers a connection that will not be served, then closes it gently: write side
// first, then whatever the client was sending is read and dropped for a moment.
func refuse(c net.Conn, e *api.Error) {
	defer c.Close()
	body := api.AppendError(nil, e)
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
		e.Status, http.StatusText(e.Status), len(body))
	_ = c.SetDeadline(time.Now().Add(refusalLinger))
	if _, err := io.WriteString(c, head+string(body)); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// conn releases its place in connLimits once, however often it is closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite keeps net/http's graceful close (FIN, then a pause before the full close) working
// through the wrapper.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
