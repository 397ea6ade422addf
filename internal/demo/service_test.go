package demo

import (
	"testing"

	"github.com/embedbench/embedbench/internal/service"
)

// The demo's engines are serve's: the continuous one cuts a busy batch as serve does by
// default, and the sequential one has nothing to cut.
func TestDemoEnginesCutAsServeDoes(t *testing.T) {
	if got := busyBatchCut(service.Continuous); got != service.DefaultBusyBatchCut || got == 0 {
		t.Errorf("continuous: cut %g, want serve's default %g", got, service.DefaultBusyBatchCut)
	}
	if got := busyBatchCut(service.Sequential); got != 0 {
		t.Errorf("sequential: cut %g, want 0", got)
	}
}
