package gpu

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// On a machine without a driver Open must still succeed and say why telemetry is missing; on
// a GPU machine every device must report memory and utilisation.
func TestOpenAndSample(t *testing.T) {
	m, err := Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer m.Close()
	samples, err := m.Sample()
	if !m.Available() {
		if m.Reason() == "" {
			t.Error("unavailable monitor gives no reason")
		}
		if !errors.Is(err, ErrUnavailable) || samples != nil {
			t.Errorf("Sample on unavailable monitor = %v, %v; want nil, ErrUnavailable", samples, err)
		}
		t.Logf("no GPU here: %s", m.Reason())
		return
	}
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if len(samples) == 0 {
		t.Fatal("available monitor returned no devices")
	}
	for _, s := range samples {
		if s.MemoryTotalBytes == nil || *s.MemoryTotalBytes == 0 {
			t.Errorf("GPU %d: no memory total", s.Index)
		}
		if s.UtilizationPercent == nil || *s.UtilizationPercent < 0 || *s.UtilizationPercent > 100 {
			t.Errorf("GPU %d: utilisation %v out of range", s.Index, s.UtilizationPercent)
		}
		t.Logf("GPU %d %s: util %v%% mem %v/%v", s.Index, s.Name, deref(s.UtilizationPercent), deref(s.MemoryUsedBytes), deref(s.MemoryTotalBytes))
	}
	// GPM metrics need two samples; the second call must not fail, and where GPM is offered
	// (Hopper and later) its activities are percentages.
	time.Sleep(200 * time.Millisecond)
	again, err := m.Sample()
	if err != nil {
		t.Fatalf("second Sample: %v", err)
	}
	for _, s := range again {
		for name, v := range map[string]*float64{"SM activity": s.SMActivityPercent, "tensor activity": s.TensorActivityPercent} {
			if v != nil && (*v < 0 || *v > 100) {
				t.Errorf("GPU %d: %s %v%% out of range", s.Index, name, *v)
			}
		}
		// The clock never runs above the maximum the same driver reports (a little slack for
		// rounding between the two calls).
		if s.SMClockMHz != nil && s.SMClockMaxMHz != nil && *s.SMClockMHz > *s.SMClockMaxMHz+15 {
			t.Errorf("GPU %d: SM clock %v MHz above its maximum %v", s.Index, *s.SMClockMHz, *s.SMClockMaxMHz)
		}
		t.Logf("GPU %d: power %v of %v W, SM clock %v of %v MHz, %v °C, clock held by %v (told: %v), GPM SM activity %v%%, tensor activity %v%%",
			s.Index, deref(s.PowerWatts), deref(s.PowerLimitWatts), deref(s.SMClockMHz), deref(s.SMClockMaxMHz), deref(s.TemperatureC),
			s.ClockLimits, s.ClockLimitsRead, deref(s.SMActivityPercent), deref(s.TensorActivityPercent))
	}
}

func TestCloseTwiceAndSampleAfterClose(t *testing.T) {
	m, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close()
	if m.Available() {
		t.Error("closed monitor claims to be available")
	}
	if _, err := m.Sample(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Sample after Close: %v, want ErrUnavailable", err)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "n/a"
	}
	return *p
}

// NVML's reason bits name only the slowdowns: idle (0x1), clocks the user set (0x2) and sync
// boost (0x10) hold no clock down.
func TestClockLimitsOfNamesTheSlowdowns(t *testing.T) {
	if got := ClockLimitsOf(0x1 | 0x2 | 0x4 | 0x10 | 0x40); !slices.Equal(got, []string{ClockLimitPowerCap, ClockLimitHWThermal}) {
		t.Errorf("ClockLimitsOf(0x57) = %v", got)
	}
	if got := ClockLimitsOf(0); got == nil || len(got) != 0 {
		t.Errorf("ClockLimitsOf(0) = %#v, want an empty list (told: nothing)", got)
	}
}
