package modernbert

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
)

// hostTransfers is what the XLA backend offers beyond backends.Backend for a step's host
// arrays (third_party/gomlx/backends/xla/dma.go). Through the plugin's staging copies a step's
// transfers cost a quarter of a millisecond each however small, and its pooled vectors came
// back at about 4 GB/s (1.5 ms of a 13.5 ms step on the H200, run 33); registered host memory
// is copied directly, and only the part of the output a step used need come back.
type hostTransfers interface {
	DmaMap(data unsafe.Pointer, size int) error
	DmaUnmap(data unsafe.Pointer) error
	BufferCopyRawToHost(buffer backends.Buffer, dst []byte, offset int) error
}

// hostInputs are one execution's host arrays: data holds the int32 [rows*rowLen] inputs one
// after another (token ids, position within the sequence, sequence number within the row with
// 0 = padding, and with a pooling mask 1 for the pooled tokens), uploaded as one [k, rows,
// rowLen] array; out receives the pooled vectors [segments, rows, outDim].
type hostInputs struct {
	data                []int32
	ids, pos, seg, pool []int32
	out                 []float32
	mapped              []byte        // the region data and out live in when registered with dma
	dma                 hostTransfers // nil: data and out are on Go's heap
}

// inputKinds is how many int32 arrays a step of spec uploads.
func inputKinds(spec graphSpec) int {
	if spec.poolMask {
		return 4
	}
	return 3
}

// newHostInputs allocates a step's host arrays; with dma, outside Go's heap and registered
// with the device. When that fails the arrays go on the heap and the error says why.
func newHostInputs(spec graphSpec, dma hostTransfers) (*hostInputs, error) {
	n := spec.rows * spec.rowLen
	k := inputKinds(spec)
	outLen := spec.rows * spec.segments * spec.outDim()
	in := &hostInputs{}
	var err error
	if dma != nil {
		err = in.allocMapped(k*n, outLen, dma)
	}
	if in.mapped == nil {
		in.data, in.out = make([]int32, k*n), make([]float32, outLen)
	}
	in.ids, in.pos, in.seg = in.data[:n], in.data[n:2*n], in.data[2*n:3*n]
	if spec.poolMask {
		in.pool = in.data[3*n : 4*n]
	}
	return in, err
}

// allocMapped places data and out in one anonymous mapping registered with dma.
func (in *hostInputs) allocMapped(dataLen, outLen int, dma hostTransfers) error {
	const page = 4096
	dataBytes := (dataLen*4 + page - 1) / page * page
	mem, err := mapAnonymous(dataBytes + outLen*4)
	if err != nil {
		return err
	}
	if err := dma.DmaMap(unsafe.Pointer(&mem[0]), len(mem)); err != nil {
		_ = unmapAnonymous(mem)
		return fmt.Errorf("registering %d bytes of host memory with the device: %w", len(mem), err)
	}
	in.mapped, in.dma = mem, dma
	in.data = unsafe.Slice((*int32)(unsafe.Pointer(&mem[0])), dataLen)
	in.out = unsafe.Slice((*float32)(unsafe.Pointer(&mem[dataBytes])), outLen)
	return nil
}

// release unregisters and unmaps a mapped region; heap arrays are left to the collector.
func (in *hostInputs) release() {
	if in.mapped == nil {
		return
	}
	_ = in.dma.DmaUnmap(unsafe.Pointer(&in.mapped[0]))
	_ = unmapAnonymous(in.mapped)
	in.mapped, in.data, in.ids, in.pos, in.seg, in.pool, in.out = nil, nil, nil, nil, nil, nil, nil
}

// inputPool keeps a step's host arrays for reuse: as many as executions of it have overlapped.
// Unlike a sync.Pool it never drops one, which would leak a registered mapping.
type inputPool struct {
	mu   sync.Mutex
	free []*hostInputs
}

// get returns cleared arrays (all padding) for spec, allocating them registered with dma where
// it is not nil. dmaFailed is called once an allocation could not be registered, so that the
// caller stops trying.
func (p *inputPool) get(spec graphSpec, dma hostTransfers, dmaFailed func(error)) *hostInputs {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		in := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		clear(in.data)
		return in
	}
	p.mu.Unlock()
	in, err := newHostInputs(spec, dma)
	if err != nil && dmaFailed != nil {
		dmaFailed(err)
	}
	return in
}

func (p *inputPool) put(in *hostInputs) {
	p.mu.Lock()
	p.free = append(p.free, in)
	p.mu.Unlock()
}

// releaseAll unmaps every array in the pool; those still in use must have been put back.
func (p *inputPool) releaseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, in := range p.free {
		in.release()
	}
	p.free = nil
}
