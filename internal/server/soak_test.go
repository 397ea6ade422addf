package server_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var soakFor = flag.Duration("soak", 45*time.Second, "how long TestSoak runs its mixed hostile load (go test -run Soak -args -soak 10m)")

// soakCounts tallies what the soak's clients saw, by kind of client and status.
type soakCounts struct {
	mu       sync.Mutex
	byStatus map[string]int
	failures []string
}

func (c *soakCounts) add(kind string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byStatus[fmt.Sprintf("%s %d", kind, status)]++
}

func (c *soakCounts) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < 20 {
		c.failures = append(c.failures, fmt.Sprintf(format, args...))
	}
}

// TestSoak runs valid and malformed requests, clients that vanish mid-request, 429 bursts and
// slow uploads together against the real server, then shuts it down under load. Every request
// the server took is answered, none with a 5xx, and goroutines and heap come back to where
// they were.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test skipped in -short mode")
	}
	goroutinesBefore := runtime.NumGoroutine()
	f := start(t, options{maxConcurrent: 8, bodyTimeout: time.Second, maxBody: 256 << 10, maxConns: 512})
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	post := func(ctx context.Context, path, body string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url+path, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data), err
	}
	if status, body, err := post(context.Background(), "/embed", `{"texts": ["warm up"]}`); err != nil || status != 200 {
		t.Fatalf("warm-up request: %d %s %v", status, body, err)
	}
	heapBefore := heapInUse()
	goroutinesServing := runtime.NumGoroutine()

	counts := &soakCounts{byStatus: map[string]int{}}
	ctx, stopLoad := context.WithTimeout(context.Background(), *soakFor)
	defer stopLoad()
	var wg sync.WaitGroup
	loop := func(n int, body func(rng *rand.Rand)) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), uint64(n)))
				for ctx.Err() == nil {
					body(rng)
				}
			}()
		}
	}
	valid := []struct{ path, body string }{
		{"/embed", `{"texts": ["what is the capital of France?"]}`},
		{"/embed", mustString(map[string]any{"texts": passages(16, 40)})},
		{"/v1/embeddings", `{"input": ["query one", "query two"], "encoding_format": "base64"}`},
		{"/v1/embeddings", `{"input": [[101, 2023, 2003, 102]]}`},
		{"/tokenize", `{"texts": ["tokenize me"], "return_offsets": true}`},
	}
	malformed := []string{`{"texts": [`, `{"texts": [3]}`, `[]`, `{"input": [[-1]]}`, `{"texts": []}`, "\x00\xff", `{"texts": ["a", {"b": 1}]}`}
	// Valid clients: 200, or 429 when the admission limit is reached; nothing else.
	loop(6, func(rng *rand.Rand) {
		v := valid[rng.IntN(len(valid))]
		status, body, err := post(ctx, v.path, v.body)
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			counts.fail("valid %s: %v", v.path, err)
		case status != 200 && status != 429:
			counts.fail("valid %s: %d %s", v.path, status, body)
		default:
			counts.add("valid", status)
		}
	})
	// Malformed clients: a JSON 4xx, never a 429: a bad body is refused whatever the load.
	loop(2, func(rng *rand.Rand) {
		path := []string{"/embed", "/v1/embeddings", "/tokenize"}[rng.IntN(3)]
		status, body, err := post(ctx, path, malformed[rng.IntN(len(malformed))])
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			counts.fail("malformed %s: %v", path, err)
		case status < 400 || status >= 500 || status == 429 || !strings.Contains(body, `"error"`):
			counts.fail("malformed %s: %d %s", path, status, body)
		default:
			counts.add("malformed", status)
		}
	})
	// Clients that leave: mid-queue, and mid-upload.
	loop(2, func(rng *rand.Rand) {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(1+rng.IntN(30))*time.Millisecond)
		status, _, err := post(rctx, "/embed", mustString(map[string]any{"texts": passages(32, 60)}))
		cancel()
		if err == nil {
			counts.add("vanishing", status)
		}
		c, err := dialRaw(f.url)
		if err != nil {
			counts.fail("dialing: %v", err)
			return
		}
		io.WriteString(c, "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"texts\": [\"cut o")
		c.Close()
	})
	// Slow uploads: stall until the body deadline answers 408.
	loop(2, func(rng *rand.Rand) {
		c, err := dialRaw(f.url)
		if err != nil {
			counts.fail("dialing: %v", err)
			return
		}
		defer c.Close()
		io.WriteString(c, "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{\"texts\": [\"sl")
		r, err := readReply(t, c, 5*time.Second)
		switch {
		case err != nil:
			counts.fail("slow upload: no answer: %v", err)
		case r.status != http.StatusRequestTimeout:
			counts.fail("slow upload: %d %s", r.status, r.body)
		default:
			counts.add("slow", r.status)
		}
	})
	// Bursts well past the admission limit, every two seconds.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var burst sync.WaitGroup
			for range 40 {
				burst.Add(1)
				go func() {
					defer burst.Done()
					status, body, err := post(ctx, "/embed", `{"texts": ["burst"]}`)
					switch {
					case err != nil && ctx.Err() != nil:
					case err != nil:
						counts.fail("burst: %v", err)
					case status != 200 && status != 429:
						counts.fail("burst: %d %s", status, body)
					default:
						counts.add("burst", status)
					}
				}()
			}
			burst.Wait()
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	wg.Wait()

	// After the load: nothing left in the engine, the heap and goroutines back where they were.
	transport.CloseIdleConnections()
	waitFor(t, "the engine to drain", func() bool { return f.eng.Stats().QueuedRequests == 0 })
	waitFor(t, "goroutines to return to their serving level", func() bool {
		return runtime.NumGoroutine() <= goroutinesServing+4
	})
	if heap := heapInUse(); heap > heapBefore+64<<20 {
		t.Errorf("heap in use %d MiB after the soak, %d MiB before", heap>>20, heapBefore>>20)
	}
	m := f.metrics(t)
	if fives := regexp.MustCompile(`embedbench_http_requests_total\{code="5\d\d",route="[^"]+"\} \d+`).FindAllString(m, -1); len(fives) > 0 {
		t.Errorf("the server answered 5xx: %v", fives)
	}

	// SIGTERM under load: every request the server took is answered 200.
	held := f.busy(t, 4)
	f.stop()
	for range 4 {
		if r := <-held; r.status != 200 {
			t.Errorf("request in flight at shutdown: %d %s", r.status, r.body)
		}
	}
	if err := <-f.served; err != nil {
		t.Errorf("Serve after the soak: %v", err)
	}
	f.served <- nil
	f.eng.Close()
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "goroutines to return to their level before the server", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore+4
	})

	counts.mu.Lock()
	defer counts.mu.Unlock()
	for _, failure := range counts.failures {
		t.Error(failure)
	}
	t.Logf("soak of %v: %v", *soakFor, counts.byStatus)
	for _, want := range []string{"valid 200", "malformed 400", "malformed 422", "slow 408", "burst 429"} {
		if counts.byStatus[want] == 0 {
			t.Errorf("the soak never saw %q: %v", want, counts.byStatus)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mustString(v any) string { return string(mustJSON(v)) }
