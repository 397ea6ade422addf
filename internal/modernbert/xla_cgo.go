//go:build cgo

package modernbert

import (
	"os"

	"github.com/gomlx/go-xla/pkg/pjrt"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

// newXLABackend loads the PJRT plugin at an absolute path. It never downloads: auto-install is
// off, and the client is created without preallocating 75% of the card.
func newXLABackend(pluginPath string, memoryFraction float64) (backends.Backend, error) {
	xla.EnableAutoInstall(false)
	if _, set := os.LookupEnv("GOPJRT_CUDA_CHECKS"); !set {
		// The CUDA checks look for a pip-installed CUDA; the JAX plugin finds its own libraries.
		_ = os.Setenv("GOPJRT_CUDA_CHECKS", "0")
	}
	opts := pjrt.NamedValuesMap{"preallocate": false}
	if memoryFraction > 0 {
		opts["memory_fraction"] = float32(memoryFraction)
	}
	return xla.NewWithOptions(pluginPath, opts)
}
