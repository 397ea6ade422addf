// Package parallel splits a range of work into contiguous parts run at once: the one loop the
// CPU model, the matrix-product library, the tokenizer and the response encoder share.
package parallel

import "sync"

// Ranges runs fn over [0, n) cut into parts contiguous ranges (part p is [lo, hi)), each on
// its own goroutine, and returns when all are done. With parts <= 1 it calls fn(0, 0, n) on
// the caller's goroutine.
func Ranges(parts, n int, fn func(part, lo, hi int)) {
	parts = min(parts, n)
	if parts <= 1 {
		fn(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(p, p*n/parts, (p+1)*n/parts)
		}()
	}
	wg.Wait()
}
