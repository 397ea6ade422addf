package report

import (
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/stress"
)

// The configuration table says how fast the GPU ran and what held it back, not only its power.
func TestGPUDeviceLineSaysWhatHeldTheClock(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	d := stress.GPUDeviceSummary{Name: "NVIDIA H200", Samples: 12, UtilizationMeanPercent: f(99.2),
		PowerMeanWatts: f(690.7), PowerLimitWatts: f(700), SMClockMeanMHz: f(1766.25), SMClockMaxMHz: f(1980),
		ClockLimited: map[string]float64{"power_cap": 11.0 / 12, "thermal": 0}}
	got := gpuDevice(d)
	for _, want := range []string{"utilisation mean 99.2%", "SM clock 1766 of 1980 MHz, 691 of 700 W", "held down by power_cap in 92% of readings", "12 samples"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "thermal") {
		t.Errorf("%q names a reason that never held the clock", got)
	}
	// Power alone, as some exporters give it, is still shown.
	if got := gpuDevice(stress.GPUDeviceSummary{PowerMeanWatts: f(300), Samples: 1}); !strings.Contains(got, "power mean 300 W") {
		t.Errorf("power without a clock: %q", got)
	}
}
