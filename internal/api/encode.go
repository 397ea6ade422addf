package api

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"runtime"
	"strconv"
	"sync"

	"github.com/embedbench/embedbench/internal/parallel"
)

// The encoders below write responses straight into a caller's (reused) buffer: reflection over
// [][]float32 in encoding/json costs several times more, and at tens of thousands of vectors a
// second the response encoding must stay far from being the bottleneck.

// AppendFloats appends v as a JSON array of float32s in their shortest round-trip form.
// Non-finite values have no JSON form; callers must have rejected them (see CheckFinite).
func AppendFloats(dst []byte, v []float32) []byte {
	dst = append(dst, '[')
	for i, f := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, float64(f), 'g', -1, 32)
	}
	return append(dst, ']')
}

// base64Chunk floats make 768 bytes, a multiple of 3, so chunks encode independently and
// concatenate into exactly the encoding of the whole vector (no padding in between).
const base64Chunk = 192

// AppendBase64Floats appends v as a JSON string holding the base64 of its little-endian
// float32 bytes: OpenAI's encoding_format "base64" (numpy.frombuffer(..., dtype=float32)).
func AppendBase64Floats(dst []byte, v []float32) []byte {
	dst = append(dst, '"')
	var raw [base64Chunk * 4]byte
	for len(v) > 0 {
		n := min(len(v), base64Chunk)
		for i, f := range v[:n] {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
		dst = base64.StdEncoding.AppendEncode(dst, raw[:4*n])
		v = v[n:]
	}
	return append(dst, '"')
}

// maxFloatBytes is the longest float32 in shortest form with its comma: -1.00062405e-36,
const maxFloatBytes = 16

// ResponseSizeHint is about the most bytes a response of these vectors takes in format
// (EncodingFloat or EncodingBase64), so that a caller can size its buffer once instead of
// growing it (and copying the vectors' text) as it fills.
func ResponseSizeHint(vectors [][]float32, format string) int {
	n := 256
	for _, v := range vectors {
		if format == EncodingBase64 {
			n += 64 + base64.StdEncoding.EncodedLen(4*len(v))
		} else {
			n += 64 + maxFloatBytes*len(v)
		}
	}
	return n
}

// AppendEmbedResponse appends the JSON of an EmbedResponse.
func AppendEmbedResponse(dst []byte, vectors [][]float32, model string, dim int) []byte {
	dst = append(dst, `{"embeddings":[`...)
	dst = appendEach(dst, vectors, func(dst []byte, _ int, v []float32) []byte { return AppendFloats(dst, v) })
	dst = append(dst, `],"model":`...)
	dst = appendString(dst, model)
	dst = append(dst, `,"num_embeddings":`...)
	dst = strconv.AppendInt(dst, int64(len(vectors)), 10)
	dst = append(dst, `,"embedding_dim":`...)
	dst = strconv.AppendInt(dst, int64(dim), 10)
	return append(dst, '}')
}

// AppendOpenAIEmbeddingResponse appends the JSON of an OpenAI embeddings response (object
// "list" of "embedding" objects) in the given encoding format.
func AppendOpenAIEmbeddingResponse(dst []byte, vectors [][]float32, model, format string, usage Usage) []byte {
	dst = append(dst, `{"object":"list","data":[`...)
	dst = appendEach(dst, vectors, func(dst []byte, i int, v []float32) []byte {
		dst = append(dst, `{"object":"embedding","index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"embedding":`...)
		if format == EncodingBase64 {
			dst = AppendBase64Floats(dst, v)
		} else {
			dst = AppendFloats(dst, v)
		}
		return append(dst, '}')
	})
	dst = append(dst, `],"model":`...)
	dst = appendString(dst, model)
	dst = append(dst, `,"usage":{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(usage.PromptTokens), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(usage.TotalTokens), 10)
	return append(dst, `}}`...)
}

// floatsPerPart is the least work (in floats) handed to a core of its own when a response is
// encoded on several: shortest-form float formatting costs 35-100 ns a float, so 32 vectors of
// 768 took 2.5 ms on one core of the GPU machine, a third of such a request's time end to end,
// while starting a goroutine costs about a microsecond.
const floatsPerPart = 1024

// appendEach appends enc's JSON for every vector, comma-separated, in order; large responses
// are encoded in contiguous parts on up to GOMAXPROCS goroutines, then joined.
func appendEach(dst []byte, vectors [][]float32, enc func(dst []byte, i int, v []float32) []byte) []byte {
	floats := 0
	for _, v := range vectors {
		floats += len(v)
	}
	parts := min(runtime.GOMAXPROCS(0), len(vectors), floats/floatsPerPart)
	if parts <= 1 {
		for i, v := range vectors {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = enc(dst, i, v)
		}
		return dst
	}
	bufs := make([]*[]byte, parts)
	parallel.Ranges(parts, len(vectors), func(p, lo, hi int) {
		b := partBuffers.Get().(*[]byte)
		for i := lo; i < hi; i++ {
			if i > 0 {
				*b = append(*b, ',')
			}
			*b = enc(*b, i, vectors[i])
		}
		bufs[p] = b
	})
	for _, b := range bufs {
		dst = append(dst, *b...)
		if cap(*b) <= maxPooledPart {
			*b = (*b)[:0]
			partBuffers.Put(b)
		}
	}
	return dst
}

// partBuffers holds the parts' buffers between responses: grown afresh for every response, they
// were copied as they doubled and allocated 5x the response's size (1.8 MB for 32 vectors).
var partBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// maxPooledPart keeps the part of one huge response from being held in the pool for ever.
const maxPooledPart = 1 << 20

// AppendError appends e as {"error":{"message","type","param","code"},"detail":message}:
// OpenAI's error object, plus FastAPI's "detail" that the seed's clients read.
func AppendError(dst []byte, e *Error) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"param":`...)
	if e.Param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendString(dst, e.Param)
	}
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = append(dst, `},"detail":`...)
	dst = appendString(dst, e.Message)
	return append(dst, '}')
}

// appendString appends s as a JSON string; these are short (model ids, messages).
func appendString(dst []byte, s string) []byte {
	quoted, _ := json.Marshal(s) // marshalling a string cannot fail
	return append(dst, quoted...)
}

// Normalize scales v to unit L2 norm in place (an all-zero vector stays zero, as in
// sentence-transformers). It reports false when v holds a non-finite value, which no JSON can
// carry.
func Normalize(v []float32) bool {
	sum := sumSquares(v)
	if math.IsNaN(sum) || math.IsInf(sum, 0) {
		return false
	}
	if sum == 0 {
		return true
	}
	scale := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= scale
	}
	return true
}

// CheckFinite reports whether every value of v is finite.
func CheckFinite(v []float32) bool {
	sum := sumSquares(v)
	return !math.IsNaN(sum) && !math.IsInf(sum, 0)
}

// sumSquares is accumulated in float64 so that large but finite values cannot overflow into
// a false "non-finite" verdict.
func sumSquares(v []float32) float64 {
	var sum float64
	for _, f := range v {
		sum += float64(f) * float64(f)
	}
	return sum
}
