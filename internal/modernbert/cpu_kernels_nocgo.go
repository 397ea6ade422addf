//go:build !cgo

package modernbert

func softmaxRows(scores []float32, L, window int) { softmaxRowsGo(scores, L, window) }

func gegluRows(wi, act []float32, rows, I int) { gegluRowsGo(wi, act, rows, I) }

func layerNormRows(dst, src, weight, bias []float32, rows, H int, eps float64) {
	layerNormRowsGo(dst, src, weight, bias, rows, H, eps)
}
