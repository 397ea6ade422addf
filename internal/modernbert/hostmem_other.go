//go:build !unix

package modernbert

import "errors"

func mapAnonymous(int) ([]byte, error) {
	return nil, errors.New("no anonymous mappings on this platform")
}

func unmapAnonymous([]byte) error { return nil }
