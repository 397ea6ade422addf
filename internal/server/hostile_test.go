package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Clients that are slow, greedy or careless, met as a server meets them: over raw TCP where a
// well-behaved HTTP client would hide what they do.

// rawConn dials the fixture's address, from localIP when it is given.
func (f *fixture) rawConn(t *testing.T, localIP string) net.Conn {
	t.Helper()
	c, err := dialFrom(f.url, localIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialRaw(url string) (net.Conn, error) { return dialFrom(url, "") }

func dialFrom(url, localIP string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", url, err)
	}
	return c, nil
}

// readReply reads one HTTP response from c within d.
func readReply(t *testing.T, c net.Conn, d time.Duration) (reply, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, body}, err
}

// stalledUpload sends the headers of a 4,000-byte /embed and the body's first bytes, then waits.
func (f *fixture) stalledUpload(t *testing.T) net.Conn {
	t.Helper()
	c := f.rawConn(t, "")
	head := "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
	if _, err := io.WriteString(c, head+`{"texts": ["the first wor`); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSlowUploadsCannotLockOthersOut(t *testing.T) {
	f := start(t, options{maxConcurrent: 4, bodyTimeout: 2 * time.Second})
	stalled := make([]net.Conn, 40)
	for i := range stalled {
		stalled[i] = f.stalledUpload(t)
	}
	waitFor(t, "the stalled uploads to be read", func() bool {
		return strings.Contains(f.metrics(t), "embedbench_http_bodies_reading 40")
	})
	// Ten times the admission limit are stalled; work that is ready still runs at once.
	for i := range 8 {
		t0 := time.Now()
		if r := f.post(t, "/embed", `{"texts": ["a normal request"]}`); r.status != 200 {
			t.Fatalf("request %d beside 40 stalled uploads: %d %s", i, r.status, r.body)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("request %d took %v beside stalled uploads", i, d)
		}
	}
	// Past the deadline every stalled upload is answered 408 and its connection closed.
	for i, c := range stalled {
		r, err := readReply(t, c, 10*time.Second)
		if err != nil {
			t.Fatalf("stalled upload %d: no answer: %v", i, err)
		}
		if msg := errorMessage(t, "stalled upload", r, http.StatusRequestTimeout); !strings.Contains(msg, "--body-read-timeout") {
			t.Errorf("408 does not name the flag: %q", msg)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("stalled upload %d: connection not closed after its 408: %v", i, err)
		}
	}
	m := f.metrics(t)
	for _, want := range []string{"embedbench_http_body_timeouts_total 40", `embedbench_http_requests_total{code="408",route="embed"} 40`, "embedbench_http_bodies_reading 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(m, "body|408"))
		}
	}
}

// A body that arrives in time starts a deadline that must not outlive it: work that queues
// longer than the body timeout is still answered.
func TestBodyDeadlineDoesNotCutSlowWork(t *testing.T) {
	f := start(t, options{bodyTimeout: 300 * time.Millisecond})
	held := f.busy(t, 3)
	for range 3 {
		if r := <-held; r.status != 200 {
			t.Fatalf("request queued past the body deadline: %d %s", r.status, r.body)
		}
	}
	if st := f.eng.Stats(); st.DroppedSequences != 0 {
		t.Errorf("%d sequences dropped as if their client had gone", st.DroppedSequences)
	}
}

// A client that asks and never reads: its answers cannot hold admission, and past the write
// timeout its connection is cut instead of holding a goroutine and its buffers for ever.
func TestClientThatNeverReadsIsCut(t *testing.T) {
	f := start(t, options{maxConcurrent: 1, writeTimeout: time.Second})
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { // a small window, so the server's writes block soon
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"texts": [` + strings.Repeat(`"a text", `, 199) + `"a text"]}`
	req := fmt.Sprintf("POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	const asked = 40 // about 6 MB of answers, far beyond the socket buffers
	go func() { _, _ = io.WriteString(c, strings.Repeat(req, asked)) }()
	// The answers stop when the buffers are full and the server's write blocks.
	last := ""
	waitFor(t, "the server's writes to block", func() bool {
		all := f.metrics(t)
		m := grep(all, `requests_total{code="200",route="embed"}`)
		stalled := m != "" && m == last && strings.Contains(all, "embedbench_http_in_flight_requests 0")
		last = m
		time.Sleep(300 * time.Millisecond)
		return stalled
	})
	// One admission slot, and the reader that does not read holds none of it.
	for i := range 5 {
		if r := f.post(t, "/embed", `{"texts": ["a normal request"]}`); r.status != 200 {
			t.Fatalf("request %d beside a client that does not read: %d %s", i, r.status, r.body)
		}
	}
	time.Sleep(3 * time.Second) // past the write timeout of the answer that is blocked
	// The connection is cut (a reset may discard answers already sent: the client's unread
	// requests are what makes the server's close a reset), so reading ends early with an error
	// that is not our own read deadline.
	br := bufio.NewReader(c)
	answered := 0
	for ; answered < asked; answered++ {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var resp *http.Response
		if resp, err = http.ReadResponse(br, nil); err != nil {
			break
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			break
		}
	}
	if answered == asked {
		t.Fatalf("all %d answers were written to a client that did not read for 3 s: no write timeout", asked)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("after %d answers the connection was left open, not cut: %v", answered, err)
	}
	// The answer cut off is not counted as delivered: 499, the client's going, not a 200.
	waitFor(t, "the undelivered answer to be counted", func() bool {
		return metricValue(f.metrics(t), `embedbench_http_requests_total{code="499",route="embed"}`) >= 1
	})
}

// A client that closes the connection mid-body is gone (499), not a client error (400).
func TestClientLeavingMidBodyIs499(t *testing.T) {
	f := start(t, options{})
	c := f.stalledUpload(t)
	waitFor(t, "the upload to be read", func() bool {
		return strings.Contains(f.metrics(t), "embedbench_http_bodies_reading 1")
	})
	c.Close()
	waitFor(t, "the request to be counted", func() bool {
		return metricValue(f.metrics(t), `embedbench_http_requests_total{code="499",route="embed"}`) == 1
	})
	if n := metricValue(f.metrics(t), `embedbench_http_requests_total{code="400",route="embed"}`); n > 0 {
		t.Errorf("%v requests counted 400 for a client that left", n)
	}
}

// A request answered without its body being read (a GET route, a wrong method) is still
// drained by net/http; a client that announces a body and never sends it is cut off at the
// body deadline, after its answer, instead of holding the connection for good.
func TestAnnouncedBodyNeverSentCannotHoldAConnection(t *testing.T) {
	f := start(t, options{bodyTimeout: time.Second})
	for _, c := range []struct {
		head string
		want int
	}{
		{"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", http.StatusOK},
		{"GET /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", http.StatusMethodNotAllowed},
		{"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", http.StatusOK},
	} {
		conn := f.rawConn(t, "")
		if _, err := io.WriteString(conn, c.head+"{\"te"); err != nil {
			t.Fatal(err)
		}
		r, err := readReply(t, conn, 10*time.Second)
		if err != nil || r.status != c.want {
			t.Fatalf("%q: %d, %v; want an answer %d", c.head, r.status, err, c.want)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%q: connection still open 10 s after its answer, past the 1 s body deadline: %v", c.head, err)
		}
	}
}

// A Content-Length header alone does not make the server allocate the body: the buffer grows
// as the bytes arrive.
func TestAnnouncedBodySizeIsNotAllocatedUpFront(t *testing.T) {
	const announced, conns = 30 << 20, 16
	f := start(t, options{maxBody: 32 << 20, bodyTimeout: 20 * time.Second})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range conns {
		c := f.rawConn(t, "")
		head := fmt.Sprintf("POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", announced)
		if _, err := io.WriteString(c, head+`{"texts": [`); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the uploads to be read", func() bool {
		return strings.Contains(f.metrics(t), fmt.Sprintf("embedbench_http_bodies_reading %d", conns))
	})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("%d uploads that announced %d MiB and sent 11 bytes grew the heap by %d MiB", conns, announced>>20, grew>>20)
	}
}

func TestOversizeBodyGetsA413TheClientCanRead(t *testing.T) {
	const limit = 1 << 20
	f := start(t, options{maxBody: limit})
	big := bytes.Repeat([]byte("x"), 50<<20)
	t.Run("content-length, client sends it all before reading", func(t *testing.T) {
		c := f.rawConn(t, "")
		head := fmt.Sprintf("POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(big))
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(append([]byte(head), big...)); err != nil {
			t.Fatalf("sending 50 MB: %v", err)
		}
		r, err := readReply(t, c, 10*time.Second)
		if err != nil {
			t.Fatalf("no readable answer to a 50 MB body: %v", err)
		}
		if msg := errorMessage(t, "50 MB body", r, http.StatusRequestEntityTooLarge); !strings.Contains(msg, "52428800") {
			t.Errorf("413 does not give the size: %q", msg)
		}
	})
	t.Run("chunked, Go's client", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, f.url+"/embed", io.MultiReader(bytes.NewReader(big[:3<<20])))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked: the server finds out while reading
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("no answer to a chunked 3 MB body: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		errorMessage(t, "chunked 3 MB body", reply{resp.StatusCode, resp.Header, body}, http.StatusRequestEntityTooLarge)
	})
	if r := f.post(t, "/embed", `{"texts": ["still serving"]}`); r.status != 200 {
		t.Errorf("after oversize bodies: %d %s", r.status, r.body)
	}
}

func TestOversizeHeadersGet431(t *testing.T) {
	f := start(t, options{maxHeader: 4 << 10})
	r := f.post(t, "/embed", `{"texts": ["a"]}`, "X-Padding", strings.Repeat("p", 64<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: status %d, want 431: %s", r.status, r.body)
	}
	if r := f.post(t, "/embed", `{"texts": ["a"]}`, "X-Padding", strings.Repeat("p", 1<<10)); r.status != 200 {
		t.Errorf("1 KiB of headers: %d %s", r.status, r.body)
	}
}

// With every connection the limit allows held by clients, the probe port still answers
// /health and /metrics (a kubelet opens a new connection for every probe, and failing them
// would restart a server for being busy), and nothing else.
func TestProbePortAnswersWhenConnectionsAreFull(t *testing.T) {
	f := start(t, options{maxConns: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	probes := make(chan error, 1)
	go func() { probes <- f.srv.ServeProbes(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-probes; err != nil {
			t.Errorf("ServeProbes: %v", err)
		}
	})
	for range 2 {
		f.rawConn(t, "")
	}
	c := f.rawConn(t, "")
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	if r, err := readReply(t, c, 5*time.Second); err != nil || r.status != http.StatusServiceUnavailable {
		t.Fatalf("the main port past its connection limit: %d, %v; want 503", r.status, err)
	}
	probeURL := "http://" + ln.Addr().String()
	for path, want := range map[string]int{"/health": 200, "/metrics": 200, "/embed": 404} {
		resp, err := http.Get(probeURL + path)
		if err != nil {
			t.Fatalf("probe port %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("probe port %s: %d %s, want %d", path, resp.StatusCode, body, want)
		}
		if path == "/embed" {
			errorMessage(t, "probe port /embed", reply{resp.StatusCode, resp.Header, body}, 404)
		}
	}
}

// Past --max-connection-age a kept-alive connection gets its answer and is then closed, so
// that the client reconnects (and a load balancer can send it to a replica added since).
func TestOldConnectionsAreClosedAfterTheirAnswer(t *testing.T) {
	f := start(t, options{maxConnAge: 300 * time.Millisecond})
	c := f.rawConn(t, "")
	ask := func() {
		t.Helper()
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		r, err := readReply(t, c, 5*time.Second)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("/health on a kept-alive connection: %d, %v", r.status, err)
		}
	}
	ask() // young: kept open, as the second question on it shows
	time.Sleep(400 * time.Millisecond)
	ask() // old: answered ("Connection: close"), then closed
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the old connection is still open after its answer: %v", err)
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Run("in all", func(t *testing.T) {
		f := start(t, options{maxConns: 3})
		var open []net.Conn
		for range 3 {
			open = append(open, f.rawConn(t, ""))
		}
		c := f.rawConn(t, "") // accepted after the three: one accept loop, in order
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		r, err := readReply(t, c, 5*time.Second)
		if err != nil {
			t.Fatalf("fourth connection: no answer: %v", err)
		}
		if msg := errorMessage(t, "fourth connection", r, http.StatusServiceUnavailable); !strings.Contains(msg, "--max-connections") {
			t.Errorf("503 does not name the flag: %q", msg)
		}
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		for _, c := range open {
			c.Close()
		}
		var m string
		waitFor(t, "room for a scrape once the three close", func() bool {
			var ok bool
			m, ok = f.tryMetrics(t, "127.0.0.2")
			return ok
		})
		if !strings.Contains(m, `embedbench_http_connections_refused_total{reason="server_full"}`) { // the fourth, and scrapes tried before the three closed
			t.Errorf("refusal not counted:\n%s", grep(m, "connections"))
		}
	})
	t.Run("per client", func(t *testing.T) {
		f := start(t, options{perClient: 2})
		for range 2 {
			f.rawConn(t, "127.0.0.1")
		}
		waitFor(t, "two open connections", func() bool { return f.openConns(t, "127.0.0.2") == 3 })
		c := f.rawConn(t, "127.0.0.1")
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		r, err := readReply(t, c, 5*time.Second)
		if err != nil {
			t.Fatalf("third connection from one address: no answer: %v", err)
		}
		if msg := errorMessage(t, "third connection", r, http.StatusTooManyRequests); !strings.Contains(msg, "127.0.0.1") {
			t.Errorf("429 does not name the address: %q", msg)
		}
		// Another address is not held back by the first one's connections.
		if m := f.metricsFrom(t, "127.0.0.3"); !strings.Contains(m, `embedbench_http_connections_refused_total{reason="client_full"} 1`) {
			t.Errorf("refusal not counted:\n%s", grep(m, "connections"))
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		f := start(t, options{idleTimeout: 300 * time.Millisecond})
		c := f.rawConn(t, "")
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t0 := time.Now()
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("the server sent more after its answer")
		}
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("idle connection closed after %v, want about 300ms", d)
		}
		waitFor(t, "the idle connection to be released", func() bool { return f.openConns(t, "127.0.0.2") == 1 })
	})
}

// metricsFrom scrapes /metrics over a fresh connection from localIP (not the shared client's
// pool), so that a test can count connections without adding to them for long.
func (f *fixture) metricsFrom(t *testing.T, localIP string) string {
	t.Helper()
	m, ok := f.tryMetrics(t, localIP)
	if !ok {
		t.Fatalf("/metrics from %s: %s", localIP, m)
	}
	return m
}

func (f *fixture) tryMetrics(t *testing.T, localIP string) (string, bool) {
	t.Helper()
	c := f.rawConn(t, localIP)
	defer c.Close()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r, err := readReply(t, c, 10*time.Second)
	if err != nil {
		return err.Error(), false
	}
	return string(r.body), r.status == 200
}

// openConns is the server's count of open connections, the scrape's own included.
func (f *fixture) openConns(t *testing.T, localIP string) int {
	t.Helper()
	var n int
	for _, line := range strings.Split(f.metricsFrom(t, localIP), "\n") {
		if _, err := fmt.Sscanf(line, "embedbench_http_open_connections %d", &n); err == nil {
			return n
		}
	}
	t.Fatal("/metrics has no embedbench_http_open_connections")
	return 0
}
