package dataset

import (
	"context"
	"fmt"
	"strings"

	"github.com/embedbench/embedbench/internal/hub"
)

// MSMARCO is the hub file `--source msmarco` means: MS MARCO v1.1 training split in the
// microsoft/ms_marco parquet layout (82,326 queries with up to 10 passages each), the split
// datasets.load_dataset("ms_marco", "v1.1") gives. The full 8.8 M-passage collection is
// hf://datasets/BeIR/msmarco/corpus.jsonl.gz.
const MSMARCO = "hf://datasets/microsoft/ms_marco/v1.1/train-00000-of-00001.parquet"

// HubFile is one file of a hub repository, written hf://datasets/org/name[@revision]/path
// (or hf://org/name/... for a model repository), as huggingface_hub's HfFileSystem spells it.
type HubFile struct {
	RepoType, RepoID, Revision, Filename string
}

// ParseHubFile reads an hf:// reference; ok is false when s is not one.
func ParseHubFile(s string) (f HubFile, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, "hf://")
	if !ok {
		return HubFile{}, false, nil
	}
	f.RepoType = hub.RepoModel
	if r, isDataset := strings.CutPrefix(rest, "datasets/"); isDataset {
		f.RepoType, rest = hub.RepoDataset, r
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 || parts[2] == "" {
		return HubFile{}, true, fmt.Errorf("%q: want hf://datasets/org/name[@revision]/path/to/file", s)
	}
	name, revision, _ := strings.Cut(parts[1], "@")
	f.RepoID, f.Revision, f.Filename = parts[0]+"/"+name, revision, parts[2]
	if f.Revision == "" {
		f.Revision = "main"
	}
	if !hub.ValidRepoID(f.RepoID) {
		return HubFile{}, true, fmt.Errorf("%q: %q is not a hub repository id", s, f.RepoID)
	}
	return f, true, nil
}

// Fetch downloads the file into the HF cache (or finds it there; offline mode never touches
// the network) and returns its local path.
func (f HubFile) Fetch(ctx context.Context, c *hub.Client) (string, error) {
	path, err := c.Download(ctx, f.RepoType, f.RepoID, f.Revision, f.Filename)
	if err != nil {
		return "", fmt.Errorf("fetching MS MARCO passages: %w", err)
	}
	return path, nil
}

// ResolveSource turns a --source value into a local path: "msmarco" and hf:// references
// are fetched through the hub cache; anything else is a local file or directory.
func ResolveSource(ctx context.Context, c *hub.Client, source string) (string, error) {
	if source == "msmarco" {
		source = MSMARCO
	}
	f, isHub, err := ParseHubFile(source)
	if err != nil || !isHub {
		return source, err
	}
	return f.Fetch(ctx, c)
}
