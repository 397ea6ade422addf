package pjrt

/*
#include "pjrt_c_api.h"
#include "gen_api_calls.h"
#include "gen_new_struct.h"
*/
import "C"
import (
	"slices"
	"unsafe"

	"github.com/pkg/errors"
)

// Attributes returns the device's vendor-specific attributes (PJRT_DeviceDescription_Attributes):
// on XLA's CUDA plugin, "core_count" (the SM count), "compute_capability" and others. List
// values are copied: the plugin owns the array they point into only as long as the client.
func (dDesc *DeviceDescription) Attributes() (NamedValuesMap, error) {
	args := C.new_PJRT_DeviceDescription_Attributes_Args()
	defer cFree(args)
	args.device_description = dDesc.deviceDescription
	err := toError(dDesc.plugin, C.call_PJRT_DeviceDescription_Attributes(dDesc.plugin.api, args))
	if err != nil {
		return nil, errors.WithMessagef(err, "failed to retrieve device description attributes")
	}
	namedValues := cDataToSlice[C.PJRT_NamedValue](unsafe.Pointer(args.attributes), int(args.num_attributes))
	m := pjrtNamedValuesToMap(namedValues)
	for name, v := range m {
		if list, ok := v.([]int64); ok {
			m[name] = slices.Clone(list)
		}
	}
	return m, nil
}
