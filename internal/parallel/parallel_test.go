package parallel

import (
	"sync"
	"testing"
)

func TestRangesCoverEveryIndexOnce(t *testing.T) {
	for _, tc := range []struct{ parts, n int }{{1, 10}, {3, 10}, {4, 4}, {8, 3}, {0, 5}, {2, 0}} {
		seen := make([]int, tc.n)
		var mu sync.Mutex
		maxPart := -1
		Ranges(tc.parts, tc.n, func(part, lo, hi int) {
			mu.Lock()
			defer mu.Unlock()
			maxPart = max(maxPart, part)
			for i := lo; i < hi; i++ {
				seen[i]++
			}
		})
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("parts %d, n %d: index %d covered %d times", tc.parts, tc.n, i, c)
			}
		}
		if want := max(0, min(tc.parts, tc.n)-1); tc.n > 0 && maxPart != want {
			t.Fatalf("parts %d, n %d: highest part %d, want %d", tc.parts, tc.n, maxPart, want)
		}
	}
}
