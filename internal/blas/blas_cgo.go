//go:build cgo && linux

package blas

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*cblas_sgemm_t)(int order, int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
// oneDNN's row-major products: dnnl_sgemm and dnnl_gemm_bf16bf16f32.
typedef int (*dnnl_sgemm_t)(char transA, char transB, int64_t m, int64_t n, int64_t k,
	float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
typedef int (*dnnl_bf16_t)(char transA, char transB, int64_t m, int64_t n, int64_t k,
	float alpha, const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb, float beta, float *c, int64_t ldc);
typedef void (*set_threads_t)(int);
typedef char *(*get_config_t)(void);

enum { rowMajor = 101, noTrans = 111, trans = 112 };
enum { kindCBLAS = 0, kindDNNL = 1 };

static int gemm_f32(int kind, void *fn, int transA, int transB, int m, int n, int k, float alpha,
		const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	if (kind == kindDNNL) {
		return ((dnnl_sgemm_t)fn)(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	}
	((cblas_sgemm_t)fn)(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, m, n, k,
		alpha, a, lda, b, ldb, beta, c, ldc);
	return 0;
}

// One call for the whole batch: a cgo call costs far more than a loop step.
static int gemm_f32_batch(int kind, void *fn, int batch, int m, int n, int k, int transA, int transB,
		const float *a, const float *b, float *c) {
	int lda = transA ? m : k, ldb = transB ? k : n;
	for (int i = 0; i < batch; i++) {
		int st = gemm_f32(kind, fn, transA, transB, m, n, k, 1.0f, a + (size_t)i * m * k, lda,
			b + (size_t)i * k * n, ldb, 0.0f, c + (size_t)i * m * n, n);
		if (st != 0) return st;
	}
	return 0;
}

static int gemm_bf16(void *fn, int transA, int transB, int m, int n, int k, float alpha,
		const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c, int ldc) {
	return ((dnnl_bf16_t)fn)(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// x's rows to bf16 (to nearest, ties to even) in xb, laid out as the weight's rows are: [x]
// for a bf16 product; [hi | hi | lo] for the three-product split, where hi is x rounded and lo
// the rest rounded (hi·w_hi + hi·w_lo + lo·w_hi against weight rows [hi | lo | hi]). Cloned per
// ISA so that the loops run vectorised; Go's compiler would run them one value at a time.
static inline uint16_t bf16(float f) {
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3")))
static void convert_rows(int rows, int k, int split, const float *x, uint16_t *xb) {
	int d = split ? 3 * k : k;
	for (int r = 0; r < rows; r++) {
		const float *src = x + (size_t)r * k;
		uint16_t *hi = xb + (size_t)r * d;
		if (!split) {
			for (int i = 0; i < k; i++) hi[i] = bf16(src[i]);
			continue;
		}
		uint16_t *hi2 = hi + k, *lo = hi + 2 * k;
		for (int i = 0; i < k; i++) {
			uint16_t h = bf16(src[i]);
			uint32_t hb = (uint32_t)h << 16;
			float hf;
			memcpy(&hf, &hb, 4);
			hi[i] = h;
			hi2[i] = h;
			lo[i] = bf16(src[i] - hf);
		}
	}
}

// One thread's part of a Linear's product in bf16: its rows of x converted, then multiplied.
static int linear_bf16(void *fn, int rows, int n, int k, int split, const float *x, uint16_t *xb,
		const uint16_t *w, float beta, float *y) {
	int d = split ? 3 * k : k;
	convert_rows(rows, k, split, x, xb);
	return ((dnnl_bf16_t)fn)('N', 'T', rows, n, d, 1.0f, xb, d, w, d, beta, y, n);
}

static void call_set_threads(void *fn, int n) { ((set_threads_t)fn)(n); }
static const char *call_get_config(void *fn) { return ((get_config_t)fn)(); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"
)

func open(names []string, threads int) (*Library, error) {
	var tried []string
	for _, name := range names {
		if strings.Contains(name, "dnnl") && os.Getenv("OMP_NUM_THREADS") == "" {
			// oneDNN threads through OpenMP, read when the library loads; we split the work.
			os.Setenv("OMP_NUM_THREADS", "1")
		}
		cname := C.CString(name)
		handle := C.dlopen(cname, C.RTLD_NOW|C.RTLD_LOCAL)
		C.free(unsafe.Pointer(cname))
		if handle == nil {
			tried = append(tried, C.GoString(C.dlerror()))
			continue
		}
		kind, fn := C.int(C.kindCBLAS), symbol(handle, "cblas_sgemm")
		if fn == nil {
			kind, fn = C.kindDNNL, symbol(handle, "dnnl_sgemm")
		}
		if fn == nil {
			tried = append(tried, name+": neither cblas_sgemm nor dnnl_sgemm")
			C.dlclose(handle)
			continue
		}
		lib := &Library{Path: name, Threads: max(1, threads)}
		if set := symbol(handle, "openblas_set_num_threads"); set != nil {
			C.call_set_threads(set, 1)
		} else if set := symbol(handle, "bli_thread_set_num_threads"); set != nil {
			C.call_set_threads(set, 1)
		}
		if get := symbol(handle, "openblas_get_config"); get != nil {
			lib.Config = strings.TrimSpace(C.GoString(C.call_get_config(get)))
		}
		if kind == C.kindDNNL {
			lib.Config = "oneDNN"
		}
		check := func(st C.int, what string) {
			if st != 0 {
				panic(fmt.Sprintf("blas: %s %s returned status %d", name, what, int(st)))
			}
		}
		lib.sgemm = func(batch, m, n, k int, transA, transB bool, a, b, c []float32) {
			check(C.gemm_f32_batch(kind, fn, C.int(batch), C.int(m), C.int(n), C.int(k), cbool(transA), cbool(transB),
				(*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&c[0]))), "sgemm")
		}
		lib.gemm = func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
			check(C.gemm_f32(kind, fn, cbool(transA), cbool(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
				(*C.float)(unsafe.Pointer(&a[0])), C.int(lda), (*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
				C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc)), "sgemm")
		}
		if bf := symbol(handle, "dnnl_gemm_bf16bf16f32"); bf != nil && bf16Works(bf) {
			lib.linearBF16 = func(rows, n, k int, split bool, x []float32, xb, w []uint16, beta float32, y []float32) {
				check(C.linear_bf16(bf, C.int(rows), C.int(n), C.int(k), cbool(split), (*C.float)(unsafe.Pointer(&x[0])),
					(*C.uint16_t)(unsafe.Pointer(&xb[0])), (*C.uint16_t)(unsafe.Pointer(&w[0])), C.float(beta),
					(*C.float)(unsafe.Pointer(&y[0]))), "bf16 linear")
			}
		}
		return lib, nil
	}
	return nil, fmt.Errorf("no BLAS library found: %w", errors.New(strings.Join(tried, "; ")))
}

// bf16Works tries a 1×1×1 product: oneDNN refuses bf16 (unimplemented) on CPUs without the
// instructions for it, and a refusal at serving time would fail requests.
func bf16Works(fn unsafe.Pointer) bool {
	a, b := []uint16{0x3f80}, []uint16{0x4000} // 1 and 2
	c := []float32{0}
	st := C.gemm_bf16(fn, 0, 0, 1, 1, 1, 1, (*C.uint16_t)(unsafe.Pointer(&a[0])), 1, (*C.uint16_t)(unsafe.Pointer(&b[0])), 1,
		0, (*C.float)(unsafe.Pointer(&c[0])), 1)
	return st == 0 && c[0] == 2
}

func symbol(handle unsafe.Pointer, name string) unsafe.Pointer {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.dlsym(handle, cname)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
