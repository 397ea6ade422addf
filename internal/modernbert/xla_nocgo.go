//go:build !cgo

package modernbert

import (
	"errors"

	"github.com/gomlx/gomlx/backends"
)

func newXLABackend(string, float64) (backends.Backend, error) {
	return nil, errors.New("this binary was built without cgo (CGO_ENABLED=0): the xla backend needs it; rebuild with CGO_ENABLED=1 or use simplego")
}
