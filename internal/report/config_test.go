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

// The compare table's clock row: the mean over the run's GPUs against the highest maximum, and
// each reason that held a clock at its largest share.
func TestGPUClockRow(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	r := &stress.Result{GPU: stress.GPUTelemetry{Devices: []stress.GPUDeviceSummary{
		{SMClockMeanMHz: f(1766), SMClockMaxMHz: f(1980), ClockLimited: map[string]float64{"power_cap": 0.92, "thermal": 0}},
		{SMClockMeanMHz: f(1866), SMClockMaxMHz: f(1980), ClockLimited: map[string]float64{"power_cap": 0.5, "thermal": 0}},
	}}}
	if got, want := gpuClock(r), "1816 / 1980 MHz, power_cap 92%"; got != want {
		t.Errorf("gpuClock = %q, want %q", got, want)
	}
	if got := gpuClock(&stress.Result{}); got != "unavailable" {
		t.Errorf("no GPU: %q", got)
	}
}
