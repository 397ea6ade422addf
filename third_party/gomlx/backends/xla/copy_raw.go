package xla

import "github.com/gomlx/gomlx/backends"

// BufferCopyRawToHost copies len(dst) bytes of buffer's device representation, from byte
// offset on, into dst (pjrt.Buffer.CopyRawToHost): part of an array, where BufferToFlatData
// copies all of it.
func (backend *Backend) BufferCopyRawToHost(buffer backends.Buffer, dst []byte, offset int) error {
	if err := backend.CheckValid(); err != nil {
		return err
	}
	return castToPJRT(buffer).CopyRawToHost(dst, offset)
}
