package server_test

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkOneTextRequests is the per-request path under load: 64 clients each posting one short
// text to /embed on the continuous engine, over real HTTP on loopback, with the tiny model
// (whose step costs little next to a request). It reports requests/s and the server process's
// CPU time per request (the clients share the process, so this is an upper bound); run it with
// -cpuprofile to see where a request's CPU goes.
func BenchmarkOneTextRequests(b *testing.B) {
	f := start(b, options{maxConcurrent: 256})
	body := []byte(`{"texts": ["what is a query embedding"]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const clients = 64
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs int
	)
	work := make(chan struct{}, clients)
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				resp, err := client.Post(f.url+"/embed", "application/json", bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					errs++
					mu.Unlock()
				}
			}
		}()
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if errs > 0 {
		b.Fatalf("%d of %d requests failed", errs, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()*1e6/float64(b.N), "cpu-µs/req")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
