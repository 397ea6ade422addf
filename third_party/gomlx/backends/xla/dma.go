package xla

import (
	"unsafe"

	"github.com/gomlx/gomlx/backends"
)

// DmaMap registers host memory with the plugin's devices for direct transfers (pjrt.Client.DmaMap):
// a buffer uploaded from it, or copied into it, skips the plugin's staging copy. It stays
// registered until DmaUnmap; the memory must not move or be freed before that.
func (backend *Backend) DmaMap(data unsafe.Pointer, size int) error {
	if err := backend.CheckValid(); err != nil {
		return err
	}
	return backend.client.DmaMap(data, size)
}

// DmaUnmap undoes DmaMap.
func (backend *Backend) DmaUnmap(data unsafe.Pointer) error {
	if err := backend.CheckValid(); err != nil {
		return err
	}
	return backend.client.DmaUnmap(data)
}

// BufferCopyRawToHost copies len(dst) bytes of buffer's device representation, from byte
// offset on, into dst (pjrt.Buffer.CopyRawToHost): part of an array, where BufferToFlatData
// copies all of it.
func (backend *Backend) BufferCopyRawToHost(buffer backends.Buffer, dst []byte, offset int) error {
	if err := backend.CheckValid(); err != nil {
		return err
	}
	return castToPJRT(buffer).CopyRawToHost(dst, offset)
}
