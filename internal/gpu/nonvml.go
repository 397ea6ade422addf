//go:build !cgo

package gpu

import "time"

// device is never made without cgo: Open reports the monitor unavailable first.
type device struct{}

// Open returns an unavailable Monitor: go-nvml binds NVML through cgo, so a binary built with
// CGO_ENABLED=0 cannot read it. The server's other metrics and the stress tester's
// --gpu metrics still work.
func Open() (*Monitor, error) {
	return &Monitor{reason: "this binary was built without cgo (CGO_ENABLED=0), which NVML needs"}, nil
}

func (d *device) sample(time.Time) DeviceSample { return DeviceSample{} }
func (d *device) free()                         {}
func shutdownNVML()                             {}
