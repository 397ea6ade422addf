package modernbert

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"

	"github.com/embedbench/embedbench/internal/blas"
)

// EnvXLAPlugin names the PJRT plugin (.so) used when Options.Backend is empty.
const EnvXLAPlugin = "EMBEDBENCH_XLA_PLUGIN"

// pluginGlobs are where a JAX install keeps its CUDA PJRT plugin (the GPU machine's layout).
var pluginGlobs = []string{
	"/opt/torch/.venv/lib/python3*/site-packages/jax_plugins/xla_cuda*/xla_cuda_plugin.so",
}

// FindXLAPlugin returns the PJRT plugin to use: $EMBEDBENCH_XLA_PLUGIN if set, else the first
// JAX CUDA plugin found on disk, else "".
func FindXLAPlugin() string {
	if p := os.Getenv(EnvXLAPlugin); p != "" {
		return p
	}
	for _, pattern := range pluginGlobs {
		matches, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(matches))) // newest CUDA / Python first
		if len(matches) > 0 {
			return matches[0]
		}
	}
	return ""
}

// ResolveBackend turns an Options.Backend value into a concrete one: "simplego" or
// "xla:/abs/plugin.so".
func ResolveBackend(spec string) (string, error) {
	switch {
	case spec == "" || spec == "auto":
		if p := FindXLAPlugin(); p != "" {
			return ResolveBackend("xla:" + p)
		}
		return "simplego", nil
	case spec == "simplego" || spec == "go" || spec == "cpu":
		return "simplego", nil
	case strings.HasPrefix(spec, "xla:"):
		path := strings.TrimPrefix(spec, "xla:")
		if path == "" {
			return "", fmt.Errorf("backend %q: give the PJRT plugin's path, e.g. xla:/path/xla_cuda_plugin.so", spec)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("backend %q: %w", spec, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("backend %q: PJRT plugin: %w", spec, err)
		}
		return "xla:" + abs, nil
	case spec == "xla" || spec == "cuda":
		p := FindXLAPlugin()
		if p == "" {
			return "", fmt.Errorf("backend %q: no PJRT plugin found: set %s or pass xla:/path/xla_cuda_plugin.so", spec, EnvXLAPlugin)
		}
		return ResolveBackend("xla:" + p)
	}
	return "", fmt.Errorf("backend %q: want simplego, xla:/path/plugin.so or empty for auto", spec)
}

// sharedBackend is one backend (one PJRT client) shared by every replica that asks for the
// same backend string and client (Options.Client), so that replicas on several devices share
// a client.
type sharedBackend struct {
	backend backends.Backend
	refs    int
}

var (
	backendsMu sync.Mutex
	openedBack = map[string]*sharedBackend{}
)

// acquireBackend opens (or reuses) the backend named by a resolved spec, client the one of
// its PJRT clients (simplego has one).
func acquireBackend(spec string, client int, memoryFraction float64) (backends.Backend, error) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	key := clientKey(spec, client)
	if sb, ok := openedBack[key]; ok {
		sb.refs++
		return sb.backend, nil
	}
	var b backends.Backend
	var err error
	if spec == "simplego" {
		_, _ = cpuBLAS()
		b, err = simplego.New("")
	} else {
		b, err = newXLABackend(strings.TrimPrefix(spec, "xla:"), memoryFraction)
	}
	if err != nil {
		return nil, fmt.Errorf("opening backend %s: %w", spec, err)
	}
	openedBack[key] = &sharedBackend{backend: b, refs: 1}
	return b, nil
}

// clientKey names a backend among the opened ones: its spec, and which client of it.
func clientKey(spec string, client int) string {
	if client == 0 || spec == "simplego" {
		return spec
	}
	return fmt.Sprintf("%s#%d", spec, client)
}

// releaseBackend drops one reference and finalises the backend with the last one.
func releaseBackend(spec string, client int) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	key := clientKey(spec, client)
	sb, ok := openedBack[key]
	if !ok {
		return
	}
	sb.refs--
	if sb.refs == 0 {
		sb.backend.Finalize()
		delete(openedBack, key)
	}
}

// minGemmMultiplyAdds is the smallest float32 product handed to the BLAS: below it, the cgo
// call and the library's set-up cost more than simplego's own loops.
const minGemmMultiplyAdds = 1 << 15

// cpuBLAS loads the machine's product library (oneDNN or a BLAS) once per process and routes
// simplego's float32 products through it; without one, they run in pure Go, many times slower,
// and it says so.
var cpuBLAS = sync.OnceValues(func() (*blas.Library, error) {
	lib, err := blas.Open()
	if err != nil {
		slog.Warn("no BLAS: the CPU model runs in pure Go, many times slower; install oneDNN or OpenBLAS (Debian: libdnnl2 or libopenblas0-pthread)",
			"reason", err.Error(), "env", blas.EnvLibrary)
		return nil, err
	}
	simplego.SetFloat32Gemm(lib.Sgemm, minGemmMultiplyAdds)
	slog.Info("CPU matrix products through a BLAS", "library", lib.String())
	return lib, nil
})
