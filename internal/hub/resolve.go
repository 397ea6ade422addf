package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Files a model directory needs. Optional ones are fetched when the repository has them.
const (
	configFile       = "config.json"
	tokenizerFile    = "tokenizer.json"
	weightsFile      = "model.safetensors"
	weightsIndexFile = "model.safetensors.index.json"
)

var optionalModelFiles = []string{"tokenizer_config.json", "special_tokens_map.json"}

// sentenceTransformersFiles say how a sentence-transformers checkpoint pools, normalises and
// prompts; modules.json also names module folders (Pooling, Dense, ...) whose files
// moduleFiles are fetched too.
var (
	sentenceTransformersFiles = []string{"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"}
	moduleFiles               = []string{"config.json", "model.safetensors"}
)

// moduleFolders lists the folders a modules.json names (the root excluded).
func moduleFolders(modulesPath string) ([]string, error) {
	data, err := os.ReadFile(modulesPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", modulesPath, err)
	}
	var mods []struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(data, &mods); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", modulesPath, err)
	}
	var dirs []string
	for _, m := range mods {
		p := strings.Trim(m.Path, "/")
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "/") || strings.Contains(p, "..") || strings.Contains(p, "\\") {
			return nil, fmt.Errorf("%s: module path %q leaves the repository", modulesPath, m.Path)
		}
		dirs = append(dirs, p)
	}
	return dirs, nil
}

// stFiles lists the sentence-transformers files of a snapshot: the root ones, then, when
// modules.json is there, those of each module folder.
func stFiles(dir string) ([]string, error) {
	files := slices.Clone(sentenceTransformersFiles)
	modules := filepath.Join(dir, sentenceTransformersFiles[0])
	if !fileExists(modules) {
		return files, nil
	}
	folders, err := moduleFolders(modules)
	if err != nil {
		return nil, err
	}
	for _, f := range folders {
		for _, name := range moduleFiles {
			files = append(files, f+"/"+name)
		}
	}
	return files, nil
}

// ResolveModel turns a model reference into a local directory holding config.json and
// tokenizer.json (and, with withWeights, the safetensors weights, single file or sharded).
// ref is one of:
//   - a local directory (a hub-cache snapshot directory is one), returned as is;
//   - a hub id, "org/name" or "org/name@revision": the cached snapshot when it is complete,
//     otherwise the missing files are downloaded (never in offline mode).
func (c *Client) ResolveModel(ctx context.Context, ref string, withWeights bool) (string, error) {
	if st, err := os.Stat(ref); err == nil {
		if !st.IsDir() {
			return "", fmt.Errorf("model %s: not a directory (want a model directory or a hub id)", ref)
		}
		if !fileExists(filepath.Join(ref, configFile)) {
			return "", fmt.Errorf("model directory %s has no %s", ref, configFile)
		}
		return filepath.Abs(ref)
	}
	repoID, revision, _ := strings.Cut(ref, "@")
	if revision == "" {
		revision = "main"
	}
	if !ValidRepoID(repoID) || strings.HasPrefix(ref, ".") || strings.HasPrefix(ref, "/") {
		return "", fmt.Errorf("model %q: no such directory, and not a hub id (org/name[@revision])", ref)
	}
	if dir, missing := c.cachedModel(repoID, revision, withWeights); missing == "" {
		return dir, nil
	} else if c.Offline {
		return "", fmt.Errorf("model %s: %s is missing from %s: %w", ref, missing, c.CacheDir, ErrOffline)
	}

	configPath, err := c.Download(ctx, RepoModel, repoID, revision, configFile)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", ref, err)
	}
	dir := filepath.Dir(configPath)
	// Pin the commit so every file comes from the same snapshot even if main moves meanwhile.
	commit := filepath.Base(dir)
	fetch := func(name string) (string, error) { return c.Download(ctx, RepoModel, repoID, commit, name) }
	if _, err := fetch(tokenizerFile); err != nil {
		return "", fmt.Errorf("model %s: %w", ref, err)
	}
	for _, name := range optionalModelFiles {
		if _, err := fetch(name); err != nil && !errors.Is(err, ErrEntryNotFound) {
			return "", fmt.Errorf("model %s: %w", ref, err)
		}
	}
	// Root files first: modules.json, once there, names the module folders to fetch.
	optional := func(names []string) error {
		for _, name := range names {
			if _, err := fetch(name); err != nil && !errors.Is(err, ErrEntryNotFound) {
				return fmt.Errorf("model %s: %w", ref, err)
			}
		}
		return nil
	}
	if err := optional(sentenceTransformersFiles); err != nil {
		return "", err
	}
	names, err := stFiles(dir)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", ref, err)
	}
	if err := optional(names[len(sentenceTransformersFiles):]); err != nil {
		return "", err
	}
	if withWeights {
		indexPath, err := fetch(weightsIndexFile)
		switch {
		case errors.Is(err, ErrEntryNotFound):
			if _, err := fetch(weightsFile); err != nil {
				return "", fmt.Errorf("model %s: %w", ref, err)
			}
		case err != nil:
			return "", fmt.Errorf("model %s: %w", ref, err)
		default:
			shards, err := readShardNames(indexPath)
			if err != nil {
				return "", fmt.Errorf("model %s: %w", ref, err)
			}
			for _, shard := range shards {
				if _, err := fetch(shard); err != nil {
					return "", fmt.Errorf("model %s: %w", ref, err)
				}
			}
		}
	}
	return dir, nil
}

// cachedModel finds the snapshot of repoID@revision in the cache and says which needed file
// it lacks ("" when complete).
func (c *Client) cachedModel(repoID, revision string, withWeights bool) (dir, missing string) {
	commit, ok := c.commitFor(RepoModel, repoID, revision)
	if !ok {
		return "", fmt.Sprintf("%s@%s", repoID, revision)
	}
	dir = filepath.Join(c.repoDir(RepoModel, repoID), "snapshots", commit)
	for _, name := range []string{configFile, tokenizerFile} {
		if !fileExists(filepath.Join(dir, name)) {
			return dir, name
		}
	}
	// A snapshot cached before sentence-transformers files were fetched would be served as a
	// bare model: online, a file neither cached nor known to be absent is fetched. Offline,
	// the snapshot is used as it is.
	if !c.Offline {
		names, err := stFiles(dir)
		if err != nil {
			return dir, sentenceTransformersFiles[0]
		}
		for _, name := range names {
			if _, err := c.cachedFile(RepoModel, repoID, commit, name); errors.Is(err, errNotCached) {
				return dir, name
			}
		}
	}
	if !withWeights {
		return dir, ""
	}
	indexPath := filepath.Join(dir, weightsIndexFile)
	if !fileExists(indexPath) {
		if fileExists(filepath.Join(dir, weightsFile)) {
			return dir, ""
		}
		return dir, weightsFile
	}
	shards, err := readShardNames(indexPath)
	if err != nil {
		return dir, weightsIndexFile
	}
	for _, shard := range shards {
		if !fileExists(filepath.Join(dir, filepath.FromSlash(shard))) {
			return dir, shard
		}
	}
	return dir, ""
}

// readShardNames lists the distinct shard files of a model.safetensors.index.json.
func readShardNames(indexPath string) ([]string, error) {
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", indexPath, err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", indexPath, err)
	}
	seen := map[string]bool{}
	var shards []string
	for tensor, shard := range index.WeightMap {
		if shard == "" || strings.HasPrefix(shard, "/") || strings.Contains(shard, "..") {
			return nil, fmt.Errorf("%s: tensor %q names an unusable shard %q", indexPath, tensor, shard)
		}
		if !seen[shard] {
			seen[shard] = true
			shards = append(shards, shard)
		}
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", indexPath)
	}
	sort.Strings(shards)
	return shards, nil
}
