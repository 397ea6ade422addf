// Package hub downloads files from the HuggingFace hub into the HuggingFace cache, laid out
// exactly as the Python huggingface_hub library lays it out, so a cache filled by Python is
// used as is and the files we fetch are usable by Python.
//
// Configuration follows huggingface_hub's environment variables: HF_ENDPOINT, HF_TOKEN (or the
// token file under HF_HOME), HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_HUB_DOWNLOAD_TIMEOUT.
package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"
)

// DefaultEndpoint is the public hub, used when HF_ENDPOINT is unset.
const DefaultEndpoint = "https://huggingface.co"

// Repository types, as huggingface_hub names them.
const (
	RepoModel   = "model"
	RepoDataset = "dataset"
)

var (
	// ErrOffline means the file is not in the cache and offline mode forbids fetching it.
	ErrOffline = errors.New("not in the local cache and HF_HUB_OFFLINE is set")
	// ErrEntryNotFound means the repository exists but has no such file at that revision.
	ErrEntryNotFound = errors.New("file not found in repository")
	// ErrRepoNotFound means the repository or revision does not exist (or is hidden from us).
	ErrRepoNotFound = errors.New("repository or revision not found")
	// ErrUnauthorized means the hub refused access: a gated or private repository.
	ErrUnauthorized = errors.New("access refused (gated or private repository): set HF_TOKEN to a token with access")
	// ErrChecksum means the downloaded bytes do not match the hub's sha256 or size.
	ErrChecksum = errors.New("downloaded file does not match the hub's checksum")
)

// Client talks to one hub endpoint and owns one cache directory. The zero value is not usable;
// build it with NewClientFromEnv or fill the exported fields.
type Client struct {
	Endpoint string // e.g. https://huggingface.co, no trailing slash
	Token    string // sent as "Authorization: Bearer" to the endpoint (never to redirect targets on other hosts)
	CacheDir string // the hub cache: holds models--org--name/ and datasets--org--name/
	Offline  bool   // never touch the network; answer from the cache only
	// HTTP does the requests; nil means a client with sane timeouts for large downloads.
	HTTP *http.Client
	// Progress receives a progress bar per downloaded file; nil means no bar.
	Progress io.Writer
	// MaxAttempts bounds how often one download is resumed after a dropped connection.
	MaxAttempts int
	// RetryDelay is the pause before the first resume; it doubles on each further one.
	RetryDelay time.Duration
	// ReadTimeout is how long a request may wait for its answer, or a download for its next
	// bytes, before it is dropped (and a download resumed); 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
}

// DefaultReadTimeout is huggingface_hub's default download timeout (HF_HUB_DOWNLOAD_TIMEOUT).
const DefaultReadTimeout = 10 * time.Second

// NewClientFromEnv builds a client from huggingface_hub's environment variables. The progress
// bar is drawn on standard error only when it is a terminal.
func NewClientFromEnv() *Client {
	c := &Client{
		Endpoint:    strings.TrimRight(envOr("HF_ENDPOINT", DefaultEndpoint), "/"),
		CacheDir:    cacheDirFromEnv(),
		Offline:     envTrue("HF_HUB_OFFLINE"),
		MaxAttempts: 5,
		RetryDelay:  time.Second,
	}
	if s, err := strconv.ParseFloat(os.Getenv("HF_HUB_DOWNLOAD_TIMEOUT"), 64); err == nil && s > 0 && s < 1e6 {
		c.ReadTimeout = time.Duration(s * float64(time.Second))
	}
	c.Token = tokenFromEnv()
	if term.IsTerminal(int(os.Stderr.Fd())) {
		c.Progress = os.Stderr
	}
	return c
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// envTrue reads a boolean the way huggingface_hub does ("1", "ON", "YES", "TRUE").
func envTrue(name string) bool {
	switch strings.ToUpper(strings.TrimSpace(os.Getenv(name))) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// hfHome is $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
func hfHome() string {
	if v := os.Getenv("HF_HOME"); v != "" {
		return expandHome(v)
	}
	if v := os.Getenv("XDG_CACHE_HOME"); v != "" {
		return filepath.Join(expandHome(v), "huggingface")
	}
	return filepath.Join(expandHome("~/.cache"), "huggingface")
}

func cacheDirFromEnv() string {
	for _, name := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if v := os.Getenv(name); v != "" {
			return expandHome(v)
		}
	}
	return filepath.Join(hfHome(), "hub")
}

// tokenFromEnv is $HF_TOKEN, else the token `hf auth login` stored ($HF_TOKEN_PATH or $HF_HOME/token).
func tokenFromEnv() string {
	if v := strings.TrimSpace(os.Getenv("HF_TOKEN")); v != "" {
		return v
	}
	path := os.Getenv("HF_TOKEN_PATH")
	if path == "" {
		path = filepath.Join(hfHome(), "token")
	}
	data, err := os.ReadFile(expandHome(path))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	// No overall timeout: a multi-gigabyte shard may take long. readTimeout catches a server
	// that stops sending; ctx cancels the rest.
	return http.DefaultClient
}

func (c *Client) readTimeout() time.Duration {
	if c.ReadTimeout > 0 {
		return c.ReadTimeout
	}
	return DefaultReadTimeout
}

// HTTPError is an error answer from the hub, with what was being fetched.
type HTTPError struct {
	StatusCode int
	Code       string // the hub's X-Error-Code, e.g. EntryNotFound, RepoNotFound, GatedRepo
	Message    string // the hub's X-Error-Message, if any
	RepoID     string
	Filename   string
	Revision   string
	Commit     string // the hub's X-Repo-Commit, when it named one
	URL        string
	kind       error
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	switch e.kind {
	case ErrEntryNotFound:
		fmt.Fprintf(&b, "file %q not found in %s at revision %q", e.Filename, e.RepoID, e.Revision)
	case ErrRepoNotFound:
		fmt.Fprintf(&b, "repository %s (revision %q) not found; if it is private or gated, set HF_TOKEN", e.RepoID, e.Revision)
	case ErrUnauthorized:
		fmt.Fprintf(&b, "%s: access to %s refused (HTTP %d): the repository is gated or private; set HF_TOKEN to a token that has accepted its terms", e.Filename, e.RepoID, e.StatusCode)
	default:
		fmt.Fprintf(&b, "fetching %s from %s: HTTP %d", e.Filename, e.RepoID, e.StatusCode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " (hub says: %s)", e.Message)
	}
	fmt.Fprintf(&b, " [%s]", e.URL)
	return b.String()
}

// Unwrap lets callers test with errors.Is(err, hub.ErrEntryNotFound) and friends.
func (e *HTTPError) Unwrap() error { return e.kind }

func newHTTPError(resp *http.Response, repoID, revision, filename, url string) *HTTPError {
	e := &HTTPError{
		StatusCode: resp.StatusCode,
		Code:       resp.Header.Get("X-Error-Code"),
		Message:    resp.Header.Get("X-Error-Message"),
		Commit:     resp.Header.Get("X-Repo-Commit"),
		RepoID:     repoID, Filename: filename, Revision: revision, URL: url,
	}
	switch {
	case e.Code == "EntryNotFound":
		e.kind = ErrEntryNotFound
	case e.Code == "RepoNotFound" || e.Code == "RevisionNotFound":
		e.kind = ErrRepoNotFound
	case e.Code == "GatedRepo" || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		e.kind = ErrUnauthorized
	case resp.StatusCode == http.StatusNotFound:
		// A plain 404 (mirrors, older servers) is about the file we asked for.
		e.kind = ErrEntryNotFound
	}
	return e
}
