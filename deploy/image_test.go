package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/localdata"
)

// maxImageBytes bounds the CPU image: the binary and CA roots, nothing else.
const maxImageBytes = 40 << 20

// imageInfo is what `podman image inspect` says that the test checks.
type imageInfo struct {
	Size   int64
	Config struct {
		User       string
		Entrypoint []string
		Cmd        []string
		Env        []string
	}
}

// TestCPUImage builds deploy/Containerfile with build-cpu.sh and checks the image by
// inspection (this machine's podman cannot run containers): entrypoint, non-root user, size,
// a static binary whose flags match the image's command. The binary taken out of the image
// then serves embeddings on the host, as the container would.
func TestCPUImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed (scripts/test.sh installs it): the CPU image was not built")
	}
	tag := fmt.Sprintf("localhost/embedbench-image-test:%d", os.Getpid())
	build := exec.Command("./build-cpu.sh", tag)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build-cpu.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rmi", "--force", tag).Run() })

	out, err := exec.Command("podman", "image", "inspect", tag).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	var infos []imageInfo
	if err := json.Unmarshal(out, &infos); err != nil || len(infos) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	img := infos[0]
	t.Logf("CPU image: %.1f MB, user %s, entrypoint %v, cmd %v", float64(img.Size)/1e6, img.Config.User, img.Config.Entrypoint, img.Config.Cmd)
	if len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/embedbench" {
		t.Errorf("entrypoint %v, want [/embedbench]", img.Config.Entrypoint)
	}
	uid, _, _ := strings.Cut(img.Config.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("user %q: want a numeric non-root uid (scratch has no /etc/passwd to resolve names, and runAsNonRoot needs a number)", img.Config.User)
	}
	if img.Size <= 0 || img.Size > maxImageBytes {
		t.Errorf("image is %d bytes, want at most %d", img.Size, maxImageBytes)
	}
	if len(img.Config.Cmd) == 0 || img.Config.Cmd[0] != "serve" || flagValue(img.Config.Cmd, "host") != "0.0.0.0" {
		t.Errorf("cmd %v: want serve listening on 0.0.0.0", img.Config.Cmd)
	}

	// What the user writes, it can write: HF_HOME and /tmp exist and are the image user's, so
	// that a plain `podman run` downloads a model (scratch's / is root's).
	files := imageFiles(t, tag)
	hfHome := ""
	for _, e := range img.Config.Env {
		if v, ok := strings.CutPrefix(e, "HF_HOME="); ok {
			hfHome = v
		}
	}
	for _, dir := range []string{hfHome, "/tmp"} {
		h := files[strings.Trim(dir, "/")]
		if dir == "" || h == nil || h.Typeflag != tar.TypeDir || strconv.Itoa(h.Uid) != uid {
			t.Errorf("%q in the image: %+v; want a folder owned by the image's user %s", dir, h, uid)
		}
	}

	bin := copyOut(t, tag, "/embedbench")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the image's binary needs a dynamic loader: it was not built with cgo off")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the image's binary links %v", libs)
	}
	f.Close()
	known := commandFlags(t, bin, img.Config.Cmd[0])
	for _, a := range img.Config.Cmd[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok && !known[name] {
			t.Errorf("the image's cmd passes --%s, which embedbench serve does not have", name)
		}
	}
	serveFromImageBinary(t, bin, img.Config.Cmd)
}

// createContainer creates (not runs) a container of image, removed when the test ends.
func createContainer(t *testing.T, image string) string {
	t.Helper()
	id, err := exec.Command("podman", "create", image).Output()
	if err != nil {
		t.Fatalf("podman create: %v", err)
	}
	ctr := strings.TrimSpace(string(id))
	t.Cleanup(func() { exec.Command("podman", "rm", "--force", ctr).Run() })
	return ctr
}

// imageFiles lists the image's file system by path (no leading slash), without running it.
func imageFiles(t *testing.T, image string) map[string]*tar.Header {
	t.Helper()
	ctr := createContainer(t, image)
	out, err := exec.Command("podman", "export", ctr).Output()
	if err != nil {
		t.Fatalf("podman export: %v", err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading the exported image: %v", err)
		}
		files[strings.Trim(h.Name, "/")] = h
	}
}

// copyOut copies path out of the image without running it.
func copyOut(t *testing.T, image, path string) string {
	t.Helper()
	ctr := createContainer(t, image)
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if out, err := exec.Command("podman", "cp", ctr+":"+path, dst).CombinedOutput(); err != nil {
		t.Fatalf("podman cp: %v\n%s", err, out)
	}
	return dst
}

// serveFromImageBinary runs the image's command with the binary taken out of it, on a small
// random model of the real architecture, and embeds one text: the cgo-off build serves.
func serveFromImageBinary(t *testing.T, bin string, cmd []string) {
	modelDir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Logf("not serving with the image's binary: %v", err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	args := append([]string{}, cmd...)
	for i := range args {
		if args[i] == "--port" && i+1 < len(args) {
			args[i+1] = port
		}
	}
	args = append(args, "--model", modelDir, "--model-size", "tiny", "--weights", "random", "--max-sequence-length", "128")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, bin, args...)
	srv.Env = append(os.Environ(), "HF_HUB_OFFLINE=1")
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	base := "http://127.0.0.1:" + port
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the image's binary never became healthy:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.Post(base+"/embed", "application/json", strings.NewReader(`{"texts": ["a static binary serves"]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		NumEmbeddings int `json:"num_embeddings"`
		EmbeddingDim  int `json:"embedding_dim"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.NumEmbeddings != 1 || got.EmbeddingDim == 0 {
		t.Errorf("/embed answered %d: %s", resp.StatusCode, body)
	}
	// SIGTERM, as the kubelet sends it after preStop: the server drains and exits 0.
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
	}
}
