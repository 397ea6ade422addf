//go:build unix

package modernbert

import "syscall"

// mapAnonymous returns size bytes of zeroed memory outside Go's heap: it never moves, which
// memory registered with a device must not.
func mapAnonymous(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

func unmapAnonymous(mem []byte) error { return syscall.Munmap(mem) }
