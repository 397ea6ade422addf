package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrUnsupported is wrapped by the errors for tokenizer.json components this package cannot
// encode exactly (for example a WordPiece model or a Metaspace pre-tokenizer).
var ErrUnsupported = errors.New("not supported")

// fileJSON is the part of tokenizer.json that encoding depends on. "truncation" and "padding"
// are left to the caller (EncodeOptions) and "decoder" is not used.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
}

type addedTokenJSON struct {
	ID         *int32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
}

// component is what every normalizer, pre-tokenizer, model and post-processor has in common.
type component struct {
	Type string `json:"type"`
}

type byteLevelJSON struct {
	AddPrefixSpace bool  `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"` // absent in older files: true
}

type bpeJSON struct {
	Vocab                   map[string]int32 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
}

type templateJSON struct {
	Single []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int32 `json:"ids"`
	} `json:"special_tokens"`
}

// LoadFile reads a HuggingFace tokenizer.json. It fails, naming the component, when the file
// uses a normalizer, pre-tokenizer, model or post-processor that this package does not
// implement (errors.Is(err, ErrUnsupported)), rather than encode differently from HF.
func LoadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading tokenizer: %w", err)
	}
	t, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Load parses the contents of a HuggingFace tokenizer.json; see LoadFile.
func Load(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing tokenizer.json: %w", err)
	}
	t := &Tokenizer{added: make(map[string]int32)}
	var err error
	if t.normalizer, err = loadNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	var byteLevelInput bool
	if t.pre, byteLevelInput, err = loadPreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if t.model, err = loadModel(f.Model, byteLevelInput); err != nil {
		return nil, err
	}
	if err := t.loadAddedTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	if t.prefix, t.suffix, err = loadPostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	maxID := t.model.maxID()
	for _, id := range t.added {
		maxID = max(maxID, id)
	}
	for _, id := range append(append([]int32(nil), t.prefix...), t.suffix...) {
		maxID = max(maxID, id)
	}
	t.vocabSize = int(maxID) + 1
	t.scratch.New = func() any { return new(scratch) }
	return t, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func componentType(raw json.RawMessage, what string) (string, error) {
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("parsing %s: %w", what, err)
	}
	if c.Type == "" {
		return "", fmt.Errorf("%s has no \"type\"", what)
	}
	return c.Type, nil
}

func loadNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "normalizer")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return nfcNormalizer{}, nil
	}
	return nil, fmt.Errorf("normalizer %q: %w (supported: NFC or none)", typ, ErrUnsupported)
}

// loadPreTokenizer also reports whether the model sees byte-level text.
func loadPreTokenizer(raw json.RawMessage) (preTokenizer, bool, error) {
	if isNull(raw) {
		return nil, false, fmt.Errorf("no pre_tokenizer: %w (supported: ByteLevel)", ErrUnsupported)
	}
	typ, err := componentType(raw, "pre_tokenizer")
	if err != nil {
		return nil, false, err
	}
	if typ != "ByteLevel" {
		return nil, false, fmt.Errorf("pre_tokenizer %q: %w (supported: ByteLevel)", typ, ErrUnsupported)
	}
	var bl byteLevelJSON
	if err := json.Unmarshal(raw, &bl); err != nil {
		return nil, false, fmt.Errorf("parsing pre_tokenizer ByteLevel: %w", err)
	}
	if bl.AddPrefixSpace {
		return nil, false, fmt.Errorf("pre_tokenizer ByteLevel with add_prefix_space: %w", ErrUnsupported)
	}
	return byteLevel{useRegex: bl.UseRegex == nil || *bl.UseRegex}, true, nil
}

func loadModel(raw json.RawMessage, byteLevelInput bool) (model, error) {
	if isNull(raw) {
		return nil, errors.New("tokenizer.json has no model")
	}
	typ, err := componentType(raw, "model")
	if err != nil {
		return nil, err
	}
	if typ != "BPE" {
		return nil, fmt.Errorf("model %q: %w (supported: BPE)", typ, ErrUnsupported)
	}
	var m bpeJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parsing model BPE: %w", err)
	}
	switch {
	case m.Dropout != nil && *m.Dropout > 0:
		return nil, fmt.Errorf("model BPE with dropout (random merges): %w", ErrUnsupported)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return nil, fmt.Errorf("model BPE with continuing_subword_prefix: %w", ErrUnsupported)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, fmt.Errorf("model BPE with end_of_word_suffix: %w", ErrUnsupported)
	case m.ByteFallback:
		return nil, fmt.Errorf("model BPE with byte_fallback: %w", ErrUnsupported)
	case !byteLevelInput:
		return nil, fmt.Errorf("model BPE without a ByteLevel pre-tokenizer: %w", ErrUnsupported)
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	b, err := newByteLevelBPE(m.Vocab, merges, m.IgnoreMerges)
	if err != nil {
		return nil, fmt.Errorf("model BPE: %w", err)
	}
	return b, nil
}

// parseMerges accepts both formats of the merges list: "a b" strings (older files) and
// ["a", "b"] pairs (tokenizers 0.20 and later).
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("parsing model BPE merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
	}
	pairs = make([][2]string, len(lines))
	for i, line := range lines {
		a, b, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("model BPE merge %d %q: want two tokens separated by one space", i, line)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// loadAddedTokens builds the two matchers HF uses: tokens with "normalized": false are found
// in the raw input first, the others in the normalized text between them.
func (t *Tokenizer) loadAddedTokens(list []addedTokenJSON) error {
	var raw, norm []addedToken
	var rawPatterns, normPatterns []string
	for i, a := range list {
		if a.ID == nil || *a.ID < 0 {
			return fmt.Errorf("added_tokens[%d] %q: missing or negative id", i, a.Content)
		}
		if a.Content == "" {
			continue // HF ignores empty added tokens
		}
		tok := addedToken{
			id: *a.ID, content: a.Content, singleWord: a.SingleWord, lstrip: a.LStrip, rstrip: a.RStrip,
			normalized: a.Normalized == nil || *a.Normalized, // HF's default for a missing flag
		}
		t.added[tok.content] = tok.id
		if !tok.normalized {
			raw = append(raw, tok)
			rawPatterns = append(rawPatterns, tok.content)
			continue
		}
		pattern := tok.content
		if t.normalizer != nil {
			pattern, _ = t.normalizer.normalize(pattern, 0)
		}
		norm = append(norm, tok)
		normPatterns = append(normPatterns, pattern)
	}
	t.raw = newAddedMatcher(raw, rawPatterns)
	t.norm = newAddedMatcher(norm, normPatterns)
	return nil
}

// loadPostProcessor returns the ids the single-sequence template puts before and after the
// sequence. No post-processor adds nothing.
func loadPostProcessor(raw json.RawMessage) (prefix, suffix []int32, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	typ, err := componentType(raw, "post_processor")
	if err != nil {
		return nil, nil, err
	}
	if typ != "TemplateProcessing" {
		return nil, nil, fmt.Errorf("post_processor %q: %w (supported: TemplateProcessing or none)", typ, ErrUnsupported)
	}
	var tp templateJSON
	if err := json.Unmarshal(raw, &tp); err != nil {
		return nil, nil, fmt.Errorf("parsing post_processor TemplateProcessing: %w", err)
	}
	seen := false
	for i, item := range tp.Single {
		switch {
		case item.Sequence != nil:
			if seen || item.Sequence.ID != "A" {
				return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single template item %d: want one sequence A, got %q", i, item.Sequence.ID)
			}
			seen = true
		case item.SpecialToken != nil:
			st, ok := tp.SpecialTokens[item.SpecialToken.ID]
			if !ok {
				return nil, nil, fmt.Errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", item.SpecialToken.ID)
			}
			if seen {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		default:
			return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single template item %d is neither SpecialToken nor Sequence", i)
		}
	}
	if !seen {
		return nil, nil, errors.New("post_processor TemplateProcessing: the single template has no sequence A")
	}
	return prefix, suffix, nil
}
