//go:build cgo

package modernbert

/*
#cgo LDFLAGS: -lm
#include <math.h>
#include <stdint.h>
#include <string.h>

// The native CPU path's elementwise loops (cpu.go has the same loops in Go: the reference the
// tests hold these to, and what a build without cgo runs). They are here because Go's compiler
// runs them one value at a time; gcc vectorises them, cloned per ISA and chosen at run time,
// with the reductions reassociated (which changes sums by rounding only).
#pragma GCC optimize("O3", "associative-math", "no-signed-zeros", "no-trapping-math", "finite-math-only")
#define KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#define INLINE static inline __attribute__((always_inline))

// Cephes' expf for x ≤ 0, as exp32 in cpu.go. (Inlined: a call out of a vectorised loop,
// to libm's floorf say, costs more than the loop.)
INLINE float exp32(float x) {
	if (x < -87.33654f) return 0;
	float n = floorf(x * 1.44269504088896341f + 0.5f);
	float r = x - n * 0.693359375f - n * -2.12194440e-4f;
	float p = r * 1.9875691500e-4f + 1.3981999507e-3f;
	p = r * p + 8.3334519073e-3f;
	p = r * p + 4.1665795894e-2f;
	p = r * p + 1.6666665459e-1f;
	p = r * p + 5.0000001201e-1f;
	p = r * r * p + r + 1;
	uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
	float scale;
	memcpy(&scale, &bits, 4);
	return p * scale;
}

// XLA's and Eigen's float32 erf, as erf32 in cpu.go.
INLINE float erf32(float x) {
	x = x < -4 ? -4 : (x > 4 ? 4 : x);
	float x2 = x * x;
	float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
	p = x2 * p + -2.10102402082508e-06f;
	p = x2 * p + -5.69250639462346e-05f;
	p = x2 * p + -7.34990630326855e-04f;
	p = x2 * p + -2.95459980854025e-03f;
	p = x2 * p + -1.60960333262415e-02f;
	float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
	q = x2 * q + -1.68282697438203e-03f;
	q = x2 * q + -7.37332916720468e-03f;
	q = x2 * q + -1.42647390514189e-02f;
	return x * p / q;
}

KERNEL static void softmax_rows(float *scores, int L, int window) {
	for (int q = 0; q < L; q++) {
		float *row = scores + (size_t)q * L;
		int from = 0, to = L;
		if (window > 0) {
			from = q - window > 0 ? q - window : 0;
			to = q + window + 1 < L ? q + window + 1 : L;
		}
		float peak = row[from];
		for (int k = from; k < to; k++) peak = row[k] > peak ? row[k] : peak;
		double sum = 0;
		for (int k = from; k < to; k++) {
			float e = exp32(row[k] - peak);
			row[k] = e;
			sum += e;
		}
		float inv = (float)(1 / sum);
		for (int k = from; k < to; k++) row[k] *= inv;
		memset(row, 0, (size_t)from * 4);
		memset(row + to, 0, (size_t)(L - to) * 4);
	}
}

KERNEL static void geglu_rows(const float *wi, float *act, int rows, int I) {
	for (int r = 0; r < rows; r++) {
		const float *in = wi + (size_t)r * 2 * I, *gate = in + I;
		float *out = act + (size_t)r * I;
		for (int j = 0; j < I; j++) {
			float v = in[j];
			out[j] = 0.5f * v * (1 + erf32(v * 0.70710678118654752f)) * gate[j];
		}
	}
}

KERNEL static void layer_norm_rows(float *dst, const float *src, const float *w, const float *b, int rows, int H, double eps) {
	for (int r = 0; r < rows; r++) {
		const float *in = src + (size_t)r * H;
		float *out = dst + (size_t)r * H;
		double sum = 0, sq = 0;
		for (int j = 0; j < H; j++) sum += in[j];
		double mean = sum / H;
		for (int j = 0; j < H; j++) {
			double d = in[j] - mean;
			sq += d * d;
		}
		float m32 = (float)mean, inv32 = (float)(1 / sqrt(sq / H + eps));
		if (b) {
			for (int j = 0; j < H; j++) out[j] = (in[j] - m32) * inv32 * w[j] + b[j];
		} else {
			for (int j = 0; j < H; j++) out[j] = (in[j] - m32) * inv32 * w[j];
		}
	}
}
*/
import "C"

import "unsafe"

func cfloats(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func softmaxRows(scores []float32, L, window int) {
	if L == 0 {
		return
	}
	_ = scores[L*L-1]
	C.softmax_rows(cfloats(scores), C.int(L), C.int(window))
}

func gegluRows(wi, act []float32, rows, I int) {
	if rows == 0 {
		return
	}
	_, _ = wi[rows*2*I-1], act[rows*I-1]
	C.geglu_rows(cfloats(wi), cfloats(act), C.int(rows), C.int(I))
}

func layerNormRows(dst, src, weight, bias []float32, rows, H int, eps float64) {
	if rows == 0 {
		return
	}
	_, _, _ = dst[rows*H-1], src[rows*H-1], weight[H-1]
	if bias != nil {
		_ = bias[H-1]
	}
	C.layer_norm_rows(cfloats(dst), cfloats(src), cfloats(weight), cfloats(bias), C.int(rows), C.int(H), C.double(eps))
}
