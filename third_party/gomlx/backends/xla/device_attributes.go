package xla

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
)

// DeviceAttributes returns what the PJRT plugin says of deviceNum beyond its description
// (pjrt.DeviceDescription.Attributes): on XLA's CUDA plugin, "core_count" is the SM count.
func (backend *Backend) DeviceAttributes(deviceNum backends.DeviceNum) (map[string]any, error) {
	if err := backend.CheckValid(); err != nil {
		return nil, err
	}
	if int(deviceNum) >= backend.numDevices || int(deviceNum) < 0 {
		return nil, fmt.Errorf("invalid deviceNum %d", deviceNum)
	}
	desc, err := backend.client.AddressableDevices()[int(deviceNum)].GetDescription()
	if err != nil {
		return nil, err
	}
	return desc.Attributes()
}
