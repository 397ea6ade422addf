package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// fileMeta is what the hub says about a file before we fetch it.
type fileMeta struct {
	commit string
	etag   string // the blob's name in the cache; the sha256 of the content for LFS files
	size   int64  // -1 when unknown
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FileURL is where the hub serves a file: {endpoint}/[datasets/]{repo}/resolve/{revision}/{filename}.
func (c *Client) FileURL(repoType, repoID, revision, filename string) string {
	prefix := ""
	if repoType == RepoDataset {
		prefix = "datasets/"
	}
	return fmt.Sprintf("%s/%s%s/resolve/%s/%s", c.Endpoint, prefix, repoID, url.PathEscape(revision), escapePath(filename))
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		parts[i] = url.PathEscape(part)
	}
	return strings.Join(parts, "/")
}

// Download returns the local path of one file of a hub repository at a revision ("" means
// main), fetching it into the cache when needed. The path is inside
// snapshots/<commit>/, so the other files of the same commit sit beside it.
//
// In offline mode it answers from the cache only. When the hub cannot be reached but the cache
// has the file for that revision, the cached file is used and a warning logged, as
// huggingface_hub does.
func (c *Client) Download(ctx context.Context, repoType, repoID, revision, filename string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := validateRepoFile(repoType, repoID, revision, filename); err != nil {
		return "", err
	}
	if c.Offline {
		return c.CachedFile(repoType, repoID, revision, filename)
	}
	// A commit hash never moves: a cached file for it needs no question to the hub.
	if isCommitHash(revision) {
		if path, err := c.cachedFile(repoType, repoID, revision, filename); err == nil {
			return path, nil
		}
	}
	fileURL := c.FileURL(repoType, repoID, revision, filename)
	meta, err := c.fileMetadata(ctx, repoID, revision, filename, fileURL)
	if err != nil {
		var httpErr *HTTPError
		if errors.As(err, &httpErr) {
			if errors.Is(err, ErrEntryNotFound) && isCommitHash(httpErr.Commit) {
				c.markMissing(repoType, repoID, httpErr.Commit, filename)
				_ = c.writeRef(repoType, repoID, revision, httpErr.Commit)
			}
			return "", err
		}
		if ctx.Err() != nil {
			return "", err
		}
		// The hub is unreachable: fall back to what the cache has.
		if path, cacheErr := c.cachedFile(repoType, repoID, revision, filename); cacheErr == nil {
			slog.Warn("hub unreachable, using the cached file", "repo", repoID, "file", filename, "err", err)
			return path, nil
		}
		return "", err
	}
	if err := c.writeRef(repoType, repoID, revision, meta.commit); err != nil {
		return "", err
	}
	dir := c.repoDir(repoType, repoID)
	pointer := filepath.Join(dir, "snapshots", meta.commit, filepath.FromSlash(filename))
	blob := filepath.Join(dir, "blobs", meta.etag)
	if fileExists(pointer) {
		return pointer, nil
	}
	if !fileExists(blob) {
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return "", fmt.Errorf("creating cache folder: %w", err)
		}
		unlock, err := c.lockBlob(ctx, repoType, repoID, meta.etag)
		if err != nil {
			return "", err
		}
		// Another process may have finished it while we waited for the lock.
		if !fileExists(blob) {
			err = c.fetch(ctx, repoID, filename, fileURL, blob, meta)
		}
		unlock()
		if err != nil {
			return "", err
		}
	}
	if err := linkSnapshot(blob, pointer); err != nil {
		return "", err
	}
	slog.Debug("hub file ready", "repo", repoID, "file", filename, "commit", meta.commit, "path", pointer)
	return pointer, nil
}

func (c *Client) newRequest(ctx context.Context, method, target string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "embedbench (huggingface_hub-compatible; go)")
	// Sizes and hashes are of the stored bytes: forbid transparent compression.
	req.Header.Set("Accept-Encoding", "identity")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// fileMetadata asks the hub (HEAD) for the commit, ETag and size. It follows relative
// redirects only (a renamed repository); an absolute one goes to the CDN and its first
// answer already carries the X-Linked-* headers we need.
func (c *Client) fileMetadata(ctx context.Context, repoID, revision, filename, target string) (fileMeta, error) {
	noFollow := *c.httpClient()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for hops := 0; ; hops++ {
		hctx, cancel := context.WithTimeoutCause(ctx, c.readTimeout(), errStalled)
		req, err := c.newRequest(hctx, http.MethodHead, target)
		if err != nil {
			cancel()
			return fileMeta{}, fmt.Errorf("asking the hub about %s in %s: %w", filename, repoID, err)
		}
		resp, err := noFollow.Do(req)
		cancel()
		if err != nil {
			return fileMeta{}, fmt.Errorf("asking the hub about %s in %s: %w", filename, repoID, stallCause(hctx, err))
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fileMeta{}, newHTTPError(resp, repoID, revision, filename, target)
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err == nil && loc.Host == "" && hops < 10 {
				base, _ := url.Parse(target)
				target = base.ResolveReference(loc).String()
				continue
			}
		}
		meta := fileMeta{
			commit: resp.Header.Get("X-Repo-Commit"),
			etag:   normalizeETag(firstNonEmpty(resp.Header.Get("X-Linked-Etag"), resp.Header.Get("ETag"))),
			size:   -1,
		}
		if s := firstNonEmpty(resp.Header.Get("X-Linked-Size"), resp.Header.Get("Content-Length")); s != "" {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
				meta.size = n
			}
		}
		if !isCommitHash(meta.commit) {
			return fileMeta{}, fmt.Errorf("the hub's answer for %s in %s has no usable X-Repo-Commit header (%q) [%s]", filename, repoID, meta.commit, target)
		}
		if meta.etag == "" || strings.ContainsAny(meta.etag, `/\`) || meta.etag == "." || meta.etag == ".." {
			return fileMeta{}, fmt.Errorf("the hub's answer for %s in %s has no usable ETag (%q) [%s]", filename, repoID, meta.etag, target)
		}
		return meta, nil
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// normalizeETag drops the weak marker and quotes: W/"abc" -> abc.
func normalizeETag(etag string) string {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	return strings.Trim(etag, `"`)
}

// fetch downloads into blob+".incomplete", resuming from whatever a previous attempt left
// there, verifies size and sha256, then renames into place.
func (c *Client) fetch(ctx context.Context, repoID, filename, target, blob string, meta fileMeta) error {
	partial := blob + ".incomplete"
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", filename, err)
	}
	defer f.Close()

	var sum hash.Hash
	if sha256RE.MatchString(meta.etag) {
		sum = sha256.New()
	}
	offset, err := resumeOffset(f, sum, meta.size)
	if err != nil {
		return fmt.Errorf("resuming %s: %w", partial, err)
	}

	var bar *progressbar.ProgressBar
	if c.Progress != nil {
		bar = progressbar.NewOptions64(meta.size,
			progressbar.OptionSetWriter(c.Progress),
			progressbar.OptionSetDescription(filename),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.Progress) }),
		)
		_ = bar.Set64(offset)
	}

	attempts := max(c.MaxAttempts, 1)
	delay := c.RetryDelay
	for attempt := 1; ; attempt++ {
		var retryable bool
		offset, retryable, err = c.getFrom(ctx, repoID, filename, target, f, sum, offset, meta.size, bar)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// Keep the partial file: the next run resumes from it.
			return fmt.Errorf("downloading %s: %w", filename, ctx.Err())
		}
		if !retryable || attempt >= attempts {
			return fmt.Errorf("downloading %s from %s (%d bytes kept in %s for a later resume): %w", filename, repoID, offset, partial, err)
		}
		slog.Warn("download interrupted, resuming", "repo", repoID, "file", filename, "offset", offset, "attempt", attempt+1, "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("downloading %s: %w", filename, ctx.Err())
		}
		delay *= 2
	}
	if bar != nil {
		_ = bar.Finish()
	}

	if meta.size >= 0 && offset != meta.size {
		_ = os.Remove(partial)
		return fmt.Errorf("downloading %s from %s: got %d bytes, the hub announced %d: %w", filename, repoID, offset, meta.size, ErrChecksum)
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != meta.etag {
			_ = os.Remove(partial)
			return fmt.Errorf("downloading %s from %s: sha256 %s, the hub announced %s; the partial file was removed: %w", filename, repoID, got, meta.etag, ErrChecksum)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("downloading %s: %w", filename, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("downloading %s: %w", filename, err)
	}
	if err := os.Rename(partial, blob); err != nil {
		return fmt.Errorf("downloading %s: %w", filename, err)
	}
	return nil
}

// resumeOffset returns how much of the file is already there, feeding it to the hash. A
// partial file longer than the announced size cannot be a prefix and is discarded.
func resumeOffset(f *os.File, sum hash.Hash, size int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	n := st.Size()
	if size >= 0 && n > size {
		n = 0
	}
	if n == 0 {
		return 0, restart(f, sum)
	}
	if sum != nil {
		if _, err := io.Copy(sum, io.NewSectionReader(f, 0, n)); err != nil {
			return 0, err
		}
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		return 0, err
	}
	return n, nil
}

func restart(f *os.File, sum hash.Hash) error {
	if sum != nil {
		sum.Reset()
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// getFrom GETs the file from offset on (following redirects to the CDN) and appends it to f.
// It returns the new offset and whether a failure is worth a resume.
func (c *Client) getFrom(ctx context.Context, repoID, filename, target string, f *os.File, sum hash.Hash, offset, size int64, bar *progressbar.ProgressBar) (int64, bool, error) {
	if size >= 0 && offset == size {
		return offset, false, nil
	}
	// A server that stops sending, before its answer or mid-body, is dropped after
	// readTimeout without a byte, and the download resumed: the transport alone would wait
	// on it for good.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := time.AfterFunc(c.readTimeout(), func() { cancel(errStalled) })
	defer stalled.Stop()
	req, err := c.newRequest(ctx, http.MethodGet, target)
	if err != nil {
		return offset, false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return offset, true, stallCause(ctx, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != offset {
			return offset, false, fmt.Errorf("server answered range %q to a request from byte %d", resp.Header.Get("Content-Range"), offset)
		}
	case resp.StatusCode == http.StatusOK:
		if offset > 0 { // the server ignored the Range header: start over
			if err := restart(f, sum); err != nil {
				return offset, false, err
			}
			offset = 0
			if bar != nil {
				_ = bar.Set64(0)
			}
		}
	default:
		herr := newHTTPError(resp, repoID, "", filename, target)
		return offset, resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, herr
	}
	var dst io.Writer = f
	if sum != nil {
		dst = io.MultiWriter(f, sum)
	}
	if bar != nil {
		dst = io.MultiWriter(dst, bar)
	}
	n, err := io.Copy(dst, &resettingReader{r: resp.Body, timer: stalled, d: c.readTimeout()})
	offset += n
	if err != nil {
		return offset, true, stallCause(ctx, err)
	}
	if size >= 0 && offset < size {
		return offset, true, fmt.Errorf("connection closed after %d of %d bytes: %w", offset, size, io.ErrUnexpectedEOF)
	}
	return offset, false, nil
}

// errStalled is why a request that stopped receiving was dropped.
var errStalled = errors.New("no data from the server within the read timeout (HF_HUB_DOWNLOAD_TIMEOUT)")

// stallCause names the stall when that is why err happened.
func stallCause(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("%w: %w", errStalled, err)
	}
	return err
}

// resettingReader restarts timer to d on every read that brings bytes.
type resettingReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (rr *resettingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if n > 0 {
		rr.timer.Reset(rr.d)
	}
	return n, err
}

// contentRangeStart reads the first byte position of "bytes 100-199/200".
func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	startStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(startStr, 10, 64)
	return n, err == nil
}
