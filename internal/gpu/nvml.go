//go:build cgo

package gpu

import (
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

type device struct {
	index  int
	handle nvml.Device
	name   string
	uuid   string
	// gpmPrev holds the previous GPM sample; GPM metrics are differences between two samples.
	gpmPrev nvml.GpmSample
	gpmNext nvml.GpmSample
	gpmOK   bool
}

// Open initialises NVML. With no driver or no GPU it returns an unavailable Monitor and a nil
// error; an error means NVML is there but misbehaved.
func Open() (*Monitor, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED || ret == nvml.ERROR_NO_PERMISSION {
			return &Monitor{reason: fmt.Sprintf("NVML not usable here (%v)", ret)}, nil
		}
		return nil, fmt.Errorf("initialising NVML: %v", ret)
	}
	count, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		nvml.Shutdown()
		return nil, fmt.Errorf("counting GPUs with NVML: %v", ret)
	}
	if count == 0 {
		nvml.Shutdown()
		return &Monitor{reason: "NVML sees no GPU"}, nil
	}
	m := &Monitor{}
	for i := range count {
		h, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			m.Close()
			return nil, fmt.Errorf("opening GPU %d with NVML: %v", i, ret)
		}
		d := device{index: i, handle: h}
		d.name, _ = h.GetName()
		d.uuid, _ = h.GetUUID()
		d.initGPM()
		m.devices = append(m.devices, d)
	}
	return m, nil
}

// initGPM allocates the two GPM sample buffers when the device supports GPM.
func (d *device) initGPM() {
	support, ret := d.handle.GpmQueryDeviceSupport()
	if ret != nvml.SUCCESS || support.IsSupportedDevice == 0 {
		return
	}
	prev, ret := nvml.GpmSampleAlloc()
	if ret != nvml.SUCCESS {
		return
	}
	next, ret := nvml.GpmSampleAlloc()
	if ret != nvml.SUCCESS {
		prev.Free()
		return
	}
	if prev.Get(d.handle) != nvml.SUCCESS {
		prev.Free()
		next.Free()
		return
	}
	d.gpmPrev, d.gpmNext, d.gpmOK = prev, next, true
}

// sample reads the device once.
func (d *device) sample(now time.Time) DeviceSample {
	s := DeviceSample{Index: d.index, Name: d.name, UUID: d.uuid, Time: now}
	if u, ret := d.handle.GetUtilizationRates(); ret == nvml.SUCCESS {
		s.UtilizationPercent = ptr(float64(u.Gpu))
	}
	if mem, ret := d.handle.GetMemoryInfo(); ret == nvml.SUCCESS {
		s.MemoryUsedBytes = ptr(mem.Used)
		s.MemoryTotalBytes = ptr(mem.Total)
	}
	if mw, ret := d.handle.GetPowerUsage(); ret == nvml.SUCCESS {
		s.PowerWatts = ptr(float64(mw) / 1000)
	}
	if mhz, ret := d.handle.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		s.SMClockMHz = ptr(float64(mhz))
	}
	if mhz, ret := d.handle.GetMaxClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		s.SMClockMaxMHz = ptr(float64(mhz))
	}
	if mw, ret := d.handle.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		s.PowerLimitWatts = ptr(float64(mw) / 1000)
	}
	if c, ret := d.handle.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		s.TemperatureC = ptr(float64(c))
	}
	// The "throttle reasons" call, which current drivers still export, not its newer "clocks
	// event reasons" name, which drivers before r535 lack.
	if mask, ret := d.handle.GetCurrentClocksThrottleReasons(); ret == nvml.SUCCESS {
		s.ClockLimits, s.ClockLimitsRead = ClockLimitsOf(mask), true
	}
	if d.gpmOK {
		s.SMActivityPercent, s.TensorActivityPercent = d.sampleGPM()
	}
	return s
}

// sampleGPM takes a GPM sample and computes SM and tensor activity since the previous one.
func (d *device) sampleGPM() (sm, tensor *float64) {
	if d.gpmNext.Get(d.handle) != nvml.SUCCESS {
		return nil, nil
	}
	req := nvml.GpmMetricsGetType{
		NumMetrics: 2,
		Sample1:    d.gpmPrev,
		Sample2:    d.gpmNext,
	}
	req.Metrics[0].MetricId = uint32(nvml.GPM_METRIC_SM_UTIL)
	req.Metrics[1].MetricId = uint32(nvml.GPM_METRIC_ANY_TENSOR_UTIL)
	ret := nvml.GpmMetricsGet(&req)
	d.gpmPrev, d.gpmNext = d.gpmNext, d.gpmPrev
	if ret != nvml.SUCCESS {
		return nil, nil
	}
	if req.Metrics[0].NvmlReturn == uint32(nvml.SUCCESS) {
		sm = ptr(req.Metrics[0].Value)
	}
	if req.Metrics[1].NvmlReturn == uint32(nvml.SUCCESS) {
		tensor = ptr(req.Metrics[1].Value)
	}
	return sm, tensor
}

// free releases the device's GPM buffers.
func (d *device) free() {
	if d.gpmOK {
		d.gpmPrev.Free()
		d.gpmNext.Free()
	}
}

func shutdownNVML() { nvml.Shutdown() }
