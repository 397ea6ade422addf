//go:build unix

package tokenizer

import (
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// cpuTime is the user and system CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestLinearTime encodes adversarial inputs of 20 KB and 1 MB: fifty times the input must cost
// about fifty times the work (a little more for one huge word, whose BPE heap outgrows the CPU
// caches), not the 2,500 times of a quadratic step. Work is the process's CPU time, which other
// processes on a busy machine do not inflate, the best of three runs.
func TestLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes several MB")
	}
	tok := loadModernBERT(t)
	inputs := map[string]func(n int) string{
		"one long word":     func(n int) string { return strings.Repeat("abcdefghij", n/10) },
		"spaces":            func(n int) string { return strings.Repeat(" ", n) },
		"mixed whitespace":  func(n int) string { return strings.Repeat(" \t\n ", n/4) },
		"combining marks":   func(n int) string { return "a" + strings.Repeat("\u0301", n/2) },
		"non-NFC text":      func(n int) string { return strings.Repeat("e\u0301 ", n/4) },
		"almost [MASK]":     func(n int) string { return strings.Repeat("[MAS", n/4) },
		"special tokens":    func(n int) string { return strings.Repeat("[MASK]  ", n/8) },
		"invalid UTF-8":     func(n int) string { return strings.Repeat("\xE2\x82", n/2) },
		"one long CJK word": func(n int) string { return strings.Repeat("中", n/3) },
	}
	best := func(text string) time.Duration {
		d := time.Duration(1 << 62)
		for range 3 {
			start := cpuTime(t)
			tok.AppendIDs(nil, text, 0)
			d = min(d, cpuTime(t)-start)
		}
		return d
	}
	for name, gen := range inputs {
		small, large := gen(20_000), gen(1_000_000)
		if !utf8.ValidString(small) && name != "invalid UTF-8" {
			t.Fatalf("%s: generator made invalid UTF-8", name)
		}
		ts, tl := best(small), best(large)
		ratio := float64(tl) / float64(max(ts, time.Millisecond)) // rusage ticks can be coarse
		t.Logf("%-18s 20 KB %8v  1 MB %8v  ratio %.0f", name, ts, tl, ratio)
		if ratio > 400 {
			t.Errorf("%s: 1 MB took %.0fx the time of 20 KB (%v vs %v): not linear", name, ratio, tl, ts)
		}
	}
}
