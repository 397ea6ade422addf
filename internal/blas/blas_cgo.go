//go:build cgo && linux

package blas

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef void (*cblas_sgemm_t)(int order, int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*set_threads_t)(int);
typedef char *(*get_config_t)(void);

enum { rowMajor = 101, noTrans = 111, trans = 112 };

// One call for the whole batch: a cgo call costs far more than a loop step.
static void sgemm_batch(void *fn, int batch, int m, int n, int k, int transA, int transB,
		const float *a, const float *b, float *c) {
	cblas_sgemm_t sgemm = (cblas_sgemm_t)fn;
	int lda = transA ? m : k, ldb = transB ? k : n;
	for (int i = 0; i < batch; i++) {
		sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, m, n, k,
			1.0f, a + (size_t)i * m * k, lda, b + (size_t)i * k * n, ldb, 0.0f, c + (size_t)i * m * n, n);
	}
}

static void sgemm_one(void *fn, int transA, int transB, int m, int n, int k, float alpha,
		const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	((cblas_sgemm_t)fn)(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, m, n, k,
		alpha, a, lda, b, ldb, beta, c, ldc);
}

static void call_set_threads(void *fn, int n) { ((set_threads_t)fn)(n); }
static const char *call_get_config(void *fn) { return ((get_config_t)fn)(); }
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

func open(names []string, threads int) (*Library, error) {
	var tried []string
	for _, name := range names {
		cname := C.CString(name)
		handle := C.dlopen(cname, C.RTLD_NOW|C.RTLD_LOCAL)
		C.free(unsafe.Pointer(cname))
		if handle == nil {
			tried = append(tried, C.GoString(C.dlerror()))
			continue
		}
		fn := symbol(handle, "cblas_sgemm")
		if fn == nil {
			tried = append(tried, name+": no cblas_sgemm")
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
		lib.sgemm = func(batch, m, n, k int, transA, transB bool, a, b, c []float32) {
			C.sgemm_batch(fn, C.int(batch), C.int(m), C.int(n), C.int(k), cbool(transA), cbool(transB),
				(*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&c[0])))
		}
		lib.gemm = func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
			C.sgemm_one(fn, cbool(transA), cbool(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
				(*C.float)(unsafe.Pointer(&a[0])), C.int(lda), (*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
				C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
		}
		return lib, nil
	}
	return nil, fmt.Errorf("no BLAS library found: %w", errors.New(strings.Join(tried, "; ")))
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
