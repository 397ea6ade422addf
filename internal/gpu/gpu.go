// Package gpu reads GPU telemetry from NVML (through go-nvml, which dlopens
// libnvidia-ml.so.1 at run time).
//
// A machine without a driver is normal, not an error: Open then returns a Monitor that reports
// itself unavailable and why, so a binary built with cgo starts anywhere. A binary built
// without cgo (the static CPU image) has no NVML at all and always reports why.
//
// NVML's "GPU utilization" is the share of the last sample period (1/6 s to 1 s) in which any
// kernel was running on the device; it says nothing of how many SMs were busy. On Hopper and
// later, the GPM metrics SM activity and tensor activity tell that, and are read where NVML
// offers them.
package gpu

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// DeviceSample is one reading of one GPU. A nil pointer means the device or driver did not
// offer that reading.
type DeviceSample struct {
	Index int
	Name  string
	UUID  string
	Time  time.Time

	UtilizationPercent *float64
	MemoryUsedBytes    *uint64
	MemoryTotalBytes   *uint64
	PowerWatts         *float64
	SMClockMHz         *float64
	// PowerLimitWatts is the power limit the driver enforces, SMClockMaxMHz the SM clock the
	// GPU can reach, TemperatureC the GPU's core temperature.
	PowerLimitWatts *float64
	SMClockMaxMHz   *float64
	TemperatureC    *float64
	// ClockLimits names what holds the SM clock below its maximum at this reading (see
	// ClockLimitNames); ClockLimitsRead says whether the driver told, so that an empty list
	// means "nothing" only then.
	ClockLimits     []string
	ClockLimitsRead bool
	// SMActivityPercent and TensorActivityPercent are GPM metrics over the interval since the
	// previous Sample call; nil on the first call and on GPUs without GPM.
	SMActivityPercent     *float64
	TensorActivityPercent *float64
}

// Why a GPU's clock is below its maximum, as NVML's clock event reasons name them; the reasons
// that are not slowdowns (idle, clocks the user set, sync boost, display) are left out.
const (
	ClockLimitPowerCap   = "power_cap"   // the power limit (software power capping)
	ClockLimitThermal    = "thermal"     // the driver slowing a hot GPU
	ClockLimitHWThermal  = "hw_thermal"  // the hardware slowing a hot GPU
	ClockLimitHWSlowdown = "hw_slowdown" // the hardware's own slowdown (power brake, heat, supply)
	ClockLimitPowerBrake = "power_brake" // an external power brake
)

// ClockLimitNames maps NVML's clock event reason bits to the names above.
var ClockLimitNames = []struct {
	Bit  uint64
	Name string
}{
	{0x4, ClockLimitPowerCap},
	{0x20, ClockLimitThermal},
	{0x40, ClockLimitHWThermal},
	{0x8, ClockLimitHWSlowdown},
	{0x80, ClockLimitPowerBrake},
}

// ClockLimitsOf names the slowdowns set in an NVML clock event reason mask.
func ClockLimitsOf(mask uint64) []string {
	limits := []string{}
	for _, r := range ClockLimitNames {
		if mask&r.Bit != 0 {
			limits = append(limits, r.Name)
		}
	}
	return limits
}

// Monitor samples every GPU NVML sees. Its methods are safe for concurrent use.
type Monitor struct {
	mu      sync.Mutex
	reason  string // why unavailable; empty when available
	devices []device
	closed  bool
}

// Available reports whether NVML found at least one GPU.
func (m *Monitor) Available() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reason == "" && !m.closed
}

// Reason says why the monitor is unavailable; empty when it is available.
func (m *Monitor) Reason() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "monitor closed"
	}
	return m.reason
}

// ErrUnavailable is returned by Sample on an unavailable or closed monitor.
var ErrUnavailable = errors.New("GPU telemetry unavailable")

// Sample reads every device once. Readings a device does not support are left nil.
func (m *Monitor) Sample() ([]DeviceSample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reason != "" || m.closed {
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, m.reason)
	}
	now := time.Now()
	out := make([]DeviceSample, 0, len(m.devices))
	for i := range m.devices {
		out = append(out, m.devices[i].sample(now))
	}
	return out, nil
}

// Close frees GPM buffers and shuts NVML down. Safe to call more than once.
func (m *Monitor) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	if m.reason != "" {
		return
	}
	for i := range m.devices {
		m.devices[i].free()
	}
	shutdownNVML()
}

func ptr[T any](v T) *T { return &v }
