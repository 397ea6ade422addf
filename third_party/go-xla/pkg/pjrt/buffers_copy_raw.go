package pjrt

/*
#include <stddef.h>
#include "pjrt_c_api.h"

// HasCopyRawToHost says whether the plugin's API table holds the entry (older plugins end
// earlier, and a plugin may leave an entry it does not implement NULL).
static int HasCopyRawToHost(const PJRT_Api *api) {
	return api->struct_size > offsetof(PJRT_Api, PJRT_Buffer_CopyRawToHost) && api->PJRT_Buffer_CopyRawToHost != NULL;
}

static PJRT_Error* CopyRawToHostAndWait(const PJRT_Api *api, PJRT_Buffer *buffer, void *dst, int64_t offset, int64_t size) {
	PJRT_Buffer_CopyRawToHost_Args args = {0};
	args.struct_size = PJRT_Buffer_CopyRawToHost_Args_STRUCT_SIZE;
	args.buffer = buffer;
	args.dst = dst;
	args.offset = offset;
	args.transfer_size = size;
	PJRT_Error* err = api->PJRT_Buffer_CopyRawToHost(&args);
	if (err) {
		return err;
	}
	PJRT_Event_Await_Args event_args = {0};
	event_args.struct_size = PJRT_Event_Await_Args_STRUCT_SIZE;
	event_args.event = args.event;
	err = api->PJRT_Event_Await(&event_args);
	PJRT_Event_Destroy_Args efree_args = {0};
	efree_args.struct_size = PJRT_Event_Destroy_Args_STRUCT_SIZE;
	efree_args.event = args.event;
	api->PJRT_Event_Destroy(&efree_args);
	return err;
}
*/
import "C"

import (
	"runtime"
	"unsafe"

	"github.com/pkg/errors"
)

// ErrNotSupported is returned when the plugin's API has no entry for a call.
var ErrNotSupported = errors.New("not supported by this PJRT plugin")

// CopyRawToHost copies len(dst) bytes of the buffer's on-device representation, from byte
// offset on, into dst, and waits for the copy. The bytes are in the device's layout (for the
// GPU plugins, row-major): a prefix of a row-major array is a prefix of its leading axis.
func (b *Buffer) CopyRawToHost(dst []byte, offset int) error {
	plugin, err := b.getPlugin()
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	if C.HasCopyRawToHost(plugin.api) == 0 {
		return errors.Wrap(ErrNotSupported, "PJRT_Buffer_CopyRawToHost")
	}
	if len(dst) == 0 {
		return nil
	}
	dstPtr := unsafe.Pointer(unsafe.SliceData(dst))
	var pinner runtime.Pinner
	pinner.Pin(dstPtr)
	defer pinner.Unpin()
	return toError(plugin, C.CopyRawToHostAndWait(plugin.api, b.wrapper.c, dstPtr, C.int64_t(offset), C.int64_t(len(dst))))
}
