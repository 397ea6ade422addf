//go:build !cgo || !linux

package blas

import "errors"

func open([]string, int) (*Library, error) {
	return nil, errors.New("built without cgo: no BLAS can be loaded")
}
