// Package hubtest serves HuggingFace-hub-like URLs from memory for tests: resolve paths with
// the hub's headers, LFS files redirected to a CDN-like path, Range requests, gated
// repositories, missing files, and injected faults (dropped connections, wrong checksums).
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Commit is the commit hash every repository's main branch points to.
const Commit = "0123456789abcdef0123456789abcdef01234567"

type file struct {
	content []byte
	lfs     bool
	sha256  string
}

type repo struct {
	files map[string]*file
	token string // non-empty: gated, this bearer token is required
}

// Request is one request the server saw.
type Request struct {
	Method, Path, Range, Authorization string
}

// Server is a fake hub. Configure it before the client uses it.
type Server struct {
	*httptest.Server
	mu          sync.Mutex
	repos       map[string]*repo // key: "model/org/name" or "dataset/org/name"
	requests    []Request
	dropAfter   map[string]int // sha256 -> drop the connection after this many bytes
	dropTimes   map[string]int // how many more GETs of that blob to drop
	stallAfter  map[string]int // sha256 -> stop sending after this many bytes until the client leaves
	wrongSHA    map[string]bool
	ignoreRange bool
}

// New starts a fake hub; it is closed when the test ends if you pass t.Cleanup(s.Close).
func New() *Server {
	s := &Server{
		repos:      map[string]*repo{},
		dropAfter:  map[string]int{},
		dropTimes:  map[string]int{},
		stallAfter: map[string]int{},
		wrongSHA:   map[string]bool{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

func key(repoType, repoID string) string { return repoType + "/" + repoID }

// AddFile adds a file to a repository (created on first use). LFS files are served through a
// redirect to /cdn/<sha256> with X-Linked-Etag and X-Linked-Size, as the hub serves them.
func (s *Server) AddFile(repoType, repoID, filename string, content []byte, lfs bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(repoType, repoID)
	sum := sha256.Sum256(content)
	r.files[filename] = &file{content: content, lfs: lfs, sha256: hex.EncodeToString(sum[:])}
}

func (s *Server) repo(repoType, repoID string) *repo {
	r := s.repos[key(repoType, repoID)]
	if r == nil {
		r = &repo{files: map[string]*file{}}
		s.repos[key(repoType, repoID)] = r
	}
	return r
}

// Gate makes a repository answer 401 unless the request carries "Bearer token".
func (s *Server) Gate(repoType, repoID, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(repoType, repoID).token = token
}

// DropConnection makes the next `times` GETs of an LFS file end after n bytes.
func (s *Server) DropConnection(content []byte, n, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := sha256Hex(content)
	s.dropAfter[sha], s.dropTimes[sha] = n, times
}

// Stall makes GETs of an LFS file send n bytes and then hang until the client goes away.
func (s *Server) Stall(content []byte, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stallAfter[sha256Hex(content)] = n
}

// AnnounceWrongSHA makes the hub announce a wrong sha256 for an LFS file.
func (s *Server) AnnounceWrongSHA(content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrongSHA[sha256Hex(content)] = true
}

// IgnoreRange makes the CDN answer every GET in full with 200, as some servers do.
func (s *Server) IgnoreRange() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreRange = true
}

// Requests returns a copy of the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// gitBlobSHA is the git object id of a file, the ETag the hub gives non-LFS files.
func gitBlobSHA(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization")})
	s.mu.Unlock()
	if sha, ok := strings.CutPrefix(r.URL.Path, "/cdn/"); ok {
		s.serveBlob(w, r, sha)
		return
	}
	path := r.URL.Path
	repoType := "model"
	if rest, ok := strings.CutPrefix(path, "/datasets/"); ok {
		repoType, path = "dataset", "/"+rest
	}
	// /org/name/resolve/<revision>/<filename>
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 5)
	if len(parts) < 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	repoID, revision, filename := parts[0]+"/"+parts[1], parts[3], parts[4]

	s.mu.Lock()
	rp := s.repos[key(repoType, repoID)]
	s.mu.Unlock()
	if rp == nil {
		// The hub hides unknown repositories behind 401 for anonymous callers.
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rp.token != "" && r.Header.Get("Authorization") != "Bearer "+rp.token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+repoID+" is restricted.")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if revision != "main" && revision != Commit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", Commit)
	s.mu.Lock()
	f := rp.files[filename]
	s.mu.Unlock()
	if f == nil {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.lfs {
		announced := f.sha256
		s.mu.Lock()
		if s.wrongSHA[f.sha256] {
			announced = sha256Hex([]byte("something else"))
		}
		s.mu.Unlock()
		w.Header().Set("ETag", `"`+gitBlobSHA([]byte("version https://git-lfs.github.com/spec/v1\n"))+`"`)
		w.Header().Set("X-Linked-Etag", `"`+announced+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.content)))
		w.Header().Set("Location", s.URL+"/cdn/"+f.sha256)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+gitBlobSHA(f.content)+`"`)
	http.ServeContent(w, r, filename, time.Time{}, bytes.NewReader(f.content))
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, sha string) {
	s.mu.Lock()
	var content []byte
	for _, rp := range s.repos {
		for _, f := range rp.files {
			if f.sha256 == sha {
				content = f.content
			}
		}
	}
	drop := -1
	if s.dropTimes[sha] > 0 && r.Method == http.MethodGet {
		s.dropTimes[sha]--
		drop = s.dropAfter[sha]
	}
	stall, stalls := s.stallAfter[sha]
	ignoreRange := s.ignoreRange
	s.mu.Unlock()
	if content == nil {
		http.NotFound(w, r)
		return
	}
	if ignoreRange {
		r.Header.Del("Range")
	}
	if drop < 0 && !stalls {
		http.ServeContent(w, r, sha, time.Time{}, bytes.NewReader(content))
		return
	}
	// Faulty transfer: announce the whole body, send part of it, then drop or hang.
	start := 0
	if rng := r.Header.Get("Range"); rng != "" && !ignoreRange {
		fmt.Sscanf(rng, "bytes=%d-", &start)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(content)-1, len(content)))
		w.Header().Set("Content-Length", strconv.Itoa(len(content)-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
	}
	cut := len(content)
	if drop >= 0 {
		cut = min(cut, start+drop)
	}
	if stalls {
		cut = min(cut, start+stall)
	}
	w.Write(content[start:cut])
	w.(http.Flusher).Flush()
	if stalls {
		<-r.Context().Done()
	}
	panic(http.ErrAbortHandler) // closes the connection mid-body
}
