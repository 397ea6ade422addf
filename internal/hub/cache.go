package hub

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The cache layout, as huggingface_hub writes it:
//
//	<cache>/models--org--name/
//	    blobs/<etag>                      file contents, named by the hub's ETag (sha256 for LFS files)
//	    blobs/<etag>.incomplete           a download in progress, resumed from its size
//	    refs/<revision>                   the commit hash a branch or tag pointed to when last seen
//	    snapshots/<commit>/<filename>     relative symlink to ../../blobs/<etag>
//	    .no_exist/<commit>/<filename>     empty marker: the hub said this file does not exist

var commitHashRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func isCommitHash(rev string) bool { return commitHashRE.MatchString(rev) }

// RepoFolderName is the cache folder of a repository, e.g. "models--answerdotai--ModernBERT-base".
func RepoFolderName(repoType, repoID string) string {
	return repoType + "s--" + strings.ReplaceAll(repoID, "/", "--")
}

func (c *Client) repoDir(repoType, repoID string) string {
	return filepath.Join(c.CacheDir, RepoFolderName(repoType, repoID))
}

// validateRepoFile refuses names that would escape the cache folder.
func validateRepoFile(repoType, repoID, revision, filename string) error {
	if repoType != RepoModel && repoType != RepoDataset {
		return fmt.Errorf("repository type %q: want %q or %q", repoType, RepoModel, RepoDataset)
	}
	if !ValidRepoID(repoID) {
		return fmt.Errorf("%q is not a hub repository id (want org/name)", repoID)
	}
	for what, p := range map[string]string{"revision": revision, "filename": filename} {
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
			return fmt.Errorf("%s %q is not a relative path", what, p)
		}
		for _, part := range strings.Split(p, "/") {
			if part == "" || part == "." || part == ".." {
				return fmt.Errorf("%s %q is not a clean relative path", what, p)
			}
		}
	}
	return nil
}

var repoIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$`)

// ValidRepoID reports whether id looks like a hub repository id ("name" or "org/name").
func ValidRepoID(id string) bool {
	return repoIDRE.MatchString(id) && !strings.Contains(id, "--") && !strings.Contains(id, "..") && len(id) <= 96
}

// commitFor resolves a revision to a commit hash from the cache's refs, without the network.
func (c *Client) commitFor(repoType, repoID, revision string) (string, bool) {
	if isCommitHash(revision) {
		return revision, true
	}
	data, err := os.ReadFile(filepath.Join(c.repoDir(repoType, repoID), "refs", filepath.FromSlash(revision)))
	if err != nil {
		return "", false
	}
	commit := strings.TrimSpace(string(data))
	return commit, isCommitHash(commit)
}

// errNotCached marks a cache miss; callers turn it into ErrOffline or go to the network.
var errNotCached = errors.New("not cached")

// CachedFile returns a file's snapshot path from the cache alone. It answers ErrEntryNotFound
// when the cache remembers that the hub has no such file, and an error wrapping ErrOffline
// when the cache does not know.
func (c *Client) CachedFile(repoType, repoID, revision, filename string) (string, error) {
	if err := validateRepoFile(repoType, repoID, revision, filename); err != nil {
		return "", err
	}
	path, err := c.cachedFile(repoType, repoID, revision, filename)
	if errors.Is(err, errNotCached) {
		return "", fmt.Errorf("%s %s/%s (revision %q) in %s: %w", repoType, repoID, filename, revision, c.CacheDir, ErrOffline)
	}
	return path, err
}

func (c *Client) cachedFile(repoType, repoID, revision, filename string) (string, error) {
	commit, ok := c.commitFor(repoType, repoID, revision)
	if !ok {
		return "", errNotCached
	}
	dir := c.repoDir(repoType, repoID)
	path := filepath.Join(dir, "snapshots", commit, filepath.FromSlash(filename))
	if fileExists(path) {
		return path, nil
	}
	if fileExists(filepath.Join(dir, ".no_exist", commit, filepath.FromSlash(filename))) {
		return "", fmt.Errorf("%s in %s at %s (remembered by the cache): %w", filename, repoID, commit, ErrEntryNotFound)
	}
	return "", errNotCached
}

// fileExists follows symlinks, so a snapshot link whose blob is gone counts as missing.
func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func (c *Client) writeRef(repoType, repoID, revision, commit string) error {
	if revision == commit {
		return nil
	}
	path := filepath.Join(c.repoDir(repoType, repoID), "refs", filepath.FromSlash(revision))
	if data, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(data)) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing ref %s: %w", path, err)
	}
	return writeFileAtomic(path, []byte(commit))
}

func (c *Client) markMissing(repoType, repoID, commit, filename string) {
	path := filepath.Join(c.repoDir(repoType, repoID), ".no_exist", commit, filepath.FromSlash(filename))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		_ = os.WriteFile(path, nil, 0o644) // a best-effort hint, as in huggingface_hub
	}
}

// linkSnapshot points snapshots/<commit>/<filename> at the blob with a relative symlink, the
// way huggingface_hub does, falling back to a copy where symlinks are not allowed.
func linkSnapshot(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return fmt.Errorf("creating snapshot folder: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		return fmt.Errorf("linking %s: %w", pointer, err)
	}
	tmp := pointer + ".tmp-link"
	_ = os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err == nil {
		if err := os.Rename(tmp, pointer); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("linking %s: %w", pointer, err)
		}
		return nil
	}
	return copyFileAtomic(blob, pointer)
}

func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying blob: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return fmt.Errorf("copying blob: %w", err)
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("copying blob to %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("copying blob to %s: %w", dst, err)
	}
	return os.Rename(tmp.Name(), dst)
}

// writeFileAtomic writes through a temporary file and a rename, so readers never see half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
